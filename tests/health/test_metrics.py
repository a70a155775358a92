"""MetricsSampler (real psutil readings) and threshold hysteresis on injected readings."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from ragtrail import MetricsSample, Severity
from ragtrail.health import MetricsSampler, ThresholdCheck
from ragtrail.health._thresholds import Hysteresis
from ragtrail.instrument import Monitor

from ._servers import wait_until
from .conftest import MonitorFactory, ServiceFactory


def reading(cpu: float = 10.0, memory: float = 20.0, disk: float = 30.0) -> MetricsSample:
    return MetricsSample(time_us=1_700_000_000_000_000, cpu_percent=cpu, memory_percent=memory,
                         disk_usage_percent=disk, net_sent_bytes_per_s=0.0,
                         net_recv_bytes_per_s=0.0, active_connections=0, queue_depth=0,
                         process_rss_bytes=1)


def threshold_events(monitor: Monitor) -> list[Any]:
    monitor.store.flush(5.0)
    return sorted(monitor.store.events(event_type="resource_threshold"),
                  key=lambda e: e.time_us)


def test_hysteresis_enters_at_threshold_and_leaves_five_points_below() -> None:
    """A level is entered at its threshold and left only 5 points under it."""
    levels = []
    h = Hysteresis(warn=85, fail=95)
    for value in (84, 85, 83, 81, 79.9, 96, 93, 90.5, 89.9, 80, 79):
        h.update(value)
        levels.append(h.level)
    assert levels == ["pass", "warn", "warn", "warn", "pass", "fail", "fail", "fail", "warn",
                      "warn", "pass"]


def test_threshold_events_fire_on_rises_only(make_monitor: MonitorFactory) -> None:
    """A CPU hovering around 85% records one event, not one per sample; re-arms after -5."""
    monitor = make_monitor(cpu_warn_percent=85, cpu_fail_percent=95)
    sampler = MetricsSampler(monitor, interval=60)
    for cpu in (84, 86, 84, 86, 85, 97, 94, 96, 79, 88):
        sampler.observe(reading(cpu=cpu))
    recorded = threshold_events(monitor)
    assert [(e.severity, e.metadata["level"], e.count) for e in recorded] == [
        (Severity.MEDIUM, "warn", 2), (Severity.HIGH, "fail", 1)]
    assert recorded[0].metadata["metric"] == "cpu"


def test_rises_of_different_metrics_are_separate_events(make_monitor: MonitorFactory) -> None:
    """Events coalesce by type, source and severity: a memory warning in the same minute as
    a CPU warning was a count on the CPU row, and nobody saw memory's."""
    monitor = make_monitor()
    MetricsSampler(monitor, interval=60).observe(reading(cpu=90.0, memory=90.0))
    recorded = threshold_events(monitor)
    assert sorted((e.metadata["metric"], e.count) for e in recorded) == [
        ("cpu", 1), ("memory", 1)]


def test_threshold_check_reports_the_sampler_level(make_monitor: MonitorFactory) -> None:
    """ThresholdCheck follows the hysteresis level, with the percentage observed."""
    monitor = make_monitor(memory_warn_percent=80, memory_fail_percent=90)
    sampler = MetricsSampler(monitor, interval=60)
    check = ThresholdCheck(sampler, "memory")
    assert (check.check().status, check.check().output) == ("pass", "no sample yet")
    statuses = []
    for memory in (50, 91, 87, 84.9):
        sampler.observe(reading(memory=memory))
        statuses.append((check.check().status, check.check().observed_value))
    assert statuses == [("pass", 50), ("fail", 91), ("fail", 87), ("warn", 84.9)]
    assert check.check().output == "memory at 84.9%, warn threshold 80%"
    assert (check.key, check.critical) == ("memory:utilization", False)


def test_threshold_check_needs_a_known_metric(monitor: Monitor) -> None:
    """Only cpu, memory and disk have thresholds."""
    with pytest.raises(ValueError, match="cpu, memory, disk"):
        ThresholdCheck(MetricsSampler(monitor), "gpu")  # type: ignore[arg-type]


def test_sample_reads_psutil_and_counts_this_process_connections(monitor: Monitor) -> None:
    """sample() returns plausible host figures and this process's own open connections."""
    sampler = MetricsSampler(monitor, interval=60)
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    try:
        sample = sampler.sample()
    finally:
        client.close()
        server.close()
    assert 0 <= sample.cpu_percent <= 100
    assert 0 < sample.memory_percent <= 100
    assert 0 < sample.disk_usage_percent <= 100
    assert sample.process_rss_bytes > 10_000_000
    assert sample.active_connections >= 2  # at least our listener and our client socket
    assert sampler.latest == sample


def test_background_sampling_writes_samples_to_the_store(monitor: Monitor) -> None:
    """start() samples at once and every interval; samples land in the store."""
    sampler = MetricsSampler(monitor, interval=0.05)
    sampler.start()
    try:
        wait_until(lambda: monitor.store.flush(1.0) and len(monitor.store.metrics(limit=5)) >= 2)
    finally:
        sampler.stop()
    assert monitor.store.metrics(limit=1)[0].process_rss_bytes > 0


def test_a_health_service_samples_system_metrics_by_default(
        monitor: Monitor, make_service: ServiceFactory) -> None:
    """Without sampler=, the service (and so every middleware) writes MetricsSamples from start()
    and stops sampling at stop(); sampler=False leaves sampling to someone else."""
    service = make_service()
    assert make_service(sampler=False).sampler is None
    service.start()
    wait_until(lambda: monitor.store.flush(1.0) and len(monitor.store.metrics(limit=1)) == 1)
    assert monitor.store.metrics(limit=1)[0].memory_percent > 0
    service.stop()
    assert service.sampler is not None
    assert service.sampler._thread is None
