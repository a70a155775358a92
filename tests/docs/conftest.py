"""Each documentation snippet runs like a newcomer's first script: in an empty working
directory, with no ``RAGTRAIL_*``/``OTEL_*`` variables, no process-wide monitor, and nothing it
registered (health checks, alert callbacks, the ``requests`` patch) left for the next one."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragtrail.health import registered_checks, unregister_check
from ragtrail.instrument import _monitor, uninstrument_requests


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith(("RAGTRAIL_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_monitor, "_active", None)
    monkeypatch.setattr(_monitor, "_enabled_from_environment", None)
    monkeypatch.setattr(_monitor, "_default_unavailable", False)
    monkeypatch.setattr(_monitor, "_alert_callbacks", [])
    checks_before = {check.name for check in registered_checks()}
    handlers_before = {name: list(logger.handlers) for name, logger in _loggers().items()}
    try:
        yield tmp_path
    finally:
        for name, logger in _loggers().items():
            logger.handlers[:] = handlers_before.get(name, [])
        if _monitor._active is not None:
            _monitor._active.shutdown(timeout=10)
        uninstrument_requests()
        for check in registered_checks():
            if check.name not in checks_before:
                unregister_check(check.name)


def _loggers() -> dict[str, logging.Logger]:
    found = {name: logger for name, logger in logging.Logger.manager.loggerDict.items()
             if isinstance(logger, logging.Logger)}
    found[""] = logging.getLogger()
    return found
