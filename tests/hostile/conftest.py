"""Fixtures for the hostile-input campaign: a clean process-wide monitor around each test, a
real OTLP receiver per module, and ``campaign(name)`` for a surface's phases and scans."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("hostile._campaign", "hostile._apps")

from instrument.otlp_receivers import RotelReceiver, isolated_otel_globals  # noqa: E402

from ragtrail.instrument import _monitor  # noqa: E402

from ._campaign import Campaign  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RAGTRAIL_STORE_URL", f"sqlite:///{tmp_path / 'default.db'}")
    for variable in ("RAGTRAIL_ENABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "RAGTRAIL_OTLP_ENDPOINT",
                     "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "RAGTRAIL_SLOW_MS",
                     "RAGTRAIL_API_TOKEN", "RAGTRAIL_ENVIRONMENT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(_monitor, "_active", None)
    monkeypatch.setattr(_monitor, "_enabled_from_environment", None)
    monkeypatch.setattr(_monitor, "_default_unavailable", False)
    monkeypatch.setattr(_monitor, "_alert_callbacks", [])
    # ragtrail exports on its own only when the app set no SDK TracerProvider: start clean.
    with isolated_otel_globals():
        yield
        if _monitor._active is not None:
            _monitor._active.shutdown(timeout=10)


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
