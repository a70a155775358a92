"""The otlp_timeout_ms setting (OTEL_EXPORTER_OTLP_TIMEOUT) bounds every export of the monitor."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest
from otlp_receivers import HangingCollector, metric_readers, wait_until

from ragtrail.instrument import configure, monitored

pytestmark = [pytest.mark.network, pytest.mark.usefixtures("no_app_otel_providers")]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_environment_timeout_bounds_an_export_to_a_hanging_collector(
        protocol: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """OTEL_EXPORTER_OTLP_TIMEOUT=300 (milliseconds): the export to a collector that never
    answers fails and is counted within seconds, not after the 10 s default."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "300")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # the export starts at once
    with HangingCollector() as collector:
        monitor = configure(store_url=f"sqlite:///{tmp_path / 'audit.db'}",
                            otlp_endpoint=collector.endpoint, otlp_protocol=protocol)
        assert monitor.settings.otlp_timeout_ms == 300

        @monitored(name="exported")
        def step() -> None:
            return None

        step()
        # 5 s: the 300 ms timeout plus slack for a busy machine, and half the 10 s default,
        # so the test fails if the setting does not reach the exporter.
        exporter = wait_until(lambda: (h := monitor.health()["exporter"])["failed"] and h,
                              timeout=5.0)
        assert exporter["status"] == "failing"
        assert collector.connections >= 1
        monitor.shutdown(timeout=2.0)


def test_shutdown_shares_one_timeout_between_a_hung_store_and_a_hung_collector(
        tmp_path: Any) -> None:
    """SQLite locked by another process and a collector that never answers: shutdown(2)
    takes about 2 s (plus the store's 1 s grace for a writer inside a call), not a timeout
    for each part one after the other (about 4-5 s before), and the records it could not
    write in time are counted (as dropped, or written by the call the writer was inside)."""
    path = tmp_path / "audit.db"
    with HangingCollector() as collector:
        monitor = configure(store_url=f"sqlite:///{path}", otlp_endpoint=collector.endpoint)

        @monitored(name="exported")
        def step() -> None:
            return None

        step()
        store = monitor.store
        assert store.flush(5)
        locker = sqlite3.connect(path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            for _ in range(50):
                step()
            readers = metric_readers()
            began = time.monotonic()
            monitor.shutdown(2.0)
            elapsed = time.monotonic() - began
        finally:
            locker.close()
    assert elapsed < 3.8, elapsed
    # The collector is gone: the metric reader's last export fails now (see conftest.py).
    wait_until(lambda: not readers & metric_readers())
    wait_until(lambda: store.health().written + store.health().dropped == 51, timeout=15)
