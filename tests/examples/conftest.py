"""Fixtures for the example smoke tests; the helpers they use are in ``examples_support``."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from examples_support import RunningApp


@pytest.fixture
def start_app() -> Iterator[Callable[..., RunningApp]]:
    """``start_app(args, env=, cwd=, listening=)``; every app is stopped at teardown."""
    apps: list[RunningApp] = []

    def start(args: Sequence[str], **options: Any) -> RunningApp:
        app = RunningApp(args, **options)
        apps.append(app)
        return app

    yield start
    for app in apps:
        if app.process.poll() is None:
            app.stop(signal.SIGKILL)


