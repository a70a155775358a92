"""Correlation IDs and trace continuation through the ASGI middleware (in-process calls)."""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ragtrail import Severity
from ragtrail.instrument import Monitor, configure, correlation_id
from ragtrail.middleware import ASGIMiddleware, WSGIMiddleware

from ._support import call_wsgi, only_span, request, stored_events, stored_spans, wsgi_environ

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _app(monitor: Monitor | None, **options: Any) -> Starlette:
    async def whoami(request: Request) -> PlainTextResponse:
        return PlainTextResponse(correlation_id() or "none")

    app = Starlette(routes=[Route("/", whoami)])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=False, **options)
    return app


def test_a_valid_inbound_id_is_used_echoed_and_stored(monitor: Monitor) -> None:
    """X-Request-ID is current in the app, echoed, and the span's correlation_id."""
    reply = request(_app(monitor), headers=[(b"x-request-id", b"req-2024.06:abc/123")])
    assert reply.header("x-request-id") == "req-2024.06:abc/123"
    assert reply.body == b"req-2024.06:abc/123"
    assert only_span(monitor).correlation_id == "req-2024.06:abc/123"
    assert stored_events(monitor) == []


def test_the_second_configured_header_is_read_when_the_first_is_absent(monitor: Monitor) -> None:
    """X-Correlation-ID counts too; the echo uses the first configured name."""
    reply = request(_app(monitor), headers=[(b"x-correlation-id", b"corr-0000000001")])
    assert reply.header_values("x-request-id") == ["corr-0000000001"]
    assert reply.header("x-correlation-id") is None


def test_an_id_header_the_app_sets_itself_is_sent_once(monitor: Monitor) -> None:
    """RFC 9110 5.3: X-Request-ID is no list, so no second line; the app's value wins (in
    whatever case the app spelled the name), and the store keeps the inbound ID."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"X-Request-ID", b"app-own-id-0001")]})
        await send({"type": "http.response.body", "body": b""})

    reply = request(ASGIMiddleware(app, monitor=monitor, health=False),
                    headers=[(b"x-request-id", b"client-id-00001")])
    assert reply.header_values("x-request-id") == ["app-own-id-0001"]
    assert only_span(monitor).correlation_id == "client-id-00001"

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("x-request-id", "app-own-id-0002")])
        return [b""]

    wsgi = call_wsgi(WSGIMiddleware(wsgi_app, monitor=monitor, health=False),
                     wsgi_environ("/", headers={"X-Request-ID": "client-id-00002"}))
    assert [v for n, v in wsgi.headers if n.lower() == "x-request-id"] == ["app-own-id-0002"]


def test_a_missing_id_is_the_new_traces_id(monitor: Monitor) -> None:
    """Without an ID or a traceparent, the new trace's 32-hex ID is the correlation ID: echoed,
    current in the app, stored, and the ID to look the trace up by in a tracing backend."""
    first = request(_app(monitor))
    second = request(_app(monitor))
    generated = first.header("x-request-id")
    assert generated is not None
    assert re.fullmatch("[0-9a-f]{32}", generated)
    assert generated != second.header("x-request-id")
    assert first.body.decode() == generated
    span = next(s for s in stored_spans(monitor) if s.correlation_id == generated)
    assert span.trace_id == generated


def test_generated_ids_do_not_come_from_the_random_module(monitor: Monitor) -> None:
    """Clients see generated IDs, so their random part comes from the OS, not from
    ``random`` (whose future output can be derived from its past): reseeding ``random``
    alike before two requests does not repeat it."""
    app = _app(monitor)
    random_parts = []
    for _ in range(2):
        random.seed(7)
        generated = request(app).header("x-request-id")
        assert generated is not None
        random_parts.append(int(generated, 16) & ((1 << 80) - 1))
    assert random_parts[0] != random_parts[1]


def test_an_invalid_id_is_replaced_and_recorded_by_hash_only(monitor: Monitor) -> None:
    """A bad value never reaches the response or the store; its SHA-256 prefix does."""
    bad = "<script>alert(1)</script>"
    reply = request(_app(monitor), headers=[(b"x-request-id", bad.encode())])
    echoed = reply.header("x-request-id")
    assert echoed is not None
    assert echoed != bad
    assert len(echoed) == 32
    [event] = stored_events(monitor)
    assert (event.event_type, event.severity) == ("input_validation_fail", Severity.LOW)
    assert event.metadata["value_sha256"] == hashlib.sha256(bad.encode()).hexdigest()[:16]
    assert event.metadata["header"] == "x-request-id"
    assert event.correlation_id == echoed
    assert "alert(1)" not in repr(event)
    assert "alert(1)" not in repr(stored_spans(monitor))


def test_invalid_ids_from_one_client_are_coalesced(monitor: Monitor) -> None:
    """A client sending bad IDs all day makes one growing row, not a flood."""
    app = _app(monitor)
    for n in range(5):
        request(app, headers=[(b"x-request-id", f"bad id {n}".encode())])
    [event] = stored_events(monitor, "input_validation_fail")
    assert event.count == 5


def test_id_format_edges(monitor: Monitor) -> None:
    """8 to 128 characters from the allowed set; a trailing newline is not accepted."""
    app = _app(monitor)
    accepted = ["a" * 8, "A" + "b" * 127, "x1._:+/=@-y"]
    refused = ["a" * 7, "a" * 129, "-abcdefgh", "abcdefgh\n", "abc defgh", "abcdefgh\u00e9"]
    for value in accepted:
        assert request(app, headers=[(b"x-request-id", value.encode())]
                       ).header("x-request-id") == value
    for value in refused:
        assert request(app, headers=[(b"x-request-id", value.encode())]
                       ).header("x-request-id") != value


def test_untrusted_inbound_ids_are_kept_as_an_attribute_only(monitor: Monitor) -> None:
    """trust_inbound=False (a public edge) always generates, and keeps the client's value."""
    reply = request(_app(monitor, trust_inbound=False),
                    headers=[(b"x-request-id", b"client-chosen-id")])
    assert reply.header("x-request-id") != "client-chosen-id"
    span = only_span(monitor)
    assert span.correlation_id == reply.header("x-request-id") == span.trace_id
    assert span.attributes["ragtrail.inbound_correlation_id"] == "client-chosen-id"


def test_a_valid_traceparent_continues_the_trace(monitor: Monitor) -> None:
    """The server span joins the caller's trace; its trace ID correlates when no ID came."""
    reply = request(_app(monitor), headers=[(b"traceparent", TRACEPARENT.encode())])
    span = only_span(monitor)
    assert (span.trace_id, span.parent_span_id) == (TRACE_ID, PARENT_ID)
    assert reply.header("x-request-id") == TRACE_ID == span.correlation_id


def test_an_inbound_id_wins_over_the_trace_id(monitor: Monitor) -> None:
    request(_app(monitor), headers=[(b"traceparent", TRACEPARENT.encode()),
                                    (b"x-request-id", b"explicit-id-1")])
    span = only_span(monitor)
    assert (span.trace_id, span.correlation_id) == (TRACE_ID, "explicit-id-1")


def test_an_invalid_traceparent_starts_a_new_trace(monitor: Monitor) -> None:
    """A malformed or all-zero traceparent is ignored (W3C Trace Context, section 3.2)."""
    app = _app(monitor)
    for value in (b"00-zzzz-00f067aa0ba902b7-01",
                  b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"):
        request(app, headers=[(b"traceparent", value)])
    spans = stored_spans(monitor)
    assert len(spans) == 2
    assert all(s.parent_span_id is None and s.trace_id != TRACE_ID for s in spans)


def test_untrusted_edges_do_not_continue_client_traces(monitor: Monitor) -> None:
    """trust_inbound=False: a client cannot pick the trace (or force it sampled)."""
    request(_app(monitor, trust_inbound=False), headers=[(b"traceparent", TRACEPARENT.encode())])
    span = only_span(monitor)
    assert span.trace_id != TRACE_ID
    assert span.parent_span_id is None


def test_custom_correlation_headers(monitor: Monitor) -> None:
    """The header list is configurable; the first name is the one echoed."""
    reply = request(_app(monitor, correlation_headers=["X-Trace-Token", "X-Request-ID"]),
                    headers=[(b"x-request-id", b"from-second-header")])
    assert reply.header("x-trace-token") == "from-second-header"


def test_without_a_monitor_argument_the_current_monitor_is_followed(
        make_monitor: Any, tmp_path: Any) -> None:
    """Adding the middleware before ragtrail.configure() still reports to the configured one."""
    app = _app(None)
    configured = configure(store_url=f"sqlite:///{tmp_path / 'configured.db'}")
    request(app, headers=[(b"x-request-id", b"after-configure")])
    assert only_span(configured).correlation_id == "after-configure"


def test_a_disabled_monitor_makes_the_middleware_a_pass_through(make_monitor: Any,
                                                                 tmp_path: Any) -> None:
    """enabled=False: no header, no span, no database file, the app still answers."""
    monitor = make_monitor(enabled=False, store_url=f"sqlite:///{tmp_path / 'off.db'}")
    reply = request(_app(monitor), headers=[(b"x-request-id", b"abcdefgh1")])
    assert reply.status == 200
    assert reply.header("x-request-id") is None
    assert reply.body == b"none"
    assert not (tmp_path / "off.db").exists()
