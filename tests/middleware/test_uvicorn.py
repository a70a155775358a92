"""The ASGI middleware under a real uvicorn server on 127.0.0.1: what clients see on the wire."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ragtrail import Severity
from ragtrail.instrument import Monitor, correlation_id
from ragtrail.middleware import ASGIMiddleware

from ._support import stored_events, stored_spans, uvicorn_server, wait_until

pytestmark = pytest.mark.network

LIMIT = 64 * 1024


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def uvicorn_errors() -> Iterator[_Captured]:
    """What uvicorn logs as errors, i.e. what reached the server."""
    handler = _Captured()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _app(monitor: Monitor, released: threading.Event | None = None) -> Starlette:
    async def whoami(request: Request) -> Response:
        await asyncio.sleep(0.01)  # let concurrent requests interleave
        return PlainTextResponse(correlation_id() or "none")

    async def boom(request: Request) -> Response:
        raise RuntimeError("the app failed")

    async def upload(request: Request) -> Response:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return PlainTextResponse(str(size))

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first chunk;"
            # Only a client that already received the first chunk can release the rest.
            assert released is not None
            if not await asyncio.to_thread(released.wait, 5):
                yield b"never released"
                return
            yield b"second chunk"
        return StreamingResponse(chunks(), media_type="text/plain")

    app = Starlette(routes=[Route("/", whoami), Route("/boom", boom),
                            Route("/upload", upload, methods=["POST"]),
                            Route("/stream", stream)])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=False, max_body_bytes=LIMIT)
    return app


def test_concurrent_clients_each_get_their_own_id(monitor: Monitor) -> None:
    """40 concurrent requests over loopback: echoed ID == ID seen by the app == span's ID."""
    async def main(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            return await asyncio.gather(*[
                client.get("/", headers={"X-Request-ID": f"wire-request-{n:03d}"})
                for n in range(40)])

    with uvicorn_server(_app(monitor)) as base:
        responses = asyncio.run(main(base))
    for n, response in enumerate(responses):
        assert response.headers["x-request-id"] == response.text == f"wire-request-{n:03d}"
    spans = stored_spans(monitor)
    assert sorted(s.correlation_id or "" for s in spans) == [
        f"wire-request-{n:03d}" for n in range(40)]
    assert {s.attributes["client.address"] for s in spans} == {"127.0.0.1"}
    assert all(s.attributes["server.port"] > 0 for s in spans)


def test_a_500_carries_the_id_and_the_exception_reaches_uvicorn(
        monitor: Monitor, uvicorn_errors: _Captured) -> None:
    with uvicorn_server(_app(monitor)) as base:
        response = httpx.get(f"{base}/boom", headers={"X-Request-ID": "wire-failure-1"},
                             timeout=10)
        wait_until(lambda: uvicorn_errors.records, what="uvicorn error log")
    assert (response.status_code, response.headers["x-request-id"]) == (500, "wire-failure-1")
    assert response.text == "Internal Server Error"
    logged = [r.exc_info[1] for r in uvicorn_errors.records if r.exc_info]
    assert any(isinstance(e, RuntimeError) and str(e) == "the app failed" for e in logged)
    [event] = stored_events(monitor, "server_error")
    assert (event.severity, event.correlation_id) == (Severity.HIGH, "wire-failure-1")


def test_a_streaming_response_is_not_buffered(monitor: Monitor) -> None:
    """The first chunk reaches the client while the app is still waiting for it to arrive."""
    released = threading.Event()
    with uvicorn_server(_app(monitor, released)) as base, \
            httpx.stream("GET", f"{base}/stream", timeout=httpx.Timeout(3.0)) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        released.set()
        rest = b"".join(chunks)
    assert response.headers["x-request-id"]
    assert first == b"first chunk;"
    assert rest == b"second chunk"
    assert len(stored_spans(monitor)) == 1


def test_a_declared_body_over_the_limit_gets_413(monitor: Monitor) -> None:
    with uvicorn_server(_app(monitor)) as base:
        response = httpx.post(f"{base}/upload", content=b"x" * (LIMIT + 1), timeout=10)
    assert response.status_code == 413
    assert response.headers["x-request-id"]
    assert [e.event_type for e in stored_events(monitor)] == ["request_too_large"]


def test_a_chunked_body_over_the_limit_is_cut_with_413(monitor: Monitor) -> None:
    """A body of unknown length is counted as it streams in and cut past the limit."""
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(64):  # 4 MiB offered
            sent.append(1)
            yield b"y" * 65536

    with uvicorn_server(_app(monitor)) as base:
        try:
            response = httpx.post(f"{base}/upload", content=body(), timeout=10)
            status = response.status_code
        except httpx.HTTPError:  # the server may close while the client is still sending
            status = None
    assert status in (413, None)
    assert [e.event_type for e in stored_events(monitor)] == ["request_too_large"]
    [span] = stored_spans(monitor)
    assert span.attributes["http.response.status_code"] == 413


def test_a_body_within_the_limit_reaches_the_app(monitor: Monitor) -> None:
    with uvicorn_server(_app(monitor)) as base:
        response = httpx.post(f"{base}/upload", content=iter([b"z" * 1000] * 10), timeout=10)
    assert (response.status_code, response.text) == (200, "10000")
