"""The batch span processor's and the metric reader's variables (OTEL_BSP_*,
OTEL_METRIC_EXPORT_*): read into Settings with the specification's defaults and rules, and
honoured by the export pipeline against real receivers."""

from __future__ import annotations

import logging
import time

import pytest
from export_support import Pipelines, new_trace, span_record
from otlp_receivers import HangingCollector, RotelReceiver, free_port, wait_until

from ragtrail import ConfigurationError, Settings

VARIABLES = {
    "OTEL_BSP_MAX_QUEUE_SIZE": ("export_queue_size", 2048),
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": ("export_batch_size", 512),
    "OTEL_BSP_SCHEDULE_DELAY": ("export_schedule_delay_ms", 5000),
    "OTEL_BSP_EXPORT_TIMEOUT": ("export_timeout_ms", 30_000),
    "OTEL_METRIC_EXPORT_INTERVAL": ("metric_export_interval_ms", 60_000),
    "OTEL_METRIC_EXPORT_TIMEOUT": ("metric_export_timeout_ms", 30_000),
}


def test_defaults_are_the_specifications() -> None:
    """Unset, each variable's setting has the OTel specification's default."""
    settings = Settings.from_env({})
    assert {name: getattr(settings, name) for name, _ in VARIABLES.values()} == dict(
        VARIABLES.values())


def test_each_variable_sets_its_setting() -> None:
    settings = Settings.from_env(dict.fromkeys(VARIABLES, "1000"))
    assert {getattr(settings, name) for name, _ in VARIABLES.values()} == {1000}


@pytest.mark.parametrize("variable", list(VARIABLES))
@pytest.mark.parametrize("raw", ["-1", "ten", "1.5"])
def test_an_unusable_value_is_warned_about_and_the_default_applies(
        variable: str, raw: str, caplog: pytest.LogCaptureFixture) -> None:
    name, default = VARIABLES[variable]
    with caplog.at_level(logging.WARNING, logger="ragtrail"):
        settings = Settings.from_env({variable: raw})
    assert getattr(settings, name) == default
    assert variable in caplog.text


@pytest.mark.parametrize("variable", ["OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                                      "OTEL_BSP_SCHEDULE_DELAY", "OTEL_METRIC_EXPORT_INTERVAL"])
def test_zero_is_refused_where_the_specification_wants_a_positive_value(variable: str) -> None:
    name, default = VARIABLES[variable]
    assert getattr(Settings.from_env({variable: "0"}), name) == default


@pytest.mark.parametrize("variable", ["OTEL_BSP_EXPORT_TIMEOUT", "OTEL_METRIC_EXPORT_TIMEOUT"])
def test_a_timeout_of_zero_is_kept_it_means_no_limit(variable: str) -> None:
    name, _ = VARIABLES[variable]
    assert getattr(Settings.from_env({variable: "0"}), name) == 0


def test_a_batch_larger_than_the_queue_is_cut_to_it_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """The specification: the batch size "must be less than or equal to" the queue size."""
    with caplog.at_level(logging.WARNING, logger="ragtrail"):
        settings = Settings.from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "100",
                                      "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "200"})
    assert (settings.export_queue_size, settings.export_batch_size) == (100, 100)
    assert "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=200" in caplog.text


def test_a_small_queue_alone_cuts_the_default_batch_silently(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ragtrail"):
        settings = Settings.from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "100"})
    assert settings.export_batch_size == 100
    assert Settings.from_env(export_queue_size=64).export_batch_size == 64
    assert Settings(export_queue_size=32).export_batch_size == 32
    assert caplog.text == ""


def test_a_batch_argument_larger_than_the_queue_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"export_batch_size.*export_queue_size"):
        Settings.from_env(export_queue_size=10, export_batch_size=20)


@pytest.mark.network
def test_the_queue_and_batch_sizes_reach_the_pipeline(make_pipeline: Pipelines) -> None:
    """OTEL_BSP_MAX_QUEUE_SIZE is the queue's capacity; OTEL_BSP_MAX_EXPORT_BATCH_SIZE splits
    six spans into two requests of three (a collector that refuses shows each failed one)."""
    pipeline = make_pipeline.from_env({
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "500",
        "OTEL_BSP_MAX_QUEUE_SIZE": "40",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "3"
    })
    trace_id = new_trace()
    for i in range(6):
        pipeline.submit(span_record(trace_id, f"step-{i}"))
    assert pipeline.force_flush(10) is False
    health = pipeline.health()
    assert (health["queue_capacity"], health["failed"]) == (40, 6)
    assert health["last_error"].startswith("otlp export of 3 spans failed")


@pytest.mark.network
def test_the_schedule_delay_is_how_long_a_lone_span_waits(make_pipeline: Pipelines,
                                                          rotel: RotelReceiver) -> None:
    """OTEL_BSP_SCHEDULE_DELAY=60000: a span short of a batch stays queued (ragtrail used to
    wake every 0.5 s) until a flush; the delay does not hold up a flush."""
    pipeline = make_pipeline.from_env({
        "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "60000"
    })
    trace_id = new_trace()
    pipeline.submit(span_record(trace_id, "lone"))
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # three of the old delays
        assert pipeline.health()["queue_depth"] == 1
        time.sleep(0.05)
    assert pipeline.force_flush(10)
    assert rotel.wait_for_spans(lambda span: span.trace_id == trace_id)[0].name == "lone"


@pytest.mark.network
def test_the_batch_export_timeout_bounds_a_hanging_collector(make_pipeline: Pipelines) -> None:
    """OTEL_BSP_EXPORT_TIMEOUT=300 under the 10 s OTLP default: the span export to a collector
    that never answers fails within seconds."""
    with HangingCollector() as collector:
        pipeline = make_pipeline.from_env({
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_EXPORT_TIMEOUT": "300",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            # Spans only: a metric reader's last export would outlive the collector.
            "OTEL_METRICS_EXPORTER": "none"
        })
        pipeline.submit(span_record(new_trace(), "retrieve", "retriever"))
        health = wait_until(lambda: (h := pipeline.health())["failed"] and h, timeout=5.0)
        assert health["status"] == "failing"


@pytest.mark.network
def test_the_metric_export_interval_pushes_without_a_flush(make_pipeline: Pipelines,
                                                           rotel: RotelReceiver) -> None:
    """OTEL_METRIC_EXPORT_INTERVAL=200: a duration point reaches the collector on its own
    (ragtrail pushed every 60 s whatever the variable said)."""
    pipeline = make_pipeline.from_env({
        "OTEL_EXPORTER_OTLP_ENDPOINT": rotel.http_endpoint,
        "OTEL_SERVICE_NAME": f"interval-{new_trace()[:8]}",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "200"
    })
    service = pipeline._sink.resource.attributes["service.name"]
    pipeline.submit(span_record(new_trace(), "embed", "embedding"))
    rotel.wait_for_points(lambda point: point.metric == "ragtrail.call.duration"
                          and point.resource is not None
                          and point.resource["service.name"] == service)


@pytest.mark.network
def test_the_metric_export_timeout_bounds_a_hanging_collector(make_pipeline: Pipelines,
                                                              rotel: RotelReceiver) -> None:
    """OTEL_METRIC_EXPORT_TIMEOUT=300: a metrics push to a collector that never answers gives
    up within about that, not after the 10 s OTLP default."""
    with HangingCollector() as collector:
        pipeline = make_pipeline.from_env({
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{rotel.http_endpoint}/v1/traces",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": collector.endpoint,
            "OTEL_METRIC_EXPORT_TIMEOUT": "300"
        })
        pipeline.submit(span_record(new_trace(), "embed", "embedding"))
        started = time.monotonic()
        pipeline.force_flush(8.0)  # (the SDK's MeterProvider says True whatever happened)
        assert time.monotonic() - started < 4.0
        assert collector.connections >= 1
