"""An inbound trace context as a real collector receives it: the request's ``tracestate`` on the
server span and every span under it, and OTLP's remote-parent flags on the server span."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from instrument.otlp_receivers import (
    OteltapReceiver,
    ReceivedSpan,
    Receiver,
    RotelReceiver,
    isolated_otel_globals,
)

from ragtrail.instrument import Monitor, configure, monitored
from ragtrail.middleware import ASGIMiddleware, WSGIMiddleware

from ._support import call_wsgi, request, wsgi_environ

pytestmark = pytest.mark.network

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
# OTLP SpanFlags (opentelemetry/proto/trace/v1/trace.proto).
HAS_IS_REMOTE, IS_REMOTE = 0x100, 0x200


@pytest.fixture(scope="module")
def receivers() -> Iterator[dict[str, Any]]:
    """rotel (both protocols) and oteltap (OTLP/HTTP), shared by this module."""
    with RotelReceiver() as rotel, OteltapReceiver() as oteltap:
        yield {"rotel-http": (rotel, rotel.http_endpoint, "http/protobuf"),
               "rotel-grpc": (rotel, rotel.grpc_endpoint, "grpc"),
               "oteltap-http": (oteltap, oteltap.http_endpoint, "http/protobuf")}


@pytest.fixture(autouse=True)
def _no_app_providers() -> Iterator[None]:
    with isolated_otel_globals():
        yield


@monitored(kind="retriever", name="inbound-export.retrieve")
def _retrieve() -> list[str]:
    return ["doc-1"]


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    _retrieve()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    _retrieve()
    start_response("200 OK", [])
    return [b"ok"]


def _configure(tmp_path: Path, **settings: Any) -> Monitor:
    """The process-wide monitor: the middleware and ``@monitored`` both report to it."""
    return configure(store_url=f"sqlite:///{tmp_path / 'audit.db'}",
                     service_name="inbound-export", **settings)


def _serve(monitor: Monitor, adapter: str, headers: dict[str, str]) -> None:
    if adapter == "asgi":
        reply = request(ASGIMiddleware(_asgi_app, monitor=monitor, health=False),
                        headers=[(k.encode(), v.encode()) for k, v in headers.items()])
        assert reply.status == 200
    else:
        wsgi = call_wsgi(WSGIMiddleware(_wsgi_app, monitor=monitor, health=False),
                         wsgi_environ("/", headers=headers))
        assert wsgi.status == "200 OK"


def _exported(receiver: Receiver, trace_id: str) -> dict[str, ReceivedSpan]:
    spans = receiver.wait_for_spans(lambda s: s.trace_id == trace_id, count=2)  # type: ignore[attr-defined]
    return {span.name: span for span in spans}


@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
@pytest.mark.parametrize("target", ["rotel-http", "rotel-grpc", "oteltap-http"])
def test_inbound_tracestate_and_remote_parent_reach_the_collector(
        receivers: dict[str, Any], target: str, adapter: str, tmp_path: Path) -> None:
    """traceparent + tracestate in: the server span and its child carry the tracestate; only
    the server span's flags say its parent is remote; the reserved keys are not exported."""
    receiver, endpoint, protocol = receivers[target]
    trace_id = secrets.token_hex(16)  # the receivers are shared: each test its own trace
    monitor = _configure(tmp_path, otlp_endpoint=endpoint, otlp_protocol=protocol)
    _serve(monitor, adapter, {"traceparent": f"00-{trace_id}-{PARENT_ID}-01",
                              "tracestate": TRACESTATE})
    assert monitor.flush(10)

    spans = _exported(receiver, trace_id)
    server = next(span for span in spans.values() if span.kind == 2)
    child = spans["inbound-export.retrieve"]
    assert (server.parent_span_id, child.parent_span_id) == (PARENT_ID, server.span_id)
    assert (server.trace_state, child.trace_state) == (TRACESTATE, TRACESTATE)
    assert (server.flags & 0x300, child.flags & 0x300) == (HAS_IS_REMOTE | IS_REMOTE,
                                                           HAS_IS_REMOTE)
    for span in (server, child):
        assert not {"ragtrail.trace_state", "ragtrail.parent_is_remote",
                    "ragtrail.sampled"} & set(span.attributes)


def test_without_tracestate_the_trace_starts_here_with_local_flags(
        receivers: dict[str, Any], tmp_path: Path) -> None:
    """No inbound trace context: no tracestate, and no span says its parent is remote."""
    receiver, endpoint, protocol = receivers["rotel-http"]
    monitor = _configure(tmp_path, otlp_endpoint=endpoint, otlp_protocol=protocol)
    _serve(monitor, "asgi", {"x-request-id": "inbound-export-local-1"})
    assert monitor.flush(10)
    stored = [span for span in monitor.store.spans(limit=100) if span.kind == "server"]
    trace_id = stored[0].trace_id

    spans = _exported(receiver, trace_id)
    assert {(span.trace_state, span.flags & IS_REMOTE) for span in spans.values()} == {("", 0)}
    assert all("ragtrail.trace_state" not in span.attributes for span in stored)


def test_the_store_keeps_the_remote_parent_but_not_the_tracestate(tmp_path: Path) -> None:
    """The audit store records which spans continued a remote trace; the client's tracestate
    is only exported."""
    monitor = _configure(tmp_path)
    _serve(monitor, "wsgi", {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
                             "tracestate": TRACESTATE})
    assert monitor.store.flush(timeout=10)
    spans = {span.kind: span for span in monitor.store.spans(limit=100)}
    assert spans["server"].attributes["ragtrail.parent_is_remote"] is True
    assert "ragtrail.parent_is_remote" not in spans["retriever"].attributes
    assert all("ragtrail.trace_state" not in spans[kind].attributes for kind in spans)
