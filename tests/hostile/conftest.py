"""Fixtures for the hostile-input campaign: a clean process-wide monitor around each test, a
real OTLP receiver per module, and ``campaign(name)`` for a surface's phases and scans."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("hostile._campaign", "hostile._apps")

from instrument.otlp_receivers import RotelReceiver, isolated_otel_globals  # noqa: E402

from ._campaign import Campaign  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_monitor(isolated_monitor: None) -> Iterator[None]:
    """The shared ``isolated_monitor``, and ragtrail exports on its own only when the app set
    no SDK TracerProvider: start with clean OpenTelemetry globals."""
    with isolated_otel_globals():
        yield


@pytest.fixture(autouse=True)
def _untraced_by_coverage(no_cover: None) -> None:
    """pytest-cov's ``no_cover``: tracing every line of >= 10,000 generated cases per surface
    doubled this suite's time (67 -> 135 s) for about half a point of branch coverage: the
    lines these cases reach, the other suites nearly all reach too."""


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RotelReceiver]:
    """A real OTLP collector (rotel) on 127.0.0.1; surfaces tell their spans apart by service."""
    with RotelReceiver(tmp_path_factory.mktemp("rotel")) as started:
        yield started


@pytest.fixture
def campaign(tmp_path: Path, receiver: RotelReceiver) -> Callable[..., Campaign]:
    """``campaign(name, extra_secrets=())``: one surface's monitors and scans."""
    def make(name: str, extra_secrets: tuple[str, ...] = ()) -> Campaign:
        return Campaign(tmp_path, name, receiver, extra_secrets)

    return make
