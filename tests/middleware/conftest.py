"""Fixtures for the middleware tests: a real monitor on a SQLite store per test.

No test sees another's monitor: the process-wide one is reset around each test, and a default
monitor made by ``get_monitor()`` lands in ``tmp_path``. Helpers live in ``_support``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ragtrail import Settings
from ragtrail.instrument import Monitor

MonitorFactory = Callable[..., Monitor]


@pytest.fixture(autouse=True)
def _isolated_monitor(isolated_monitor: None) -> None:
    """Every test here runs with the shared ``isolated_monitor`` (tests/conftest.py)."""


@pytest.fixture
def make_monitor(tmp_path: Path) -> Iterator[MonitorFactory]:
    """``make_monitor(**settings)``: a Monitor on a fresh SQLite file, shut down afterwards."""
    monitors: list[Monitor] = []

    def make(**settings: Any) -> Monitor:
        settings.setdefault("store_url", f"sqlite:///{tmp_path / f'audit{len(monitors)}.db'}")
        settings.setdefault("service_name", "middleware-tests")
        monitor = Monitor(Settings(**settings))
        monitors.append(monitor)
        return monitor

    yield make
    for monitor in monitors:
        monitor.shutdown(timeout=10)


@pytest.fixture
def monitor(make_monitor: MonitorFactory) -> Monitor:
    return make_monitor()


