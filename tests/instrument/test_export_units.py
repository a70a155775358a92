"""The export pipeline's pure parts: conversion, the unsampled-trace buffer, the resource."""

from __future__ import annotations

import os

import pytest
from export_support import new_trace, span_record
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

from ragtrail import SecurityEvent, Settings, Severity, SpanEvent
from ragtrail.instrument._export_convert import SAMPLED_KEY, SpanConverter, otel_attributes
from ragtrail.instrument._export_otlp import safe_endpoint
from ragtrail.instrument._export_sinks import ProviderSink
from ragtrail.instrument._resource import build_resource
from ragtrail.instrument._sampling_buffer import TraceRescue


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- conversion ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "expected"), [
    ("server", SpanKind.SERVER), ("client", SpanKind.CLIENT), ("retriever", SpanKind.INTERNAL),
    ("llm", SpanKind.INTERNAL), ("function", SpanKind.INTERNAL)])
def test_ragtrail_kinds_map_to_otel_span_kinds(kind: str, expected: SpanKind) -> None:
    """Requests are SERVER, outgoing calls CLIENT, every RAG step INTERNAL."""
    span = SpanConverter(Resource({}), "1.0").convert(span_record(new_trace(), "x", kind))
    assert span.kind is expected


def test_conversion_keeps_ids_times_and_strips_the_sampling_flag() -> None:
    """IDs, parent, times in ns, scope, resource; the reserved flag never leaves ragtrail."""
    resource = Resource({"service.name": "svc"})
    record = span_record("0af7651916cd43dd8448eb211c80319c", "answer", parent="b7ad6b7169203331",
                         span_id="00f067aa0ba902b7", sampled=False, duration_us=250,
                         correlation_id="cid-1", attributes={"k": "v"})
    span = SpanConverter(resource, "9.9").convert(record)
    assert span.context is not None
    assert span.parent is not None
    assert (span.context.trace_id, span.context.span_id, span.parent.span_id) == (
        0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, 0xB7AD6B7169203331)
    assert span.context.trace_flags.sampled
    assert (span.start_time, span.end_time) == (record.start_us * 1000,
                                                (record.start_us + 250) * 1000)
    assert dict(span.attributes or {}) == {"k": "v", "ragtrail.correlation_id": "cid-1"}
    assert SAMPLED_KEY in record.attributes  # the record itself is left as it was
    assert span.instrumentation_scope is not None
    assert (span.instrumentation_scope.name, span.instrumentation_scope.version) == (
        "ragtrail", "9.9")
    assert span.resource is resource


def test_error_status_carries_type_and_message() -> None:
    """status ERROR with 'Type: message', error.type set; a success stays UNSET."""
    converter = SpanConverter(Resource({}), "1.0")
    failed = converter.convert(span_record(new_trace(), "x", status="error",
                                           error_type="KeyError", error_message="'doc-7'"))
    assert (failed.status.status_code, failed.status.description) == (
        StatusCode.ERROR, "KeyError: 'doc-7'")
    assert (failed.attributes or {})["error.type"] == "KeyError"
    fine = converter.convert(span_record(new_trace(), "x"))
    assert fine.status.status_code is StatusCode.UNSET
    assert "error.type" not in (fine.attributes or {})


def test_events_keep_name_time_and_attributes() -> None:
    """Span events become OTel events with nanosecond timestamps."""
    event = SpanEvent("exception", 1_700_000_000_000_001, {"exception.type": "ValueError"})
    span = SpanConverter(Resource({}), "1.0").convert(
        span_record(new_trace(), "x", events=(event,)))
    (converted,) = span.events
    assert (converted.name, converted.timestamp, dict(converted.attributes or {})) == (
        "exception", 1_700_000_000_000_001_000, {"exception.type": "ValueError"})


def test_attribute_values_outside_otel_types_become_bounded_json() -> None:
    """Primitives and homogeneous lists pass; None is dropped; the rest is capped JSON."""
    converted = otel_attributes({
        "s": "x", "i": 3, "f": 0.5, "b": False, "ids": ["d1", "d2"], "scores": (0.9, 0.8),
        "none": None, "mixed": [1, "a"], "empty": [], "doc": {"id": "d1", "score": 0.9},
        "big": "y" * 5000, "huge": {"text": "z" * 5000},
    })
    assert {k: v for k, v in converted.items() if k != "huge"} == {
        "s": "x", "i": 3, "f": 0.5, "b": False, "ids": ("d1", "d2"), "scores": (0.9, 0.8),
        "mixed": '[1,"a"]', "empty": "[]", "doc": '{"id":"d1","score":0.9}', "big": "y" * 5000,
    }
    huge = converted["huge"]
    assert isinstance(huge, str)
    assert len(huge) == 4096 + 3
    assert huge.endswith("...")


def test_lone_surrogates_are_escaped_so_the_attribute_is_exported(
        caplog: pytest.LogCaptureFixture) -> None:
    """A non-UTF-8 file name from the OS (``os.fsdecode``) holds a lone surrogate, which
    protobuf cannot encode: the exporter dropped the attribute and logged an error with a
    traceback for every span. Escaped, it arrives as readable text."""
    name = os.fsdecode(b"upload-\xff.pdf")
    record = span_record(new_trace(), "ingest", attributes={
        "input.value": name, "files": [name, "ok.pdf"], "doc": {"path": name}})
    span = SpanConverter(Resource.create({}), "0.1.0").convert(record)
    encoded = encode_spans([span]).SerializeToString()
    assert "ERROR" not in caplog.text
    assert b"upload-\\udcff.pdf" in encoded
    assert span.attributes is not None
    assert span.attributes["input.value"] == "upload-\\udcff.pdf"
    assert span.attributes["files"] == ("upload-\\udcff.pdf", "ok.pdf")


# -- the unsampled-trace buffer -----------------------------------------------------------------

def test_sampled_spans_pass_and_unsampled_ones_are_held() -> None:
    """A sampled span is exported at once; an unsampled one waits."""
    rescue = TraceRescue()
    sampled = span_record(new_trace(), "a")
    assert rescue.route(sampled, True) == [sampled]
    assert rescue.route(span_record(new_trace(), "b"), False) == []
    assert rescue.held == 1


def test_error_releases_held_spans_and_keeps_later_ones() -> None:
    """Held spans of the trace come out with the error span; later spans pass too."""
    rescue = TraceRescue()
    trace_id = new_trace()
    early = span_record(trace_id, "early")
    failed = span_record(trace_id, "failed", status="error")
    late = span_record(trace_id, "late")
    other = span_record(new_trace(), "other")
    assert rescue.route(early, False) == []
    assert rescue.route(other, False) == []
    assert rescue.route(failed, False) == [early, failed]
    assert rescue.route(late, False) == [late]
    assert (rescue.rescued, rescue.held) == (3, 1)


@pytest.mark.parametrize(("severity", "kept"), [
    (Severity.LOW, False), (Severity.MEDIUM, False), (Severity.HIGH, True),
    (Severity.CRITICAL, True)])
def test_only_high_and_critical_events_keep_a_trace(severity: Severity, kept: bool) -> None:
    """The event's trace is kept from high severity up."""
    rescue = TraceRescue()
    trace_id = new_trace()
    held = span_record(trace_id, "held")
    rescue.route(held, False)
    released = rescue.on_event(SecurityEvent("t", severity, "s", "d", 0, trace_id=trace_id))
    assert released == ([held] if kept else [])


def test_events_without_a_trace_release_nothing() -> None:
    """A high event outside any trace has nothing to keep."""
    rescue = TraceRescue()
    rescue.route(span_record(new_trace(), "held"), False)
    assert rescue.on_event(SecurityEvent("t", Severity.CRITICAL, "s", "d", 0)) == []
    assert rescue.held == 1


def test_held_spans_are_bounded_by_count_oldest_first() -> None:
    """Past max_spans the oldest held spans are discarded and counted."""
    rescue = TraceRescue(max_spans=3)
    first, second = new_trace(), new_trace()
    for name in ("a", "b"):
        rescue.route(span_record(first, name), False)
    for name in ("c", "d"):
        rescue.route(span_record(second, name), False)
    assert (rescue.held, rescue.discarded) == (3, 1)
    released = rescue.route(span_record(first, "boom", status="error"), False)
    assert [r.name for r in released] == ["b", "boom"]


def test_held_spans_and_kept_traces_expire_by_age() -> None:
    """After max_age a quiet trace is forgotten, and so is a kept one."""
    clock = FakeClock()
    rescue = TraceRescue(max_age=10.0, clock=clock)
    quiet, kept = new_trace(), new_trace()
    rescue.route(span_record(quiet, "q"), False)
    rescue.route(span_record(kept, "boom", status="error"), False)
    clock.now += 5
    rescue.expire()
    assert rescue.held == 1
    clock.now += 6
    rescue.expire()
    assert (rescue.held, rescue.discarded) == (0, 1)
    assert rescue.route(span_record(kept, "late"), False) == []  # no longer kept


def test_kept_traces_are_bounded() -> None:
    """Only the newest max_traces kept traces are remembered."""
    rescue = TraceRescue(max_traces=2)
    traces = [new_trace() for _ in range(3)]
    for trace_id in traces:
        rescue.route(span_record(trace_id, "boom", status="error"), False)
    assert rescue.route(span_record(traces[0], "late"), False) == []
    late = span_record(traces[2], "late")
    assert rescue.route(late, False) == [late]


def test_clear_discards_everything_held() -> None:
    """At shutdown held spans are counted as discarded."""
    rescue = TraceRescue()
    rescue.route(span_record(new_trace(), "a"), False)
    rescue.clear()
    assert (rescue.held, rescue.discarded) == (0, 1)


@pytest.mark.parametrize("bad", [{"max_spans": 0}, {"max_traces": 0}, {"max_age": 0.0}])
def test_rescue_bounds_are_validated(bad: dict[str, float]) -> None:
    """A zero bound is a configuration mistake, refused at construction."""
    with pytest.raises(ValueError, match="max_spans and max_traces"):
        TraceRescue(**bad)  # type: ignore[arg-type]


# -- resource and endpoints ---------------------------------------------------------------------

def test_settings_win_over_resource_attributes_unless_left_at_default() -> None:
    """OTEL_SERVICE_NAME-style precedence: an explicit setting beats the attribute list."""
    extra = {"service.name": "from-attrs", "service.version": "9", "deployment.environment":
             "qa", "k8s.pod.name": "pod-1"}
    defaults = build_resource(Settings(resource_attributes=extra)).attributes
    assert (defaults["service.name"], defaults["service.version"],
            defaults["deployment.environment.name"], defaults["deployment.environment"],
            defaults["k8s.pod.name"]) == ("from-attrs", "9", "qa", "qa", "pod-1")
    explicit = build_resource(Settings(resource_attributes=extra, service_name="rag-api",
                                       environment="production")).attributes
    assert (explicit["service.name"], explicit["deployment.environment.name"]) == (
        "rag-api", "production")


def test_a_version_or_environment_nobody_set_is_not_exported() -> None:
    """No invented service.version=0.0.0 or deployment.environment=development; an empty
    service.name in the attributes is still unknown_service, as the store says."""
    attributes = build_resource(Settings(resource_attributes={"service.name": ""})).attributes
    assert "service.version" not in attributes
    assert "deployment.environment" not in attributes
    assert "deployment.environment.name" not in attributes
    assert attributes["service.name"] == "unknown_service"


@pytest.mark.parametrize("key", ["deployment.environment.name", "deployment.environment"])
def test_an_environment_in_the_resource_attributes_is_the_services_environment(
        key: str) -> None:
    """OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=production: exported as production
    and run as production (the detailed health routes closed without a token), not exported as
    production while ragtrail applied its development defaults. Given another way (even as
    "development"), the environment is the one given."""
    attributes = {"OTEL_RESOURCE_ATTRIBUTES": f"{key}=%20production%20"}
    settings = Settings.from_env(attributes)
    assert (settings.environment, settings.is_production) == ("production", True)
    assert build_resource(settings).attributes["deployment.environment.name"] == "production"
    assert Settings.from_env(attributes, environment="development").environment == "development"
    assert Settings.from_env({**attributes, "RAGTRAIL_ENVIRONMENT": "staging"}).environment == (
        "staging")


def test_each_resource_has_its_own_instance_id() -> None:
    """service.instance.id tells two processes of one service apart."""
    first = build_resource(Settings()).attributes["service.instance.id"]
    assert first != build_resource(Settings()).attributes["service.instance.id"]


@pytest.mark.parametrize(("endpoint", "shown"), [
    ("https://user:secret@collector.example:4318/v1?token=x", "https://collector.example:4318"),
    ("http://[::1]:4317", "http://[::1]:4317"),
    ("collector:4317", "collector:4317"),
    (None, None)])
def test_health_shows_endpoints_without_credentials(endpoint: str | None,
                                                    shown: str | None) -> None:
    """User info, path and query never reach the health output."""
    assert safe_endpoint(endpoint) == shown



def test_span_limits_apply_to_exported_spans_with_dropped_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT and friends bound ragtrail's spans as the SDK bounds its
    own (they went out with 200 attributes, 2 KB values and 200 events, dropped counts 0)."""
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "5")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "10")
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "3")
    monkeypatch.setenv("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "2")
    record = span_record(
        new_trace(), "annotated", attributes={f"k{i}": "v" * 50 for i in range(20)},
        events=tuple(SpanEvent(f"e{i}", 1_700_000_000_000_000 + i,
                               {"exception.stacktrace": "s" * 500, "a": "1", "b": "2"})
                     for i in range(6)))
    span = SpanConverter(Resource({}), "1.0", SpanLimits()).convert(record)
    assert len(span.attributes or {}) == 5
    assert span.dropped_attributes == 20 - 5
    assert all(len(str(v)) <= 10 for v in (span.attributes or {}).values())
    assert [e.name for e in span.events] == ["e3", "e4", "e5"]
    assert span.dropped_events == 3
    for event in span.events:  # a stack trace is bounded like any other value
        assert len(event.attributes or {}) == 2
        assert all(len(str(v)) <= 10 for v in (event.attributes or {}).values())


def test_spans_within_the_limits_are_left_alone() -> None:
    """The default limits (128 attributes, 128 events): a usual span is not rebuilt."""
    span = SpanConverter(Resource({}), "1.0").convert(
        span_record(new_trace(), "plain", attributes={"k": "v" * 5000}))
    assert (span.dropped_attributes, span.dropped_events) == (0, 0)
    assert span.attributes is not None
    assert span.attributes["k"] == "v" * 5000


def test_joined_spans_get_the_app_providers_limits() -> None:
    """In the app's provider, ragtrail's spans get the limits the app's own spans get."""
    limits = SpanLimits(max_span_attributes=2)
    sink = ProviderSink(TracerProvider(span_limits=limits))
    assert sink.span_limits is limits
