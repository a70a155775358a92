"""A Starlette app under uvicorn in a process of its own, as the kubelet sees one.

Usage: python _uvicorn_app.py STORE_URL DRAIN_SECONDS [DEPENDENCY_URL]. With a dependency URL,
a non-critical ``HTTPCheck`` named ``ollama`` (0.5 s timeout) joins the critical ``index``
check. Prints the port it listens on (bound here, so no other process can take it first),
then "started" and "stopped" from the lifespan. The drain handler is installed in the lifespan
startup, after uvicorn's own, as docs/health.md recommends.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ragtrail.health import FunctionCheck, HealthCheck, HTTPCheck, install_sigterm_handler
from ragtrail.instrument import configure
from ragtrail.middleware import create_health_endpoints


def main() -> None:
    store_url, drain_seconds, dependencies = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    configure(store_url=store_url, health_check_interval=0.2, health_check_timeout=0.5)
    checks: list[HealthCheck] = [FunctionCheck(lambda: True, "index")]
    checks += [HTTPCheck(url, name="ollama", critical=False) for url in dependencies]

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
    health = create_health_endpoints(app, checks)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
