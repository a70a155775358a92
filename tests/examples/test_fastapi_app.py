"""examples/fastapi_app.py: the three-line integration, under uvicorn as its docstring says."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from examples_support import EXAMPLES, RunningApp, example_env, get_when, poll, python, spans_named

pytest.importorskip("fastapi")  # in the test extra; only a bare checkout lacks it

pytestmark = pytest.mark.network


def test_fastapi_example_records_ids_spans_and_serves_probes(tmp_path: Path,
                                                             start_app: Callable[..., RunningApp]
                                                             ) -> None:
    """Under ``uvicorn fastapi_app:app --app-dir examples``: the client's ID is echoed and in
    the JSON, the request span and the ``@monitored`` retriever share one trace, the probes
    answer, and SIGTERM stops the server cleanly."""
    env = example_env(tmp_path)
    app = start_app(
        python("-m", "uvicorn", "fastapi_app:app", "--app-dir", str(EXAMPLES),
               "--host", "127.0.0.1", "--port", "0"),
        env=env, cwd=tmp_path, listening=r"Uvicorn running on (http://127\.0\.0\.1:\d+)")
    with httpx.Client(base_url=app.url, timeout=10) as client:
        reply = client.get("/search", params={"q": "readiness probe"},
                           headers={"X-Request-ID": "fastapi-0001"})
        live = client.get("/livez")
        ready = get_when(client, "/readyz")
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "fastapi-0001"
    assert reply.json()["correlation_id"] == "fastapi-0001"
    assert reply.json()["documents"][0]["id"] == "k8s-readiness"
    assert live.status_code == 200
    assert ready.json()["serviceId"] == "fastapi-rag"
    spans = poll(lambda: spans_named(env["RAGTRAIL_STORE_URL"], "fastapi-0001",
                                     "GET /search", "retrieve"), what="the request's spans")
    by_name = {s.name: s for s in spans}
    assert by_name["retrieve"].kind == "retriever"
    assert by_name["retrieve"].parent_span_id == by_name["GET /search"].span_id
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why.
    assert app.stop(signal.SIGTERM) in (0, -signal.SIGTERM), app.output
    assert "Application shutdown complete" in app.output
