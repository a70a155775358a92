"""OTel metrics from the export pipeline, as real OTLP receivers get them."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from export_support import Pipelines, new_trace, span_record
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otlp_receivers import (
    ReceivedPoint,
    RotelReceiver,
    wait_until,
)

from ragtrail import SecurityEvent, Settings, Severity
from ragtrail.instrument._export import ExportPipeline

pytestmark = [pytest.mark.network, pytest.mark.usefixtures("no_app_otel_providers")]


@pytest.fixture(params=["rotel-http", "rotel-grpc", "oteltap-http"])
def transport(request: pytest.FixtureRequest) -> tuple[Any, dict[str, str]]:
    if request.param == "oteltap-http":
        receiver: Any = request.getfixturevalue("oteltap")
        return receiver, {"otlp_endpoint": receiver.http_endpoint}
    receiver = request.getfixturevalue("rotel")
    if request.param == "rotel-grpc":
        return receiver, {"otlp_endpoint": receiver.grpc_endpoint, "otlp_protocol": "grpc"}
    return receiver, {"otlp_endpoint": receiver.http_endpoint}


def event(event_type: str, severity: Severity, count: int = 1) -> SecurityEvent:
    return SecurityEvent(event_type, severity, "guard", "seen", time.time_ns() // 1000,
                         count=count)


def latest(points: list[ReceivedPoint]) -> dict[tuple[tuple[str, Any], ...], ReceivedPoint]:
    """The last point of each attribute set (cumulative temporality: the running total)."""
    return {tuple(sorted(p.attributes.items())): p for p in points}


def test_security_events_are_counted_by_type_and_severity(
        transport: tuple[Any, dict[str, str]], make_pipeline: Pipelines) -> None:
    """ragtrail.security_events adds each event's count under its type and severity."""
    receiver, settings = transport
    pipeline = make_pipeline(**settings)
    kind = f"malicious_probe_{secrets.token_hex(4)}"
    pipeline.count_event(event(kind, Severity.HIGH))
    pipeline.count_event(event(kind, Severity.HIGH, count=4))  # coalesced repeats
    pipeline.count_event(event(kind, Severity.LOW))
    assert pipeline.force_flush(10)

    points = receiver.wait_for_points(
        lambda p: p.metric == "ragtrail.security_events"
        and p.attributes.get("ragtrail.event.type") == kind)
    totals = {k: p.value for k, p in latest(points).items()}
    assert totals == {
        (("ragtrail.event.severity", "high"), ("ragtrail.event.type", kind)): 5,
        (("ragtrail.event.severity", "low"), ("ragtrail.event.type", kind)): 1,
    }
    assert {p.type for p in points} == {"sum"}


def test_monitored_durations_are_a_histogram_in_seconds(
        transport: tuple[Any, dict[str, str]], make_pipeline: Pipelines) -> None:
    """ragtrail.call.duration: name and kind of each step, seconds; requests are not in it."""
    receiver, settings = transport
    pipeline = make_pipeline(**settings)
    name = f"rerank_{secrets.token_hex(4)}"
    trace_id = new_trace()
    for duration_us in (20_000, 60_000, 3_000_000):
        pipeline.submit(span_record(trace_id, name, "reranker", duration_us=duration_us))
    pipeline.submit(span_record(trace_id, name, "reranker", duration_us=1000, status="error",
                                error_type="ValueError"))
    pipeline.submit(span_record(trace_id, name, "server", duration_us=5000))
    assert pipeline.force_flush(10)

    def both_series() -> dict[Any, Any]:
        # The two series may arrive in separate batches of the receiver's output.
        series = latest([p for p in receiver.points() if p.metric == "ragtrail.call.duration"
                         and p.attributes.get("ragtrail.call.name") == name])
        return series if len(series) >= 2 else {}

    by_attributes = wait_until(both_series)
    ok = by_attributes[(("ragtrail.call.kind", "reranker"), ("ragtrail.call.name", name))]
    failed = by_attributes[(("error.type", "ValueError"), ("ragtrail.call.kind", "reranker"),
                            ("ragtrail.call.name", name))]
    assert len(by_attributes) == 2  # the server span is not a @monitored call
    assert (ok.unit, ok.type, ok.count) == ("s", "histogram", 3)
    assert ok.sum == pytest.approx(3.08)
    assert ok.explicit_bounds[:3] == [0.005, 0.01, 0.025]
    # 0.02 s in (0.01, 0.025], 0.06 s in (0.05, 0.075], 3 s in (2.5, 5]
    assert ok.bucket_counts == [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert failed.count == 1


def test_metrics_resource_matches_the_spans(rotel: RotelReceiver,
                                            make_pipeline: Pipelines) -> None:
    """Metrics carry the same service.name and environment as the exported spans."""
    pipeline = make_pipeline(otlp_endpoint=rotel.http_endpoint, service_name="metrics-svc",
                             environment="production")
    kind = f"authz_fail_{secrets.token_hex(4)}"
    pipeline.count_event(event(kind, Severity.MEDIUM))
    assert pipeline.force_flush(10)
    (point, *_) = rotel.wait_for_points(
        lambda p: p.attributes.get("ragtrail.event.type") == kind)
    assert point.resource is not None
    assert (point.resource["service.name"], point.resource["deployment.environment.name"]) == (
        "metrics-svc", "production")


def test_app_meter_provider_is_used_when_set() -> None:
    """With an app SDK MeterProvider, ragtrail's instruments live in it (its readers see them)."""
    reader = InMemoryMetricReader()
    app = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(app)
    pipeline = ExportPipeline.create(Settings(otlp_endpoint="http://127.0.0.1:9"))
    assert pipeline is not None
    try:
        pipeline.count_event(event("authn_login_fail", Severity.MEDIUM))
        assert pipeline.force_flush(5)
        data = wait_until(reader.get_metrics_data)
        names = [m.name for rm in data.resource_metrics for sm in rm.scope_metrics
                 for m in sm.metrics]
        assert names == ["ragtrail.security_events"]
        assert pipeline.health()["metrics"] is True
    finally:
        pipeline.shutdown(1.0)
        app.shutdown()
