"""Fixtures for the health tests: a real monitor on a SQLite store in tmp_path, services that
are always stopped, a fake Ollama on 127.0.0.1, and a clean ``@health_check`` registry."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ragtrail import Settings
from ragtrail.demo import FakeOllama
from ragtrail.health import HealthService, registered_checks, unregister_check
from ragtrail.instrument import Monitor

MonitorFactory = Callable[..., Monitor]
ServiceFactory = Callable[..., HealthService]


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    before = {c.name for c in registered_checks()}
    yield
    for check in registered_checks():
        if check.name not in before:
            unregister_check(check.name)


@pytest.fixture
def make_monitor(tmp_path: Path) -> Iterator[MonitorFactory]:
    """A real Monitor writing to a fresh SQLite store; fast check intervals unless overridden."""
    monitors: list[Monitor] = []

    def make(**settings: Any) -> Monitor:
        options: dict[str, Any] = {
            "store_url": f"sqlite:///{tmp_path / f'audit{len(monitors)}.db'}",
            "service_name": "rag-api", "service_version": "1.4.2",
            "health_check_interval": 0.2, "health_check_timeout": 0.5,
        }
        options.update(settings)
        monitor = Monitor(Settings(**options))
        monitors.append(monitor)
        return monitor

    yield make
    for monitor in monitors:
        monitor.shutdown()


@pytest.fixture
def monitor(make_monitor: MonitorFactory) -> Monitor:
    return make_monitor()


@pytest.fixture
def make_service(monitor: Monitor) -> Iterator[ServiceFactory]:
    """HealthService instances on ``monitor`` (unless given another), stopped at teardown."""
    services: list[HealthService] = []

    def make(*checks: Any, **options: Any) -> HealthService:
        options.setdefault("monitor", monitor)
        service = HealthService(checks=checks, **options)
        services.append(service)
        return service

    yield make
    for service in services:
        service.stop()


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    fake = FakeOllama(slow_seconds=0.5).start()
    yield fake
    fake.stop()


@pytest.fixture
def full_volume(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs filled to the last byte: a full disk. A real mount, so it needs root
    where mounts are allowed (CI's container), as ``read_only_view`` does."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"x" * 4096):
                pass
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
