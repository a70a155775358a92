"""examples/rag_service: both ways its README starts it, configured only from the environment,
and under two multi-worker servers."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from examples_support import (
    EXAMPLES,
    RunningApp,
    answered_each,
    correlation_ids_of_spans,
    example_env,
    get_when,
    poll,
    python,
    read_events,
    spans_named,
)

from ragtrail.demo import FakeOllama

pytestmark = pytest.mark.network

LISTENING = r"Uvicorn running on (http://127\.0\.0\.1:\d+)"
TOKEN = "rag-service-test-token"


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    fake = FakeOllama().start()
    yield fake
    fake.stop()


def test_python_app_py_serves_the_pipeline_uploads_and_admin(
        tmp_path: Path, start_app: Callable[..., RunningApp]) -> None:
    """``python examples/rag_service/app.py`` without OLLAMA_URL: template answers traced
    step by step, a disguised executable quarantined under RAG_DATA_DIR, the admin route
    behind RAGTRAIL_API_TOKEN, readiness without an Ollama check, a clean SIGTERM."""
    env = example_env(tmp_path, HOST="127.0.0.1", PORT="0", RAG_DATA_DIR=str(tmp_path / "data"),
                      RAGTRAIL_API_TOKEN=TOKEN)
    app = start_app(python(str(EXAMPLES / "rag_service" / "app.py")), env=env, cwd=tmp_path,
                    listening=LISTENING)
    with httpx.Client(base_url=app.url, timeout=10) as client:
        ready = get_when(client, "/ready?verbose")
        answer = client.post("/ask", json={"question": "What does a startup probe do?"},
                             headers={"X-Request-ID": "rag-example-0001"})
        upload = client.post("/documents", content=b"MZ" + bytes(100), headers={
            "Content-Disposition": 'attachment; filename="report.pdf"'})
        refused = client.get("/admin/status")
        admin = client.get("/admin/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert set(ready.json()["checks"]) == {"disk:utilization", "store:queue"}
    assert ready.json()["serviceId"] == "rag-service"
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "rag-example-0001"
    assert answer.json()["sources"][0] == "k8s-startup"
    assert upload.status_code == 422
    assert len(list((tmp_path / "data" / "quarantine").glob("*.json"))) == 1
    assert refused.status_code == 401
    assert admin.status_code == 200
    assert len(admin.json()["quarantined"]) == 1
    spans = poll(lambda: spans_named(env["RAGTRAIL_STORE_URL"], "rag-example-0001",
                                     "POST /ask", "Pipeline.answer", "Pipeline.generate"),
                 what="the question's spans")
    by_name = {s.name: s for s in spans}
    assert by_name["Pipeline.answer"].parent_span_id == by_name["POST /ask"].span_id
    poll(lambda: read_events(env["RAGTRAIL_STORE_URL"], event_type="malicious_file_upload"),
         what="the malicious_file_upload event")
    assert app.stop(signal.SIGTERM) in (0, -signal.SIGTERM), app.output
    assert "Application shutdown complete" in app.output


def test_uvicorn_module_path_with_ollama_url(tmp_path: Path, fake_ollama: FakeOllama,
                                             start_app: Callable[..., RunningApp]) -> None:
    """``uvicorn examples.rag_service.app:app`` from the repository root with OLLAMA_URL:
    answers come from that Ollama, and its check is part of readiness."""
    env = example_env(tmp_path, OLLAMA_URL=fake_ollama.url, RAG_DATA_DIR=str(tmp_path / "data"))
    app = start_app(python("-m", "uvicorn", "examples.rag_service.app:app",
                           "--host", "127.0.0.1", "--port", "0"),
                    env=env, cwd=EXAMPLES.parent, listening=LISTENING)
    with httpx.Client(base_url=app.url, timeout=10) as client:
        ready = get_when(client, "/ready?verbose")
        answer = client.post("/ask", json={"question": "What is a trace?"})
    assert ready.json()["checks"]["ollama:responseTime"][0]["critical"] is True
    assert answer.status_code == 200
    assert fake_ollama.generated == 1
    assert app.stop(signal.SIGTERM) in (0, -signal.SIGTERM), app.output


def test_sigterm_to_uvicorn_keeps_every_queued_record(
        tmp_path: Path, start_app: Callable[..., RunningApp]) -> None:
    """uvicorn re-raises SIGTERM after its lifespan shutdown, so the process dies by the
    signal and exit handlers never run: the middleware writes ragtrail's queues out during
    the lifespan shutdown instead. The writer lingers 5 s for a batch here, so every span of
    these requests is still queued when Kubernetes' SIGTERM arrives (without the flush the
    store held none of them)."""
    env = example_env(tmp_path, RAG_DATA_DIR=str(tmp_path / "data"),
                      RAGTRAIL_BATCH_LINGER_SECONDS="5")
    app = start_app(python("-m", "uvicorn", "examples.rag_service.app:app",
                           "--host", "127.0.0.1", "--port", "0"),
                    env=env, cwd=EXAMPLES.parent, listening=LISTENING)
    ids = [f"sigterm-flush-{n:04d}" for n in range(12)]
    with httpx.Client(base_url=app.url, timeout=10) as client:
        get_when(client, "/ready")
    answered_each(app.url, ids, "POST", "/ask", json={"question": "What is a span?"})
    assert app.stop(signal.SIGTERM) in (0, -signal.SIGTERM), app.output
    assert set(ids) - correlation_ids_of_spans(env["RAGTRAIL_STORE_URL"], "POST /ask") == set()


@dataclass(frozen=True)
class _Server:
    """A multi-process server command and the lines it prints: where it listens, each
    worker started, each worker stopped."""

    args: tuple[str, ...]
    listening: str
    started: str
    stopped: str


_MULTI_WORKER = {
    "uvicorn": _Server(
        ("-m", "uvicorn", "examples.rag_service.app:app", "--workers", "2",
         "--host", "127.0.0.1", "--port", "0"),
        LISTENING, "Application startup complete", "Application shutdown complete"),
    # gunicorn 27's own ASGI worker class.
    "gunicorn-asgi": _Server(
        ("-m", "gunicorn", "-k", "asgi", "--workers", "2", "--bind", "127.0.0.1:0",
         "--no-control-socket", "examples.rag_service.app:app"),
        r"Listening at: (http://127\.0\.0\.1:\d+)", "ASGI server listening", "Worker exiting"),
}


@pytest.mark.parametrize("server", _MULTI_WORKER)
def test_two_workers_share_one_sqlite_store(tmp_path: Path, server: str,
                                            start_app: Callable[..., RunningApp]) -> None:
    """``uvicorn ... --workers 2`` and ``gunicorn -k asgi --workers 2`` (docs/scaling.md:
    processes on one host can share the SQLite file): concurrent requests over both workers
    all reach the one store by the time the parent, sent SIGTERM, has stopped its workers."""
    command = _MULTI_WORKER[server]
    env = example_env(tmp_path, RAG_DATA_DIR=str(tmp_path / "data"))
    app = start_app(python(*command.args), env=env, cwd=EXAMPLES.parent,
                    listening=command.listening)
    ids = [f"{server}-workers-{n:04d}" for n in range(24)]
    # The parent prints its address first; the socket listens once a worker has started.
    poll(lambda: app.output.count(command.started) == 2, what="both workers")
    with httpx.Client(base_url=app.url, timeout=10) as client:
        get_when(client, "/ready")
    answered_each(app.url, ids, "POST", "/ask", json={"question": "What is a span?"})
    assert app.stop(signal.SIGTERM) == 0, app.output
    assert app.output.count(command.stopped) == 2
    assert set(ids) - correlation_ids_of_spans(env["RAGTRAIL_STORE_URL"], "POST /ask") == set()
