"""The otlp_timeout_ms setting (OTEL_EXPORTER_OTLP_TIMEOUT) bounds every export of the monitor."""

from __future__ import annotations

from typing import Any

import pytest
from otlp_receivers import HangingCollector, wait_until

from ragtrail.instrument import configure, monitored

pytestmark = [pytest.mark.network, pytest.mark.usefixtures("no_app_otel_providers")]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_environment_timeout_bounds_an_export_to_a_hanging_collector(
        protocol: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """OTEL_EXPORTER_OTLP_TIMEOUT=300 (milliseconds): the export to a collector that never
    answers fails and is counted within seconds, not after the 10 s default."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "300")
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
