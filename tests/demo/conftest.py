"""Fixtures for the demo tests: an isolated process-wide monitor, the fake Ollama, and the
demo service under a real uvicorn on 127.0.0.1 with its store in ``tmp_path``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragtrail import Monitor
from ragtrail.demo import FakeOllama, create_app
from ragtrail.demo._run import _Server

TOKEN = "demo-test-token-0123456789"


@pytest.fixture(autouse=True)
def _isolated_monitor(isolated_monitor: None) -> None:
    """Every test here runs with the shared ``isolated_monitor`` (tests/conftest.py)."""


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    fake = FakeOllama(slow_seconds=0.3).start()
    yield fake
    fake.stop()


@dataclass
class Service:
    client: httpx.Client
    monitor: Monitor
    data_dir: Path

    def flush(self) -> None:
        assert self.monitor.store.flush(timeout=10)


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """``start_service(**create_app_kwargs)``: the demo app under uvicorn, stopped afterwards."""
    servers: list[_Server] = []
    clients: list[httpx.Client] = []

    def start(**options: Any) -> Service:
        options.setdefault("store_url", f"sqlite:///{tmp_path / 'audit.db'}")
        options.setdefault("data_dir", tmp_path / "data")
        options.setdefault("api_token", TOKEN)
        options.setdefault("health_check_interval", 0.2)
        options.setdefault("health_check_timeout", 1.0)
        app = create_app(**options)
        server = _Server(0)
        servers.append(server)
        server.start(app)
        client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10)
        clients.append(client)
        return Service(client, app.state.monitor, Path(options["data_dir"]))

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()
