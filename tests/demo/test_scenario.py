"""The scenario driver gives up with a reason instead of hanging when the service misbehaves."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from ragtrail.demo import FakeOllama, _scenario
from ragtrail.demo._scenario import Scenario, ScenarioError

from .conftest import TOKEN, Service

pytestmark = pytest.mark.network


def test_waiting_for_readiness_gives_up_with_what_the_probe_saw(
        start_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch) -> None:
    """A critical dependency that never answers: ScenarioError naming the failing check, and
    the probe's last view kept for the report."""
    monkeypatch.setattr(_scenario, "_WAIT", 0.5)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nothing_there = f"http://127.0.0.1:{closed.getsockname()[1]}"
    service = start_service(ollama_url=nothing_there)
    port = int(str(service.client.base_url).rsplit(":", 1)[1].rstrip("/"))
    unused = FakeOllama()  # the scenario's switch; never started, never asked
    scenario = Scenario(port, unused, TOKEN)
    with pytest.raises(ScenarioError, match=r"start: readiness stayed 503 fail .*'ollama': 'fail'"):
        scenario.wait_ready()
    assert [(p.phase, p.ready_status, p.checks["ollama"]) for p in scenario.probes] == [
        ("start", 503, "fail")]
    unused.stop()
