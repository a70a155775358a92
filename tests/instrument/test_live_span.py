"""``start_span``/``LiveSpan``: a real OTel span in the real OTel context, cheap to make."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator

import pytest
from instrument_support import only_span, stored_spans
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from ragtrail import SpanRecord
from ragtrail.instrument import LiveSpan, Monitor, correlation_scope, monitored, start_span
from ragtrail.instrument._span_record import span_record

REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE_PARENT = "00f067aa0ba902b7"


@pytest.fixture
def sdk() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    """An OTel SDK tracer (not the global provider) whose spans are kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("other-instrumentation"), exporter
    provider.shutdown()


def test_started_span_is_current_until_ended(monitor: Monitor) -> None:
    """``trace.get_current_span()`` returns the LiveSpan between start and end."""
    before = trace.get_current_span()
    span = start_span("request", "server")
    assert isinstance(span, LiveSpan)
    assert trace.get_current_span() is span
    span.end()
    assert trace.get_current_span() is before
    stored = only_span(monitor, "request")
    assert stored.kind == "server"
    assert stored.trace_id == f"{span.get_span_context().trace_id:032x}"


def test_sdk_spans_nest_under_ragtrail_spans(
        monitor: Monitor, sdk: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    """A span of another OTel instrumentation started inside ours is our child."""
    tracer, exporter = sdk
    with start_span("request", "server") as outer, tracer.start_as_current_span("db query"):
        pass
    (db_span,) = exporter.get_finished_spans()
    assert db_span.parent is not None
    assert db_span.parent.span_id == outer.get_span_context().span_id
    assert db_span.context.trace_id == outer.get_span_context().trace_id


def test_ragtrail_spans_nest_under_sdk_spans(
        monitor: Monitor, sdk: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    """``@monitored`` inside an SDK span is its child, in its trace, following its sampling."""
    tracer, exporter = sdk

    @monitored(name="retrieve")
    def retrieve() -> None:
        pass

    with tracer.start_as_current_span("http handler"):
        retrieve()
    (handler,) = exporter.get_finished_spans()
    stored = only_span(monitor, "retrieve")
    assert stored.parent_span_id == f"{handler.context.span_id:016x}"
    assert stored.trace_id == f"{handler.context.trace_id:032x}"


def test_parent_context_from_a_traceparent_header(monitor: Monitor) -> None:
    """``parent=`` takes an extracted W3C context: same trace, remote span as parent."""
    parent = extract({"traceparent": f"00-{REMOTE_TRACE}-{REMOTE_PARENT}-01"})
    span = start_span("request", "server", parent=parent)
    span.end()
    stored = only_span(monitor, "request")
    assert (stored.trace_id, stored.parent_span_id) == (REMOTE_TRACE, REMOTE_PARENT)
    assert span.get_span_context().trace_flags.sampled


def test_attributes_events_and_status_reach_the_store(monitor: Monitor) -> None:
    """The OTel span API on a LiveSpan ends up in the stored record."""
    span = start_span("request", "server", attributes={"http.request.method": "GET"},
                      correlation_id="c0ffee00c0ffee00c0ffee00c0ffee00")
    span.set_attribute("http.route", "/ask")
    span.set_attributes({"http.response.status_code": 503})
    span.add_event("cache miss", {"cache.key": "q1"})
    span.update_name("GET /ask")
    span.set_status(Status(StatusCode.ERROR, "upstream unavailable"))
    span.end()
    stored = only_span(monitor, "GET /ask")
    assert stored.attributes["http.request.method"] == "GET"
    assert stored.attributes["http.route"] == "/ask"
    assert stored.attributes["http.response.status_code"] == 503
    assert [(e.name, e.attributes) for e in stored.events] == [("cache miss", {"cache.key": "q1"})]
    assert (stored.status, stored.error_message) == ("error", "upstream unavailable")
    assert stored.correlation_id == "c0ffee00c0ffee00c0ffee00c0ffee00"


def test_application_annotations_pass_the_redactor(monitor: Monitor) -> None:
    """What app code sets through the OTel span API on a ragtrail span is redacted like
    everything else stored or exported: by value, and by a secret-looking key."""
    email, key = "ana.canary@example.org", "AKIAIOSFODNN7CANARY9"
    with correlation_scope():
        span = start_span("request", "server", attributes={"user.note": f"mail {email}"})
        trace.get_current_span().set_attribute("user.contact", email)
        span.set_attributes({"upload.url": f"s3://b/k?X-Amz-Credential={key}",
                             "service.api_key": "plain-looking-value", "retries": 2})
        span.add_event("login", {"user.email": email})
        span.record_exception(ValueError("bad"), attributes={"user.email": email})
        span.end()
    stored = only_span(monitor, "request")
    assert stored.attributes["user.note"] == "mail [REDACTED]"
    assert stored.attributes["user.contact"] == "[REDACTED]"
    assert key not in stored.attributes["upload.url"]
    assert stored.attributes["service.api_key"] == "[REDACTED]"
    assert stored.attributes["retries"] == 2
    assert [e.attributes["user.email"] for e in stored.events] == ["[REDACTED]"] * 2


def test_record_exception_redacts_the_message(monitor: Monitor) -> None:
    """``record_exception`` adds the OTel exception event with a redacted message."""
    span = start_span("request", "server")
    try:
        raise PermissionError("token=ghp_abcdefghijklmnopqrstuvwxyz0123456789 rejected")
    except PermissionError as error:
        span.record_exception(error)
    span.end()
    (event,) = only_span(monitor, "request").events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "PermissionError"
    assert "ghp_" not in event.attributes["exception.message"]
    assert "[REDACTED]" in event.attributes["exception.message"]


def test_ending_twice_records_once(monitor: Monitor) -> None:
    """A second ``end()`` is a no-op, and changes after the end are ignored."""
    span = start_span("once", "function")
    span.end()
    span.set_attribute("late", True)
    span.end()
    spans = stored_spans(monitor)
    assert [s.name for s in spans] == ["once"]
    assert "late" not in spans[0].attributes
    assert not span.is_recording()


def test_ending_in_another_task_leaves_contexts_alone(
        monitor: Monitor, caplog: pytest.LogCaptureFixture) -> None:
    """A span started in one task and ended in another is recorded, with no error logged."""
    async def main() -> None:
        span = await asyncio.create_task(_start_in_task())
        span.end()
        assert trace.get_current_span() is not span

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    assert [s.name for s in stored_spans(monitor)] == ["handed over"]
    assert caplog.records == []


async def _start_in_task() -> LiveSpan:
    return start_span("handed over", "function")


def test_span_takes_the_current_correlation_id(monitor: Monitor) -> None:
    """Without ``correlation_id=`` the span carries the scope's ID."""
    with correlation_scope("5e1ec7ed5e1ec7ed5e1ec7ed5e1ec7ed"):
        start_span("scoped", "function").end()
    assert only_span(monitor, "scoped").correlation_id == "5e1ec7ed5e1ec7ed5e1ec7ed5e1ec7ed"


def test_ended_spans_are_ordinary_frozen_span_records(monitor: Monitor) -> None:
    """The record an ended span stores equals one built by SpanRecord() and stays frozen."""
    assert span_record is not SpanRecord  # the fast path is active for today's SpanRecord
    span = start_span("load index", "function", attributes={"docs": 3})
    span.set_error("IndexError", "no shard")
    span.end()
    stored = only_span(monitor, "load index")
    values = tuple(getattr(stored, f.name) for f in dataclasses.fields(SpanRecord))
    built = span_record(*values)
    assert type(built) is SpanRecord
    assert built == SpanRecord(*values) == stored
    assert (built.name, built.status, built.error_type) == ("load index", "error", "IndexError")
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.name = "changed"  # type: ignore[misc]
