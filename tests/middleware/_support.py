"""Helpers for the middleware tests: rows read back from the store, an in-process ASGI driver
for hostile inputs no HTTP client would send, and real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from wsgiref.util import setup_testing_defaults

import uvicorn
from waitress import wasyncore
from waitress.server import create_server

from ragtrail import SecurityEvent, SpanRecord
from ragtrail.instrument import Monitor

_SERVER_START_TIMEOUT = 10.0


def stored_spans(monitor: Monitor) -> list[SpanRecord]:
    """Every span the monitor's store holds, oldest first (after flushing the writer)."""
    assert monitor.store.flush(timeout=10)
    return sorted(monitor.store.spans(limit=10_000), key=lambda s: (s.start_us, s.span_id))


def stored_events(monitor: Monitor, event_type: str | None = None) -> list[SecurityEvent]:
    """Security events (of one type, if given), oldest first, after flushing the writer."""
    assert monitor.store.flush(timeout=10)
    events = monitor.store.events(event_type=event_type, limit=10_000)
    return sorted(events, key=lambda e: e.time_us)


def only_span(monitor: Monitor) -> SpanRecord:
    spans = stored_spans(monitor)
    assert len(spans) == 1, spans
    return spans[0]


# -- in-process ASGI ------------------------------------------------------------------------

@dataclass
class Reply:
    """What an ASGI app sent back, plus the exception it raised to the server (if any)."""

    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    error: BaseException | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower().encode("latin-1")
        return [v.decode("latin-1") for n, v in self.headers if n.lower() == wanted]


def http_scope(path: str = "/", *, method: str = "GET",
               headers: list[tuple[bytes, bytes]] | None = None, query: bytes = b"",
               raw_path: bytes | None = None, client: tuple[str, int] | None = ("127.0.0.1", 5000),
               scope_type: str = "http") -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": scope_type, "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass") if raw_path is None else raw_path,
        "query_string": query, "root_path": "",
        "headers": [(b"host", b"testserver:8000"), *(headers or [])],
        "server": ("127.0.0.1", 8000),
    }
    if client is not None:
        scope["client"] = client
    return scope


async def call_asgi(app: Any, scope: dict[str, Any], body: list[bytes] | None = None) -> Reply:
    """Drive ``app`` like a server: feed ``body`` in chunks, collect what it sends."""
    reply = Reply()
    chunks = list(body or [b""])

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await asyncio.sleep(3600)  # a real server waits for the client here
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        reply.messages.append(message)
        if message["type"] == "http.response.start":
            reply.status = message["status"]
            reply.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            reply.body += message.get("body", b"")

    try:
        await asyncio.wait_for(app(scope, receive, send), timeout=10)
    except Exception as exc:
        reply.error = exc
    return reply


def request(app: Any, path: str = "/", *, body: list[bytes] | None = None,
            **scope: Any) -> Reply:
    """One in-process request (``http_scope`` arguments), on a fresh event loop."""
    return asyncio.run(call_asgi(app, http_scope(path, **scope), body))


# -- real servers ---------------------------------------------------------------------------

def wait_until(predicate: Callable[[], object], timeout: float = _SERVER_START_TIMEOUT,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(0.01)


@contextmanager
def uvicorn_server(app: Any, **config: Any) -> Iterator[str]:
    """``app`` under a real uvicorn on a free 127.0.0.1 port (``config``: more
    ``uvicorn.Config`` arguments); yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: leave logging alone, so tests can watch what uvicorn logs.
    config = {"lifespan": "on", **config}
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="uvicorn start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def waitress_server(app: Any, **options: Any) -> Iterator[str]:
    """``app`` under a real waitress on a free 127.0.0.1 port (``options``: more waitress
    settings); yields its base URL."""
    server = create_server(app, host="127.0.0.1", port=0, threads=4, **options)
    port = server.effective_port  # type: ignore[union-attr]
    stopping = threading.Event()

    def serve() -> None:
        # server.run() cannot be stopped from another thread without racing its select():
        # poll in short rounds instead, and close everything once the loop has stopped.
        while not stopping.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, count=1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stopping.set()
        thread.join(timeout=10)
        wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown()


# -- in-process WSGI ------------------------------------------------------------------------

@dataclass
class WSGIReply:
    """What a WSGI app answered: the last ``start_response`` call, the body, any exception."""

    status: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    error: BaseException | None = None
    start_calls: int = 0

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


def wsgi_environ(path: str = "/", *, method: str = "GET", body: bytes = b"",
                 headers: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update({"REQUEST_METHOD": method, "PATH_INFO": path, "REMOTE_ADDR": "127.0.0.1",
                    "wsgi.input": io.BytesIO(body)})
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_LENGTH", "CONTENT_TYPE") else "HTTP_" + key] = value
    environ.update(extra)
    return environ


def call_wsgi(app: Any, environ: dict[str, Any]) -> WSGIReply:
    """Call ``app`` like a PEP 3333 server: start_response, iterate, always close()."""
    reply = WSGIReply()

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if reply.body and exc_info is not None:  # headers are on the wire already
            raise exc_info[1].with_traceback(exc_info[2])
        reply.start_calls += 1
        reply.status, reply.headers = status, list(headers)
        return lambda data: None

    result = None
    try:
        result = app(environ, start_response)
        for chunk in result:
            reply.body += chunk
    except Exception as exc:
        reply.error = exc
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return reply
