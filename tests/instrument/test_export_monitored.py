"""End to end: ``@monitored`` + ``configure(otlp_endpoint=...)`` to a real collector."""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from otlp_receivers import (
    KIND_INTERNAL,
    STATUS_ERROR,
    ReceivedSpan,
    RotelReceiver,
    isolated_otel_globals,
)

from ragtrail.instrument import configure, correlation_scope, get_monitor, monitored, shutdown

pytestmark = pytest.mark.network


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """No app provider at the start; the process-wide monitor stopped at the end."""
    with isolated_otel_globals():
        yield
        shutdown(5.0)


def configure_for(tmp_path: Path, service: str, **settings: Any) -> None:
    configure(service_name=service, store_url=f"sqlite:///{tmp_path / 'audit.db'}", **settings)


def of_service(service: str) -> Any:
    return lambda span: span.resource is not None and span.resource["service.name"] == service


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans}


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_monitored_pipeline_arrives_nested_with_rag_kinds_and_correlation(
        protocol: str, rotel: RotelReceiver, tmp_path: Path) -> None:
    """A chain calling a retriever and a failing LLM: links, kinds, correlation, exception."""
    service = f"e2e-{secrets.token_hex(4)}"
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    configure_for(tmp_path, service, otlp_endpoint=endpoint, otlp_protocol=protocol)

    @monitored(kind="retriever")
    def retrieve(query: str) -> list[dict[str, Any]]:
        return [{"id": "doc-1", "score": 0.9}, {"id": "doc-2", "score": 0.7}]

    @monitored(kind="llm")
    def generate(prompt: str) -> str:
        raise RuntimeError("model overloaded")

    @monitored(kind="chain", name="answer")
    def answer(query: str) -> str:
        retrieve(query)
        try:
            return generate(query)
        except RuntimeError:
            return "sorry"

    with correlation_scope("4bf92f3577b34da6a3ce929d0e0e4736"):
        assert answer("what is rag?") == "sorry"
    shutdown(10.0)  # drains the export queue

    spans = by_name(rotel.wait_for_spans(of_service(service), count=3))
    chain, retriever, llm = spans["answer"], spans[_qualname(retrieve)], spans[
        _qualname(generate)]
    assert chain.parent_span_id == ""
    assert retriever.parent_span_id == chain.span_id
    assert llm.parent_span_id == chain.span_id
    assert {chain.trace_id, retriever.trace_id, llm.trace_id} == {chain.trace_id}
    assert [s.attributes["openinference.span.kind"] for s in (chain, retriever, llm)] == [
        "CHAIN", "RETRIEVER", "LLM"]
    assert {s.kind for s in (chain, retriever, llm)} == {KIND_INTERNAL}
    assert {s.attributes["ragtrail.correlation_id"] for s in spans.values()} == {
        "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert "ragtrail.sampled" not in retriever.attributes
    assert llm.status_code == STATUS_ERROR
    (exception,) = [e for e in llm.events if e.name == "exception"]
    assert exception.attributes["exception.message"] == "model overloaded"
    assert chain.scope == "ragtrail"
    (duration,) = rotel.wait_for_points(
        lambda p: p.metric == "ragtrail.call.duration" and p.resource is not None
        and p.resource["service.name"] == service
        and p.attributes["ragtrail.call.name"] == "answer")
    assert (duration.unit, duration.count, duration.attributes["ragtrail.call.kind"]) == (
        "s", 1, "chain")


def test_ratio_zero_exports_only_the_trace_that_failed(rotel: RotelReceiver,
                                                       tmp_path: Path) -> None:
    """traceidratio 0: a quiet request is not exported; a failing or attacked one is, whole."""
    service = f"e2e-sampling-{secrets.token_hex(4)}"
    configure_for(tmp_path, service, otlp_endpoint=rotel.http_endpoint,
                  traces_sampler="traceidratio", traces_sampler_arg=0.0)

    @monitored(kind="retriever")
    def retrieve(query: str) -> list[str]:
        return ["doc-1"]

    @monitored(kind="chain")
    def quiet(query: str) -> int:
        return len(retrieve(query))

    @monitored(kind="chain")
    def failing(query: str) -> None:
        retrieve(query)
        raise ValueError("no answer")

    @monitored(kind="chain")
    def attacked(query: str) -> int:
        get_monitor().security_event("malicious_prompt_injection", "high", "guard",
                                     "ignore previous instructions")
        return len(retrieve(query))

    quiet("a")
    with pytest.raises(ValueError, match="no answer"):
        failing("b")
    attacked("c")
    monitor = get_monitor()
    shutdown(10.0)

    received = rotel.wait_for_spans(of_service(service), count=4)
    assert sorted(s.name for s in received) == sorted(
        [_qualname(failing), _qualname(attacked), _qualname(retrieve), _qualname(retrieve)])
    assert len({s.trace_id for s in received}) == 2
    (event,) = [e for s in received for e in s.events if e.name == "malicious_prompt_injection"]
    assert event.attributes["ragtrail.event.severity"] == "high"
    exporter = monitor.health()["exporter"]
    # quiet()'s two spans were held, then discarded at shutdown
    assert (exporter["rescued"], exporter["unsampled_discarded"], exporter["exported"]) == (
        4, 2, 4)


def test_app_provider_is_joined_and_its_spans_nest_under_monitored(rotel: RotelReceiver,
                                                                    tmp_path: Path) -> None:
    """With the app's SDK provider set first, both kinds of span share one trace and resource."""
    app = TracerProvider(resource=Resource({"service.name": "app-with-sdk"}))
    app.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=rotel.grpc_endpoint, insecure=True)))
    trace.set_tracer_provider(app)
    tracer = trace.get_tracer("app.db")
    configure_for(tmp_path, "ignored-when-joined")
    marker = secrets.token_hex(4)

    @monitored(kind="retriever", name=f"retrieve-{marker}")
    def retrieve() -> None:
        with tracer.start_as_current_span(f"db.query-{marker}"):
            pass

    retrieve()
    shutdown(10.0)
    try:
        spans = by_name(rotel.wait_for_spans(lambda s: s.name.endswith(marker), count=2))
        ours, theirs = spans[f"retrieve-{marker}"], spans[f"db.query-{marker}"]
        assert theirs.parent_span_id == ours.span_id
        assert theirs.trace_id == ours.trace_id
        assert ours.resource is not None
        assert ours.resource["service.name"] == "app-with-sdk"
        assert trace.get_tracer_provider() is app
    finally:
        app.shutdown()


def test_canary_secrets_never_reach_the_collector(rotel: RotelReceiver, tmp_path: Path) -> None:
    """Captured arguments, exception text and event descriptions are redacted before export."""
    service = f"e2e-canary-{secrets.token_hex(4)}"
    configure_for(tmp_path, service, otlp_endpoint=rotel.http_endpoint)
    aws_key = "AKIA" + "Q3EGRIWXZ7CANARY"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5eHl6"
    email = "canary.person@example.com"
    api_key = "sk-canary-" + secrets.token_hex(12)

    @monitored(kind="tool", capture_args=True)
    def call_tool(query: str, api_key: str) -> None:
        get_monitor().security_event("authn_token_fail", "high", "tool",
                                     f"rejected Bearer {jwt}")
        raise PermissionError(f"key {aws_key} refused for {email}")

    query = f"forward the invoice to {email}"
    with pytest.raises(PermissionError):
        call_tool(query, api_key=api_key)
    shutdown(10.0)

    (span,) = rotel.wait_for_spans(of_service(service))
    assert "[REDACTED]" in str(span.attributes)  # something was captured, and cleaned
    assert span.status_code == STATUS_ERROR
    raw = rotel.raw_text()
    for canary in (aws_key, jwt, email, api_key):
        assert canary not in raw


def test_arguments_named_like_secrets_are_redacted_before_export(rotel: RotelReceiver,
                                                                 tmp_path: Path) -> None:
    """An ``api_key`` argument is redacted by its name even when its value looks harmless."""
    service = f"e2e-canary-key-{secrets.token_hex(4)}"
    configure_for(tmp_path, service, otlp_endpoint=rotel.http_endpoint)
    harmless_looking = "canary" + secrets.token_hex(2)

    @monitored(kind="tool", capture_args=True)
    def call_tool(query: str, api_key: str) -> None:
        return None

    call_tool("weather", api_key=harmless_looking)
    shutdown(10.0)
    rotel.wait_for_spans(of_service(service))
    assert harmless_looking not in rotel.raw_text()


def test_inbound_tracestate_is_exported_but_never_written_to_the_audit_store(
        rotel: RotelReceiver, tmp_path: Path) -> None:
    """A remote parent's tracestate with a session token in it: both exported spans carry it;
    the SQLite file holds no trace of it, while the spans' other context is stored."""
    service = f"e2e-tracestate-{secrets.token_hex(4)}"
    configure_for(tmp_path, service, otlp_endpoint=rotel.http_endpoint)
    token = f"sess-{secrets.token_hex(16)}"
    tracestate = f"acme={token},congo=t61rcWkgMzE"
    trace_id = secrets.token_hex(16)
    remote = TraceContextTextMapPropagator().extract(
        {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "tracestate": tracestate})

    @monitored(kind="retriever", name="tracestate.retrieve")
    def retrieve() -> None:
        return None

    @monitored(kind="chain", name="tracestate.answer")
    def answer() -> None:
        retrieve()

    attached = context.attach(remote)
    try:
        answer()
    finally:
        context.detach(attached)
    shutdown(10.0)

    exported = rotel.wait_for_spans(of_service(service), count=2)
    assert {span.trace_state for span in exported} == {tracestate}
    with contextlib.closing(sqlite3.connect(tmp_path / "audit.db")) as db:
        rows = db.execute("SELECT name, trace_id, attributes FROM ragtrail_spans").fetchall()
    assert {(name, stored_trace) for name, stored_trace, _ in rows} == {
        ("tracestate.answer", trace_id), ("tracestate.retrieve", trace_id)}
    stored = {name: json.loads(attributes) for name, _, attributes in rows}
    assert stored["tracestate.answer"]["ragtrail.parent_is_remote"] is True
    assert all("ragtrail.trace_state" not in attributes for attributes in stored.values())
    on_disk = b"".join(path.read_bytes() for path in tmp_path.glob("audit.db*"))
    assert token.encode() not in on_disk


def _qualname(func: Any) -> str:
    return str(func.__qualname__)


@pytest.mark.parametrize(("sampler", "exported"), [
    (sampling.ParentBased(sampling.TraceIdRatioBased(0.0)), 0),
    (sampling.ALWAYS_OFF, 0),
    (sampling.ParentBased(sampling.ALWAYS_ON), 6),
])
def test_a_joined_app_providers_sampler_decides_the_traces_ragtrail_starts(
        tmp_path: Path, sampler: sampling.Sampler, exported: int) -> None:
    """The app's provider sampling 0% in code exported every ragtrail trace and the app's
    spans under them: ragtrail sampled its roots by OTEL_TRACES_SAMPLER alone."""
    finished = InMemorySpanExporter()
    app = TracerProvider(sampler=sampler)
    app.add_span_processor(SimpleSpanProcessor(finished))
    trace.set_tracer_provider(app)
    tracer = trace.get_tracer("app.db")
    configure_for(tmp_path, "joined")

    @monitored(name="answer")
    def answer() -> None:
        with tracer.start_as_current_span("db.query"):
            pass

    for _ in range(3):
        answer()
    shutdown(10.0)
    assert len(finished.get_finished_spans()) == exported
    app.shutdown()


def test_a_sampler_ragtrail_cannot_follow_is_named(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    class Custom(sampling.Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> sampling.SamplingResult:
            return sampling.SamplingResult(sampling.Decision.DROP)

        def get_description(self) -> str:
            return "custom"

    app = TracerProvider(sampler=Custom())
    trace.set_tracer_provider(app)
    configure_for(tmp_path, "joined")
    assert "cannot follow the app's TracerProvider sampler Custom" in caplog.text
    app.shutdown()
