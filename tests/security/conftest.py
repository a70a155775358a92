"""Fixtures for the security tests: the corpus (``security_corpus``) in ``tmp_path``, a real
monitor writing to a SQLite store in ``tmp_path``, and a directory on another filesystem.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from security_corpus import Corpus

import ragtrail.instrument
from ragtrail._records import SecurityEvent
from ragtrail.instrument import Monitor


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    return Corpus(tmp_path / "incoming")


@pytest.fixture
def quarantine_dir(tmp_path: Path) -> Path:
    return tmp_path / "quarantine"


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem than ``tmp_path`` (tmpfs at /dev/shm), where a move
    is a copy: the layout of the Kubernetes example (uploads and quarantine on two volumes)."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    directory = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        if directory.stat().st_dev == tmp_path.stat().st_dev:
            pytest.skip("/dev/shm is on the same filesystem as the test's directory here")
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.fixture
def monitor(tmp_path: Path, quarantine_dir: Path) -> Iterator[Monitor]:
    """A real monitor writing to a fresh SQLite store; shut down after the test."""
    configured = ragtrail.instrument.configure(
        store_url=f"sqlite:///{tmp_path / 'audit.db'}", quarantine_dir=str(quarantine_dir),
        event_coalesce_seconds=0.001)
    yield configured
    ragtrail.instrument.shutdown()


@pytest.fixture
def stored_events(monitor: Monitor) -> Callable[..., list[SecurityEvent]]:
    """``stored_events(event_type=None)``: events read back from the store after a flush."""

    def read(event_type: str | None = None) -> list[SecurityEvent]:
        monitor.store.flush(timeout=10)
        return list(monitor.store.events(event_type=event_type, limit=1000))

    return read
