"""Fixtures for the instrumentation tests: a fresh monitor on a real SQLite store per test.

Every test in this directory starts with no process-wide monitor and ends with whatever it
configured shut down, so no test sees another's spans, settings or kill switch. A default
monitor made by ``get_monitor()`` during a test lands in ``tmp_path``, never in the working
directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ragtrail.instrument import Monitor, configure

MonitorFactory = Callable[..., Monitor]


@pytest.fixture(autouse=True)
def _isolated_monitor(isolated_monitor: None) -> None:
    """Every test here runs with the shared ``isolated_monitor`` (tests/conftest.py)."""


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
