"""Inbound trace context read by the app's propagators (OTEL_PROPAGATORS), both adapters:
tracestate and baggage kept for the handler and for outgoing calls, other formats honoured,
and "none" meaning none."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ragtrail.instrument import Monitor
from ragtrail.middleware import ASGIMiddleware, WSGIMiddleware

from ._support import call_wsgi, only_span, request, stored_events, stored_spans, wsgi_environ

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _outgoing() -> dict[str, Any]:
    """What the handler's context holds, and the headers an outgoing call would carry."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {"baggage": dict(baggage.get_all()), "headers": carrier}


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = json.dumps(_outgoing()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(_outgoing()).encode()]


def _serve(monitor: Monitor, adapter: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """One request through a middleware built now (under the global propagator as set)."""
    if adapter == "asgi":
        reply = request(ASGIMiddleware(_asgi_app, monitor=monitor, health=False),
                        headers=[(k.lower().encode(), v.encode())  # as servers send them
                                 for k, v in headers.items()])
        return dict(json.loads(reply.body))
    wsgi = call_wsgi(WSGIMiddleware(_wsgi_app, monitor=monitor, health=False),
                     wsgi_environ("/", headers=dict(headers)))
    return dict(json.loads(wsgi.body))


@pytest.fixture
def global_propagator() -> Iterator[Any]:
    """Set the global propagator for one test (as OTEL_PROPAGATORS or the app would)."""
    saved = propagate.get_global_textmap()
    yield propagate.set_global_textmap
    propagate.set_global_textmap(saved)


class _TestTracePropagator(TextMapPropagator):
    """A stand-in for B3 or Jaeger (their packages are no dependency of ragtrail's):
    ``X-Test-Trace: <trace id>-<span id>``."""

    def extract(self, carrier: CarrierT, context: Context | None = None,
                getter: Getter[CarrierT] = default_getter) -> Context:
        values = getter.get(carrier, "x-test-trace")
        if not values:
            return context if context is not None else Context()
        trace_hex, span_hex = values[0].split("-")
        remote = SpanContext(int(trace_hex, 16), int(span_hex, 16), is_remote=True,
                             trace_flags=TraceFlags(TraceFlags.SAMPLED))
        return trace.set_span_in_context(NonRecordingSpan(remote), context)

    def inject(self, carrier: CarrierT, context: Context | None = None,
               setter: Setter[CarrierT] = default_setter) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        setter.set(carrier, "x-test-trace",
                   f"{span_context.trace_id:032x}-{span_context.span_id:016x}")

    @property
    def fields(self) -> set[str]:
        return {"X-Test-Trace"}


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_tracestate_and_baggage_reach_the_handler_and_outgoing_calls(
        monitor: Monitor, adapter: str) -> None:
    """W3C tracestate (vendors' entries) and baggage came in and were dropped: the handler saw
    no baggage and outgoing calls carried neither."""
    seen = _serve(monitor, adapter, {"traceparent": TRACEPARENT,
                                     "tracestate": "vendor=abc,other=x",
                                     "baggage": "tenant=acme,user=42"})
    span = only_span(monitor)
    assert (span.trace_id, span.parent_span_id) == (TRACE_ID, PARENT_ID)
    assert seen["baggage"] == {"tenant": "acme", "user": "42"}
    sent = seen["headers"]
    assert sent["traceparent"] == f"00-{TRACE_ID}-{span.span_id}-01"
    assert sent["tracestate"] == "vendor=abc,other=x"
    assert sorted(sent["baggage"].split(",")) == ["tenant=acme", "user=42"]


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_the_apps_propagator_reads_other_trace_formats(
        monitor: Monitor, adapter: str, global_propagator: Any) -> None:
    """OTEL_PROPAGATORS=b3 (or any propagator the app installs): its headers continue the
    trace, where only traceparent did and B3 services' traces split."""
    global_propagator(_TestTracePropagator())
    seen = _serve(monitor, adapter, {"X-Test-Trace": f"{TRACE_ID}-{PARENT_ID}"})
    span = only_span(monitor)
    assert (span.trace_id, span.parent_span_id) == (TRACE_ID, PARENT_ID)
    assert seen["headers"] == {"x-test-trace": f"{TRACE_ID}-{span.span_id}"}


def _serve_with(middleware: Any, adapter: str, headers: Mapping[str, str]) -> None:
    """One request through an existing middleware."""
    if adapter == "asgi":
        request(middleware, headers=[(k.lower().encode(), v.encode()) for k, v in headers.items()])
    else:
        call_wsgi(middleware, wsgi_environ("/", headers=dict(headers)))


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_a_propagator_set_after_the_middleware_was_built_is_followed(
        monitor: Monitor, adapter: str, global_propagator: Any) -> None:
    """Auto-instrumentation that sets the global propagator after the app added the
    middleware: the headers of the new one are read from the next request on, and those of
    the old one no longer."""
    middleware = (ASGIMiddleware(_asgi_app, monitor=monitor, health=False) if adapter == "asgi"
                  else WSGIMiddleware(_wsgi_app, monitor=monitor, health=False))
    _serve_with(middleware, adapter, {"traceparent": TRACEPARENT})  # built under W3C
    global_propagator(_TestTracePropagator())
    other_trace = "0af7651916cd43dd8448eb211c80319c"
    _serve_with(middleware, adapter, {"X-Test-Trace": f"{other_trace}-{PARENT_ID}"})
    _serve_with(middleware, adapter, {"traceparent": TRACEPARENT})  # W3C's is not read now
    first, second, third = stored_spans(monitor)
    assert (first.trace_id, first.parent_span_id) == (TRACE_ID, PARENT_ID)
    assert (second.trace_id, second.parent_span_id) == (other_trace, PARENT_ID)
    assert (third.parent_span_id, third.trace_id in (TRACE_ID, other_trace)) == (None, False)


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_propagators_none_continues_no_inbound_trace(
        monitor: Monitor, adapter: str, global_propagator: Any) -> None:
    """OTEL_PROPAGATORS=none: an inbound traceparent no longer picks the trace."""
    global_propagator(CompositePropagator([]))
    _serve(monitor, adapter, {"traceparent": TRACEPARENT})
    span = only_span(monitor)
    assert (span.parent_span_id, span.trace_id != TRACE_ID) == (None, True)


class _RaisingPropagator(_TestTracePropagator):
    """A propagator that raises on what a client sent (a bug in it, or a hostile value)."""

    def extract(self, carrier: CarrierT, context: Context | None = None,
                getter: Getter[CarrierT] = default_getter) -> Context:
        raise ValueError("cannot parse x-test-trace")


def test_a_propagator_that_raises_costs_the_request_only_its_parent(
        monitor: Monitor, global_propagator: Any) -> None:
    """The exception escaped begin(): no span, no traversal event, no 400 for a client who
    sent the header on every request."""
    global_propagator(_RaisingPropagator())
    reply = request(ASGIMiddleware(_asgi_app, monitor=monitor, health=False,
                                   reject_malicious=True),
                    "/static/../etc/passwd", headers=[(b"x-test-trace", b"boom")])
    assert reply.status == 400
    span = only_span(monitor)
    assert span.parent_span_id is None
    assert [e.event_type for e in stored_events(monitor)] == ["malicious_path_traversal"]


def test_oversized_baggage_is_not_parsed_and_malformed_members_log_once_a_minute(
        monitor: Monitor, caplog: pytest.LogCaptureFixture) -> None:
    """A client's 8 KB of baggage junk put 180 warnings of its text into the app's log per
    request (and 180 valid members cost 1 ms): baggage past 1 KB is set aside unparsed, and
    the propagator's warnings about malformed members pass once a minute."""
    junk = ",".join(f"bad member {n}" for n in range(600))
    with caplog.at_level("WARNING"):
        seen = _serve(monitor, "asgi", {"traceparent": TRACEPARENT, "baggage": junk})
        for n in range(5):
            _serve(monitor, "asgi", {"traceparent": TRACEPARENT, "baggage": f"bad {n},k=v"})
    assert seen["baggage"] == {}
    assert len(stored_spans(monitor)) == 6  # every request continued the trace all the same
    from_propagator = Counter(str(r.msg) for r in caplog.records
                              if r.name == "opentelemetry.baggage.propagation")
    assert all(count <= 1 for count in from_propagator.values()), from_propagator


class _FieldlessPropagator(_TestTracePropagator):
    """A propagator whose ``fields`` raises (a bug in it)."""

    @property
    def fields(self) -> set[str]:
        raise RuntimeError("no fields")


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
def test_a_broken_propagator_set_late_costs_requests_only_their_parent(
        monitor: Monitor, adapter: str, global_propagator: Any) -> None:
    """The options are rebuilt on a request: a propagator that cannot name its headers is
    warned about and reads none; the request and its span go on."""
    middleware = (ASGIMiddleware(_asgi_app, monitor=monitor, health=False) if adapter == "asgi"
                  else WSGIMiddleware(_wsgi_app, monitor=monitor, health=False))
    global_propagator(_FieldlessPropagator())
    _serve_with(middleware, adapter, {"X-Test-Trace": f"{TRACE_ID}-{PARENT_ID}"})
    assert only_span(monitor).parent_span_id is None
