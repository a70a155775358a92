"""Fixtures for the instrumentation tests: a fresh monitor on a real SQLite store per test.

Every test in this directory starts with no process-wide monitor and ends with whatever it
configured shut down, so no test sees another's spans, settings or kill switch. A default
monitor made by ``get_monitor()`` during a test lands in ``tmp_path``, never in the working
directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ragtrail.instrument import Monitor, _monitor, configure

MonitorFactory = Callable[..., Monitor]


@pytest.fixture(autouse=True)
def _isolated_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RAGTRAIL_STORE_URL", f"sqlite:///{tmp_path / 'default.db'}")
    for variable in ("RAGTRAIL_ENABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "RAGTRAIL_OTLP_ENDPOINT",
                     "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "RAGTRAIL_SLOW_MS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(_monitor, "_active", None)
    monkeypatch.setattr(_monitor, "_enabled_from_environment", None)
    monkeypatch.setattr(_monitor, "_default_unavailable", False)
    monkeypatch.setattr(_monitor, "_alert_callbacks", [])
    yield
    if _monitor._active is not None:
        _monitor._active.shutdown(timeout=10)


@pytest.fixture
def monitor_factory(tmp_path: Path) -> MonitorFactory:
    """``monitor_factory(**settings)``: configure ragtrail on a new SQLite file in tmp_path."""
    count = 0

    def make(**settings: Any) -> Monitor:
        nonlocal count
        count += 1
        settings.setdefault("store_url", f"sqlite:///{tmp_path / f'audit{count}.db'}")
        settings.setdefault("service_name", "instrument-tests")
        return configure(**settings)

    return make


@pytest.fixture
def monitor(monitor_factory: MonitorFactory) -> Monitor:
    """The process-wide monitor for this test, with default settings and its own store."""
    return monitor_factory()
