"""ExportPipeline against real OTLP receivers on 127.0.0.1: what arrives, and what does not.

Records are built by hand here (the shape ``LiveSpan.end()`` produces), so these tests pin the
export side alone; test_export_monitored.py goes through ``@monitored``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from export_support import Pipelines, new_trace
from export_support import span_record as record
from forking import output_of_forked_child
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otlp_receivers import (
    KIND_CLIENT,
    KIND_INTERNAL,
    KIND_SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    HangingCollector,
    ReceivedSpan,
    RotelReceiver,
    free_port,
    metric_readers,
    wait_until,
)

from ragtrail import SecurityEvent, Settings, Severity, SpanEvent, SpanRecord
from ragtrail.instrument._export import ExportPipeline
from ragtrail.instrument._otel_logs import _OncePerInterval
from ragtrail.instrument._sampling import HeadSampler

pytestmark = [pytest.mark.network, pytest.mark.usefixtures("no_app_otel_providers")]

def of_trace(trace_id: str) -> Callable[[ReceivedSpan], bool]:
    return lambda span: span.trace_id == trace_id


def rag_trace(trace_id: str, sampled: bool | None = True) -> list[SpanRecord]:
    """server request -> retriever that failed (exception + security event), in end order."""
    root, chain = secrets.token_hex(8), secrets.token_hex(8)
    now_us = time.time_ns() // 1000
    failed = record(
        trace_id, "search_index", "retriever", parent=chain, sampled=sampled, status="error",
        error_type="TimeoutError", error_message="index did not answer",
        correlation_id="c0ffee", attributes={
            "openinference.span.kind": "RETRIEVER", "retrieval.documents.count": 0,
            "ragtrail.capture.args": {"query": "what is rag"}, "dropped": None},
        events=(
            SpanEvent("exception", now_us, {"exception.type": "TimeoutError",
                                            "exception.message": "index did not answer"}),
            SpanEvent("input_validation_fail", now_us, {"ragtrail.event.severity": "medium"}),
        ))
    answer = record(trace_id, "answer", "chain", span_id=chain, parent=root, sampled=sampled,
                    correlation_id="c0ffee", attributes={"openinference.span.kind": "CHAIN"})
    request = record(trace_id, "POST /ask", "server", span_id=root, sampled=sampled,
                     correlation_id="c0ffee", attributes={"http.request.method": "POST"})
    return [failed, answer, request]


TRANSPORTS = ["rotel-http", "rotel-grpc", "oteltap-http"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> tuple[Any, dict[str, str]]:
    """(receiver, settings) for each real receiver and protocol."""
    name: str = request.param
    if name == "oteltap-http":
        receiver: Any = request.getfixturevalue("oteltap")
        return receiver, {"otlp_endpoint": receiver.http_endpoint}
    receiver = request.getfixturevalue("rotel")
    if name == "rotel-grpc":
        return receiver, {"otlp_endpoint": receiver.grpc_endpoint, "otlp_protocol": "grpc"}
    return receiver, {"otlp_endpoint": receiver.http_endpoint}


def test_spans_arrive_with_names_links_kinds_attributes_events_and_status(
        transport: tuple[Any, dict[str, str]], make_pipeline: Pipelines) -> None:
    """A request trace reaches the receiver intact over every protocol."""
    receiver, settings = transport
    pipeline = make_pipeline(service_name="rag-api", **settings)
    trace_id = new_trace()
    records = rag_trace(trace_id)
    for item in records:
        pipeline.submit(item)
    assert pipeline.force_flush(10)

    spans = {s.name: s for s in receiver.wait_for_spans(of_trace(trace_id), count=3)}
    failed, answer, request = records
    assert spans["POST /ask"].parent_span_id == ""
    assert spans["answer"].parent_span_id == request.span_id
    assert spans["search_index"].parent_span_id == answer.span_id
    assert [spans[n].span_id for n in ("search_index", "answer", "POST /ask")] == [
        r.span_id for r in records]
    assert (spans["POST /ask"].kind, spans["answer"].kind) == (KIND_SERVER, KIND_INTERNAL)
    retriever = spans["search_index"]
    assert retriever.attributes == {
        "openinference.span.kind": "RETRIEVER",
        "retrieval.documents.count": 0,
        "ragtrail.capture.args": '{"query":"what is rag"}',
        "ragtrail.correlation_id": "c0ffee",
        "error.type": "TimeoutError",
    }
    assert (retriever.status_code, retriever.status_message) == (
        STATUS_ERROR, "TimeoutError: index did not answer")
    assert spans["answer"].status_code == STATUS_UNSET
    assert [(e.name, e.attributes) for e in retriever.events] == [
        ("exception", {"exception.type": "TimeoutError",
                       "exception.message": "index did not answer"}),
        ("input_validation_fail", {"ragtrail.event.severity": "medium"}),
    ]
    assert retriever.end_ns - retriever.start_ns == 1_500_000
    assert retriever.start_ns == failed.start_us * 1000
    assert pipeline.health()["exported"] == 3


def test_resource_and_scope_come_from_settings(rotel: RotelReceiver,
                                               make_pipeline: Pipelines) -> None:
    """service.*, deployment.environment(.name), OTEL_RESOURCE_ATTRIBUTES and the scope."""
    pipeline = make_pipeline(
        otlp_endpoint=rotel.http_endpoint, service_name="rag-api", service_version="2.3.1",
        environment="staging", resource_attributes={"cloud.region": "eu-west-1",
                                                    "service.name": "ignored"})
    trace_id = new_trace()
    pipeline.submit(record(trace_id, "fetch", "client"))
    assert pipeline.force_flush(10)

    (span,) = rotel.wait_for_spans(of_trace(trace_id))
    assert span.kind == KIND_CLIENT
    assert span.scope == "ragtrail"
    assert span.resource is not None
    assert {k: span.resource[k] for k in (
        "service.name", "service.version", "deployment.environment.name",
        "deployment.environment", "cloud.region", "telemetry.sdk.language")} == {
        "service.name": "rag-api", "service.version": "2.3.1",
        "deployment.environment.name": "staging", "deployment.environment": "staging",
        "cloud.region": "eu-west-1", "telemetry.sdk.language": "python"}


def test_unsampled_error_trace_is_exported_whole(rotel: RotelReceiver,
                                                 make_pipeline: Pipelines) -> None:
    """Ratio 0 still exports a trace with an error: spans ended before and after it."""
    pipeline = make_pipeline(otlp_endpoint=rotel.http_endpoint, traces_sampler="traceidratio",
                             traces_sampler_arg=0.0)
    trace_id = new_trace()
    root = secrets.token_hex(8)
    before = record(trace_id, "embed", "embedding", parent=root, sampled=False)
    for item in [before, *rag_trace(trace_id, sampled=False)[:1]]:
        pipeline.submit(item)
    after = record(trace_id, "request", "server", span_id=root, sampled=False)
    pipeline.submit(after)
    assert pipeline.force_flush(10)

    received = rotel.wait_for_spans(of_trace(trace_id), count=3)
    assert sorted(s.name for s in received) == ["embed", "request", "search_index"]
    assert pipeline.health()["rescued"] == 3


@pytest.mark.parametrize("via", ["count_event", "span_event"])
def test_unsampled_trace_with_high_event_is_exported(
        via: str, rotel: RotelReceiver, make_pipeline: Pipelines) -> None:
    """A high security event keeps its unsampled trace, told by the monitor or seen on a span."""
    pipeline = make_pipeline(otlp_endpoint=rotel.http_endpoint, traces_sampler="always_off")
    trace_id, root = new_trace(), secrets.token_hex(8)
    pipeline.submit(record(trace_id, "retrieve", "retriever", parent=root, sampled=False))
    events: tuple[SpanEvent, ...] = ()
    if via == "count_event":
        pipeline.count_event(SecurityEvent(
            "malicious_prompt_injection", Severity.HIGH, "guard", "ignore previous instructions",
            time.time_ns() // 1000, trace_id=trace_id, span_id=root))
    else:
        events = (SpanEvent("malicious_prompt_injection", time.time_ns() // 1000,
                            {"ragtrail.event.severity": "critical"}),)
    pipeline.submit(record(trace_id, "guard", "tool", span_id=root, sampled=False,
                           events=events))
    assert pipeline.force_flush(10)

    received = rotel.wait_for_spans(of_trace(trace_id), count=2)
    assert sorted(s.name for s in received) == ["guard", "retrieve"]


def test_unsampled_quiet_trace_is_held_then_discarded(rotel: RotelReceiver,
                                                      make_pipeline: Pipelines) -> None:
    """No error, only a medium event: nothing is exported and the held spans age out."""
    pipeline = make_pipeline(otlp_endpoint=rotel.http_endpoint, traces_sampler="always_off",
                             create={"rescue_max_age": 0.3, "schedule_delay": 0.05})
    quiet = new_trace()
    pipeline.submit(record(quiet, "retrieve", "retriever", sampled=False, parent="ab" * 8))
    pipeline.count_event(SecurityEvent("input_validation_fail", Severity.MEDIUM, "api", "bad",
                                       time.time_ns() // 1000, trace_id=quiet))
    pipeline.submit(record(quiet, "request", "server", span_id="ab" * 8, sampled=None))
    assert pipeline.force_flush(10)
    assert pipeline.health()["unsampled_held"] == 2

    # A failing trace exported after the quiet one: once it has arrived, so would have the
    # quiet one, had it been exported.
    sentinel = new_trace()
    pipeline.submit(record(sentinel, "boom", status="error", sampled=False))
    assert pipeline.force_flush(10)
    rotel.wait_for_spans(of_trace(sentinel))
    assert [s for s in rotel.spans() if s.trace_id == quiet] == []
    health = wait_until(lambda: (h := pipeline.health())["unsampled_discarded"] == 2 and h)
    assert (health["unsampled_held"], health["exported"]) == (0, 1)


def test_sampled_flag_missing_falls_back_to_the_trace_id_ratio(
        rotel: RotelReceiver, make_pipeline: Pipelines) -> None:
    """Records without the flag are sampled by the configured sampler as trace roots."""
    pipeline = make_pipeline(otlp_endpoint=rotel.http_endpoint, traces_sampler="traceidratio",
                             traces_sampler_arg=0.5)
    # TraceIdRatioBased compares the low 64 bits with ratio * 2**64.
    kept, dropped = "0" * 16 + "0" * 15 + "1", "0" * 16 + "f" * 16
    pipeline.submit(record(dropped, "out", sampled=None))
    pipeline.submit(record(kept, "in", sampled=None))
    assert pipeline.force_flush(10)
    rotel.wait_for_spans(of_trace(kept))
    assert pipeline.health()["unsampled_held"] == 1


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_hanging_collector_never_slows_the_caller_and_loss_is_counted(
        protocol: str, make_pipeline: Pipelines) -> None:
    """A collector that accepts and never answers: submit() stays cheap, drops are counted."""
    with HangingCollector() as collector:
        pipeline = make_pipeline(
            otlp_endpoint=collector.endpoint, otlp_protocol=protocol, export_queue_size=1000,
            export_batch_size=100, create={"export_timeout": 0.5, "schedule_delay": 0.05})
        trace_id = new_trace()
        records = [record(trace_id, f"step-{i}") for i in range(5000)]
        started = time.perf_counter()
        for item in records:
            pipeline.submit(item)
        elapsed = time.perf_counter() - started

        assert elapsed / len(records) < 50e-6  # measured ~0.2 us; generous for busy CI
        health = wait_until(lambda: (h := pipeline.health())["failed"] > 0 and h, timeout=15)
        assert health["status"] == "failing"
        assert health["dropped"] >= len(records) - 1000 - 100
        # "... failed", or "... failed: ReadTimeout" where the exporter raises (OTel < 1.39)
        assert health["last_error"].startswith("otlp export of 100 spans failed")
        assert collector.connections >= 1
        started = time.monotonic()
        pipeline.shutdown(1.0)
        assert time.monotonic() - started < 3.0
        # What is still queued is reported (and logged); the export thread goes on with it,
        # so in a process that lives on every span ends up exported, failed or dropped.
        after = pipeline.health()
        assert 0 < after["unfinished_at_shutdown"] <= 1000  # the queue's bound
        after = wait_until(lambda: (h := pipeline.health())["dropped"] + h["failed"]
                           == len(records) and h, timeout=60)
        assert after["exported"] == 0
        pipeline.submit(record(trace_id, "after-shutdown"))
        assert pipeline.health()["dropped"] == after["dropped"] + 1
        # The span export used up the budget, but the metric reader was still told to stop:
        # its thread ends after its last export times out instead of living on for good.
        wait_until(lambda: not metric_readers(), timeout=30)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork only")
def test_forked_worker_exports_on_its_own_thread(rotel: RotelReceiver,
                                                 make_pipeline: Pipelines) -> None:
    """A process forked after configuration (gunicorn --preload) still exports its spans."""
    pipeline = make_pipeline(otlp_endpoint=rotel.http_endpoint)
    pipeline.submit(record(new_trace(), "in-parent"))
    assert pipeline.force_flush(10)
    child_trace = new_trace()

    def child() -> str:
        pipeline.submit(record(child_trace, "in-child"))
        return f"flushed={pipeline.force_flush(10)} exported={pipeline.health()['exported']}"

    assert output_of_forked_child(child) == "flushed=True exported=1"
    (span,) = rotel.wait_for_spans(of_trace(child_trace))
    assert span.name == "in-child"
    assert pipeline.health()["exported"] == 1  # the parent's counters are its own


def test_full_queue_drops_newest_and_reports_degraded(rotel: RotelReceiver,
                                                      make_pipeline: Pipelines) -> None:
    """Past export_queue_size, spans and events are dropped and counted; what fit is exported."""
    pipeline = make_pipeline(otlp_endpoint=rotel.http_endpoint, export_queue_size=10,
                             export_batch_size=10,
                             create={"schedule_delay": 60.0})  # the thread stays asleep
    trace_id = new_trace()

    def event() -> SecurityEvent:
        return SecurityEvent("authz_fail", Severity.HIGH, "api", "denied",
                             time.time_ns() // 1000, trace_id=trace_id)

    for i in range(9):
        pipeline.submit(record(trace_id, f"step-{i}"))
    pipeline.count_event(event())  # the tenth: a full batch of spans would wake the thread
    for i in range(9, 14):
        pipeline.submit(record(trace_id, f"step-{i}"))
    pipeline.count_event(event())
    health = pipeline.health()
    assert (health["status"], health["queue_depth"], health["dropped"]) == ("degraded", 10, 6)
    assert pipeline.force_flush(10)
    received = rotel.wait_for_spans(of_trace(trace_id), count=9)
    assert sorted(s.name for s in received) == sorted(f"step-{i}" for i in range(9))
    assert pipeline.health()["exported"] == 9


def test_collector_down_is_reported_not_raised(make_pipeline: Pipelines) -> None:
    """Connection refused: the export fails, is counted, health() says failing, and
    force_flush() says the flushed spans were not exported (it said True)."""
    pipeline = make_pipeline(otlp_endpoint=f"http://127.0.0.1:{free_port()}",
                             create={"export_timeout": 0.3})
    pipeline.submit(record(new_trace(), "lost"))
    assert pipeline.force_flush(10) is False
    health = pipeline.health()
    assert (health["status"], health["failed"], health["exported"]) == ("failing", 1, 0)
    assert health["last_error_time_us"] is not None


def test_joins_the_app_tracer_provider_and_keeps_it(rotel: RotelReceiver) -> None:
    """With an app SDK provider, ragtrail's spans go through its processors and resource."""
    app = TracerProvider(resource=Resource({"service.name": "app-owned"}))
    app.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"{rotel.http_endpoint}/v1/traces")))
    trace.set_tracer_provider(app)
    pipeline = ExportPipeline.create(Settings(service_name="ragtrail-name"))
    assert pipeline is not None
    try:
        trace_id = new_trace()
        ragtrail_root = record(trace_id, "answer", "chain")
        pipeline.submit(ragtrail_root)
        assert pipeline.force_flush(10)  # flushes the app provider's processors too
        (span,) = rotel.wait_for_spans(of_trace(trace_id))
        assert span.resource is not None
        assert span.resource["service.name"] == "app-owned"
        assert pipeline.health()["mode"] == "joined"
        assert trace.get_tracer_provider() is app
    finally:
        pipeline.shutdown(2.0)
        app.shutdown()


def test_own_export_leaves_the_global_provider_to_the_app(rotel: RotelReceiver,
                                                          make_pipeline: Pipelines) -> None:
    """ragtrail exporting on its own never installs a global provider; the app still can."""
    make_pipeline(otlp_endpoint=rotel.http_endpoint)
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    app = TracerProvider()
    trace.set_tracer_provider(app)
    assert trace.get_tracer_provider() is app
    app.shutdown()


def test_nothing_to_export_to_means_no_pipeline() -> None:
    """No endpoint and no app provider, or OTEL_SDK_DISABLED: create() returns None."""
    assert ExportPipeline.create(Settings()) is None
    assert ExportPipeline.create(Settings(otlp_endpoint="http://127.0.0.1:4318",
                                          sdk_disabled=True)) is None
    trace.set_tracer_provider(TracerProvider())
    assert ExportPipeline.create(Settings(sdk_disabled=True)) is None


def test_the_exporters_retry_warnings_are_held_to_one_a_minute(
        make_pipeline: Pipelines, caplog: pytest.LogCaptureFixture) -> None:
    """A collector down for a day made the OTLP exporter log every retry of every batch
    (about 40 lines a minute in a soak run); each of its messages passes once a minute."""
    pipeline = make_pipeline(otlp_endpoint=f"http://127.0.0.1:{free_port()}",
                             create={"export_timeout": 0.3})
    with caplog.at_level(logging.WARNING):
        for _ in range(4):
            pipeline.submit(record(new_trace(), "lost"))
            assert pipeline.force_flush(10) is False
    from_exporter = Counter((r.name, str(r.msg)) for r in caplog.records
                            if r.name.startswith("opentelemetry.exporter"))
    assert all(count == 1 for count in from_exporter.values()), from_exporter
    assert pipeline.health()["failed"] == 4


def test_the_held_back_count_is_told_with_the_next_line() -> None:
    now = [100.0]
    limiter = _OncePerInterval(interval_s=60, clock=lambda: now[0])
    lines = [logging.LogRecord("opentelemetry.exporter.x", logging.WARNING, "f", 1,
                               "Transient error %s, retrying", ("503",), None) for _ in range(4)]
    passed = [limiter.filter(line) for line in lines[:3]]
    now[0] += 61
    assert [*passed, limiter.filter(lines[3])] == [True, False, False, True]
    assert lines[3].getMessage() == ("Transient error 503, retrying [ragtrail held back 2 more "
                                     "like this in the last 60 s; health() counts every failure]")


class _SlowFlushSink:
    """A real pipeline's sink stand-in whose flush lasts until a later span was exported
    (what a slow exporter flush allows), failing that span: nothing here is on the wire."""

    mode = "otlp"
    resource = Resource({})
    span_limits = SpanLimits()

    def __init__(self) -> None:
        self.flushing = threading.Event()
        self.later_exported = threading.Event()

    def export(self, spans: Any) -> bool:
        if any(span.name == "later" for span in spans):
            self.later_exported.set()
            return False
        return True

    def flush(self, timeout: float) -> bool:
        self.flushing.set()
        self.later_exported.wait(5)
        return True

    def shutdown(self, timeout: float) -> None:
        pass


def test_force_flush_judges_only_the_spans_queued_before_it() -> None:
    """A span queued (and failed) while force_flush() waited on the exporter's own flush made
    it say the caller's spans were lost."""
    sink = _SlowFlushSink()
    pipeline = ExportPipeline(lambda: sink, sampler=HeadSampler("always_on"),
                              schedule_delay=0.01)
    try:
        pipeline.submit(record(new_trace(), "mine"))
        later = threading.Thread(target=lambda: (sink.flushing.wait(5),
                                                 pipeline.submit(record(new_trace(), "later"))))
        later.start()
        assert pipeline.force_flush(10) is True
        later.join()
        # The later span's failure (counted once its export call has returned).
        assert wait_until(lambda: pipeline.health()["failed"] == 1)
    finally:
        pipeline.shutdown(2)
