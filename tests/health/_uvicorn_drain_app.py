"""A Starlette app under uvicorn for the SIGTERM test, run as a subprocess.

Usage: python _uvicorn_drain_app.py STORE_URL PORT DRAIN_SECONDS. The drain handler is
installed in the lifespan startup, after uvicorn's own, as docs/health.md recommends.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ragtrail.health import FunctionCheck, install_sigterm_handler
from ragtrail.instrument import configure
from ragtrail.middleware._endpoints import create_health_endpoints


def main() -> None:
    store_url, port, drain_seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    configure(store_url=store_url, health_check_interval=0.2)

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        uninstall = install_sigterm_handler(health, drain_seconds=drain_seconds)
        print("started", flush=True)
        yield
        uninstall()
        print("stopped", flush=True)

    app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
    health = create_health_endpoints(app, [FunctionCheck(lambda: True, "index")])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
