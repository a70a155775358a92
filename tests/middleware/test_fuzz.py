"""Generated hostile input never crashes the middleware and never reaches the store unescaped.

Bounded example counts keep this fast; the long campaign belongs to the fuzzing issue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ragtrail.instrument import Monitor
from ragtrail.middleware import ASGIMiddleware, WSGIMiddleware
from ragtrail.middleware._core import is_valid_id

from ._support import call_asgi, call_wsgi, http_scope, stored_events, stored_spans, wsgi_environ

_HEADER_NAMES = [b"x-request-id", b"x-correlation-id", b"traceparent", b"tracestate",
                 b"user-agent", b"host", b"x-forwarded-for", b"content-length", b"cookie",
                 b"authorization", b"x-note"]
_header_names = st.one_of(st.sampled_from(_HEADER_NAMES),
                          st.binary(min_size=1, max_size=20).map(bytes.lower))
_headers = st.lists(st.tuples(_header_names, st.binary(max_size=300)), max_size=8)
_ids = st.one_of(st.text(max_size=140), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{7,127}",
                                                      fullmatch=True))
_paths = st.text(max_size=200).map(lambda text: "/" + text)
_raw_paths = st.one_of(st.binary(max_size=300), st.sampled_from([
    b"/%2e%2e/%252e%252e/", b"/%c0%ae%c0%ae/", b"/a%00b", b"/%0d%0a", b"/..\\..\\"]))
_FUZZ = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


def _strings(value: Any) -> list[str]:
    """Every string inside a stored value (keys included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _strings(item)]
    return []


def _assert_store_is_clean(monitor: Monitor) -> None:
    """No control character or lone surrogate in any stored span or event string."""
    for span in stored_spans(monitor):
        for text in _strings([span.name, span.correlation_id, span.attributes,
                              [(e.name, e.attributes) for e in span.events]]):
            assert text.isprintable(), text
    for event in stored_events(monitor):
        for text in _strings([event.source, event.description, event.correlation_id,
                              event.metadata]):
            assert text.isprintable(), text


def test_asgi_survives_generated_requests(monitor: Monitor) -> None:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/{rest:path}", echo, methods=["GET", "POST"])])
    wrapped = ASGIMiddleware(app, monitor=monitor, health=False, reject_malicious=True,
                             capture_headers=["x-note", "cookie", "user-agent"],
                             trusted_proxies=["127.0.0.0/8"])

    @_FUZZ
    @given(path=_paths, raw_path=_raw_paths, query=st.binary(max_size=200),
           headers=_headers, cid=_ids, method=st.sampled_from(["GET", "POST", "P\x00ST", "é"]))
    def run(path: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]],
            cid: str, method: str) -> None:
        scope = http_scope(path, method=method, raw_path=raw_path, query=query, headers=[
            (b"x-request-id", cid.encode("utf-8", "surrogatepass")), *headers])
        reply = asyncio.run(call_asgi(wrapped, scope))
        assert reply.error is None
        assert reply.status in (200, 400, 404, 405, 413)
        echoed = reply.header("x-request-id")
        assert echoed is not None
        assert is_valid_id(echoed)

    run()
    _assert_store_is_clean(monitor)


def test_wsgi_survives_generated_requests(monitor: Monitor) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = WSGIMiddleware(app, monitor=monitor, health=False,
                             capture_headers=["x-note", "authorization"])
    latin1 = st.text(st.characters(max_codepoint=255), max_size=200)

    @_FUZZ
    @given(path=latin1, uri=latin1, query=latin1, cid=_ids,
           values=st.dictionaries(st.sampled_from(["X-Note", "User-Agent", "Host",
                                                   "Authorization", "Content-Length",
                                                   "X-Correlation-ID"]), latin1))
    def run(path: str, uri: str, query: str, cid: str, values: dict[str, str]) -> None:
        headers = {"X-Request-ID": cid.encode("utf-8", "surrogatepass").decode("latin-1"),
                   **values}
        environ = wsgi_environ("/" + path, headers=headers, QUERY_STRING=query,
                               REQUEST_URI="/" + uri)
        reply = call_wsgi(wrapped, environ)
        assert reply.error is None
        assert reply.status is not None
        assert reply.status[:3] in ("200", "400", "413")
        echoed = reply.header("X-Request-ID")
        assert echoed is not None
        assert is_valid_id(echoed)

    run()
    _assert_store_is_clean(monitor)
