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
from export_support import Pipelines
from otlp_receivers import OteltapReceiver, RotelReceiver, isolated_otel_globals

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


@pytest.fixture(scope="module")
def rotel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RotelReceiver]:
    """A real rotel collector (OTLP over HTTP and gRPC), shared by one test module."""
    with RotelReceiver(tmp_path_factory.mktemp("rotel")) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def oteltap() -> Iterator[OteltapReceiver]:
    """A real oteltap receiver (OTLP over HTTP), shared by one test module."""
    with OteltapReceiver() as receiver:
        yield receiver


@pytest.fixture
def no_app_otel_providers() -> Iterator[None]:
    """No global Tracer/MeterProvider during the test, as in an app that never set one."""
    with isolated_otel_globals():
        yield


@pytest.fixture
def make_pipeline(no_app_otel_providers: None) -> Iterator[Pipelines]:
    """``make_pipeline(**settings)``: export pipelines, all shut down after the test."""
    pipelines = Pipelines()
    yield pipelines
    pipelines.close()
