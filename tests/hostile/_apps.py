"""The small RAG app every middleware surface attacks, as raw ASGI and raw WSGI callables.

Both read the body, pass the query, path and body through a ``@monitored`` retriever that
captures its arguments and result (so hostile request data reaches capture and redaction) and
answer 200. They never fail on their own: any other status, or an exception reaching the
server, is ragtrail's doing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from middleware._support import Reply, WSGIReply, call_asgi, call_wsgi, http_scope, wsgi_environ

from ragtrail import ASGIMiddleware, WSGIMiddleware, monitored
from ragtrail.middleware._asgi import Receive, Scope, Send
from ragtrail.middleware._core import is_valid_id

__all__ = ["MIDDLEWARE_OPTIONS", "Driver", "asgi_app", "native", "retrieve", "wsgi_app"]

# Hostile header values reach the span through the allowlist (and the secret names must be
# redacted whatever their value), and X-Forwarded-For becomes the events' source.
MIDDLEWARE_OPTIONS: dict[str, Any] = {
    "health": False,
    "capture_headers": ["user-agent", "x-note", "authorization", "cookie", "referer"],
    "trusted_proxies": ["127.0.0.0/8"],
}


@monitored(kind="retriever", capture_args=True, capture_result=True)
def retrieve(query: str, path: str, body: bytes) -> list[dict[str, Any]]:
    return [{"id": "doc-1", "text": f"{query[:64]} {path[:64]}", "bytes": len(body),
             "score": 0.5}]


async def _asgi_inner(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    retrieve(scope.get("query_string", b"").decode("latin-1"), scope["path"], body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    length = environ.get("CONTENT_LENGTH", "")
    stream = environ["wsgi.input"]
    if length.isascii() and length.isdigit():
        body = stream.read(int(length))
    elif "HTTP_TRANSFER_ENCODING" in environ:
        body = stream.read()
    else:
        body = b""
    retrieve(environ.get("QUERY_STRING", ""), environ.get("PATH_INFO", ""), body)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def asgi_app(**options: Any) -> ASGIMiddleware:
    """The app behind the real ASGI middleware (following the process-wide monitor)."""
    return ASGIMiddleware(_asgi_inner, **{**MIDDLEWARE_OPTIONS, **options})


def wsgi_app(**options: Any) -> WSGIMiddleware:
    return WSGIMiddleware(_wsgi_inner, **{**MIDDLEWARE_OPTIONS, **options})


def native(text: str) -> str:
    """A PEP 3333 native string: the UTF-8 bytes a client sent, as latin-1 text."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


class Driver:
    """Sends in-process requests to both apps: one event loop for all of a surface's cases."""

    def __init__(self, loop: asyncio.AbstractEventLoop, **options: Any) -> None:
        self.loop = loop
        self.asgi = asgi_app(**options)
        self.wsgi = wsgi_app(**options)
        self.requests = 0

    def send_asgi(self, path: str = "/", *, body: list[bytes] | None = None,
                  **scope: Any) -> Reply:
        self.requests += 1
        return self.loop.run_until_complete(call_asgi(self.asgi, http_scope(path, **scope), body))

    def send_wsgi(self, path: str = "/", **environ: Any) -> WSGIReply:
        self.requests += 1
        return call_wsgi(self.wsgi, wsgi_environ(path, **environ))

    @staticmethod
    def check_asgi(reply: Reply, allowed: frozenset[int], inbound: str | None = None) -> None:
        """No exception reached the server, a known status, a well-formed echoed ID."""
        assert reply.error is None, reply.error
        assert reply.status in allowed, reply.status
        check_echo(reply.header("x-request-id"), inbound)

    @staticmethod
    def check_wsgi(reply: WSGIReply, allowed: frozenset[int], inbound: str | None = None) -> None:
        assert reply.error is None, reply.error
        assert reply.status is not None
        assert int(reply.status[:3]) in allowed, reply.status
        check_echo(reply.header("X-Request-ID"), inbound)


def check_echo(echoed: str | None, inbound: str | None) -> None:
    """The echoed ID matches the documented format; a valid inbound ID comes back as sent."""
    assert echoed is not None
    assert is_valid_id(echoed), echoed
    if inbound is not None and is_valid_id(inbound):
        assert echoed == inbound


@contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()
