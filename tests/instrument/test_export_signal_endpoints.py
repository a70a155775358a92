"""The signal-specific OTLP endpoints (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ..._METRICS_...):
resolved as the OTel exporter specification says, and honoured by real receivers."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
from export_support import Pipelines, new_trace, span_record
from otlp_receivers import RotelReceiver, free_port, isolated_otel_globals

from ragtrail import SecurityEvent, Settings, Severity
from ragtrail.instrument._export import ExportPipeline
from ragtrail.instrument._export_otlp import signal_endpoint

SHARED = "http://collector:4318"


@pytest.mark.parametrize(("settings", "traces", "metrics"), [
    ({"otlp_endpoint": SHARED}, f"{SHARED}/v1/traces", f"{SHARED}/v1/metrics"),
    ({"otlp_endpoint": f"{SHARED}/"}, f"{SHARED}/v1/traces", f"{SHARED}/v1/metrics"),
    ({"otlp_endpoint": "http://collector:4317", "otlp_protocol": "grpc"},
     "http://collector:4317", "http://collector:4317"),
    ({"otlp_endpoint": SHARED, "otlp_traces_endpoint": "https://t.example/otlp/spans"},
     "https://t.example/otlp/spans", f"{SHARED}/v1/metrics"),
    ({"otlp_metrics_endpoint": "https://m.example/in"}, None, "https://m.example/in"),
    ({}, None, None),
])
def test_a_signals_own_endpoint_is_used_as_given_and_wins(
        settings: dict[str, str], traces: str | None, metrics: str | None) -> None:
    resolved = Settings(**settings)
    assert (signal_endpoint(resolved, "traces"), signal_endpoint(resolved, "metrics")) == (
        traces, metrics)


def test_the_signal_endpoints_come_from_the_standard_variables() -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces",
           "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/v1/metrics"}
    settings = Settings.from_env(env)
    assert (settings.otlp_traces_endpoint, settings.otlp_metrics_endpoint) == (
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"])
    assert settings.otlp_endpoint is None


@pytest.fixture(scope="module")
def rotel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RotelReceiver]:
    with RotelReceiver(tmp_path_factory.mktemp("rotel")) as receiver:
        yield receiver


@pytest.fixture
def make_pipeline() -> Iterator[Pipelines]:
    with isolated_otel_globals():
        pipelines = Pipelines()
        yield pipelines
        pipelines.close()


def _nothing_listens() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.network
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_and_metrics_reach_their_own_endpoints(
        rotel: RotelReceiver, make_pipeline: Pipelines, protocol: str) -> None:
    """Only the signal endpoints set, the shared one pointing nowhere: everything arrives."""
    if protocol == "grpc":
        traces = metrics = rotel.grpc_endpoint
    else:
        traces, metrics = f"{rotel.http_endpoint}/v1/traces", f"{rotel.http_endpoint}/v1/metrics"
    pipeline = make_pipeline(otlp_endpoint=_nothing_listens(), otlp_protocol=protocol,
                             otlp_traces_endpoint=traces, otlp_metrics_endpoint=metrics)
    trace_id = new_trace()
    pipeline.submit(span_record(trace_id, "retrieve", "retriever"))
    kind = f"authz_fail_{secrets.token_hex(4)}"
    pipeline.count_event(SecurityEvent(kind, Severity.MEDIUM, "guard", "seen",
                                       time.time_ns() // 1000))
    assert pipeline.force_flush(10)
    (span,) = rotel.wait_for_spans(lambda s: s.trace_id == trace_id)
    assert span.name == "retrieve"
    assert rotel.wait_for_points(lambda p: p.attributes.get("ragtrail.event.type") == kind)
    assert pipeline.health()["failed"] == 0


def test_a_traces_endpoint_alone_turns_export_on() -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT, the traces endpoint is enough for a pipeline."""
    with isolated_otel_globals():
        pipeline = ExportPipeline.create(Settings(otlp_traces_endpoint=_nothing_listens()))
        assert pipeline is not None
        pipeline.shutdown(2.0)
        assert ExportPipeline.create(Settings(otlp_metrics_endpoint=_nothing_listens())) is None
