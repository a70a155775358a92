"""Fixtures for the tests of ``ragtrail.testing``: no process-wide monitor before each test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_monitor(isolated_monitor: None) -> None:
    """Every test here runs with the shared ``isolated_monitor`` (tests/conftest.py)."""
