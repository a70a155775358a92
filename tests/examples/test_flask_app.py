"""examples/flask_app: the RAG service under WSGI, run as its README says, over real HTTP.

One server (``waitress-serve --call app:create_app``, with a fake Ollama on 127.0.0.1) serves
the module's request tests; the shutdown test starts ``python app.py`` itself, the gunicorn
tests ``gunicorn --workers 2 'app:create_app()'``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
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
    read_spans,
    spans_named,
)

from ragtrail import Severity
from ragtrail.demo import FakeOllama

pytestmark = pytest.mark.network

APP_DIR = EXAMPLES / "flask_app"
ADMIN_TOKEN = "admin-token-for-the-flask-example"
BUSY_MASTER = Path(__file__).with_name("gunicorn_busy_master.py")
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@dataclass
class Served:
    app: RunningApp
    store_url: str
    data: Path
    ollama: FakeOllama

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.app.url, timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("flask_app")
    ollama = FakeOllama().start()
    waitress = shutil.which("waitress-serve", path=os.path.dirname(sys.executable))
    assert waitress, "waitress-serve is installed with waitress (test extra)"
    env = example_env(data, OLLAMA_URL=ollama.url, RAGTRAIL_API_TOKEN=ADMIN_TOKEN,
                      UPLOAD_DIR=str(data / "uploads"),
                      RAGTRAIL_QUARANTINE_DIR=str(data / "quarantine"))
    app = RunningApp([waitress, "--host", "127.0.0.1", "--port", "0", "--call",
                      "app:create_app"], env=env, cwd=APP_DIR,
                     listening=r"Serving on (http://127\.0\.0\.1:\d+)")
    try:
        yield Served(app, env["RAGTRAIL_STORE_URL"], data, ollama)
    finally:
        # waitress-serve stops cleanly on Ctrl-C; SIGTERM would kill it (app.py handles that).
        code = app.stop(signal.SIGINT)
        ollama.stop()
    assert code == 0, app.output


def test_ask_answers_and_echoes_the_correlation_id(served: Served) -> None:
    """POST /ask answers from the pipeline (via Ollama); the client's ID comes back and tags
    the request's span and every pipeline step's span, all in one trace."""
    with served.client() as client:
        reply = client.post("/ask", json={"question": "What does a readiness probe decide?"},
                            headers={"X-Request-ID": "flask-ask-0001"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"] == "flask-ask-0001"
    body = reply.json()
    assert body["correlation_id"] == "flask-ask-0001"
    assert "k8s-readiness" in body["sources"]
    assert body["answer"]
    spans = poll(lambda: spans_named(served.store_url, "flask-ask-0001", "POST /ask",
                                     "Pipeline.answer", "Pipeline.retrieve", "Pipeline.rerank",
                                     "Pipeline.generate"), what="the /ask spans")
    assert len({s.trace_id for s in spans}) == 1
    kinds = {s.name: s.kind for s in spans}
    assert (kinds["POST /ask"], kinds["Pipeline.retrieve"], kinds["Pipeline.generate"]) == \
        ("server", "retriever", "llm")


def test_a_question_can_come_as_a_query_parameter(served: Served) -> None:
    """GET /ask?q= answers like the JSON POST."""
    with served.client() as client:
        reply = client.get("/ask", params={"q": "How is a trace propagated across services?"})
    assert reply.status_code == 200
    assert "otel-context" in reply.json()["sources"]


def test_a_bad_question_is_refused_with_400(served: Served) -> None:
    """A question that is not a non-empty string gets 400 and a JSON reason, not a 500."""
    with served.client() as client:
        empty = client.post("/ask", json={"question": ""})
        not_json = client.post("/ask", content=b"question?")
    assert (empty.status_code, not_json.status_code) == (400, 400)
    assert "question" in empty.json()["error"]


def test_streamed_answer_arrives_and_its_span_covers_the_stream(served: Served) -> None:
    """POST /ask/stream sends the answer as a stream; the generator's span carries the
    request's correlation ID, so it ended inside the request's context."""
    with served.client() as client, client.stream(
            "POST", "/ask/stream", json={"question": "What is a trace made of?"},
            headers={"X-Request-ID": "flask-stream-0001"}) as reply:
        text = "".join(reply.iter_text())
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "flask-stream-0001"
    assert "span" in text  # the fake Ollama answers with the best passage about traces
    spans = poll(lambda: spans_named(served.store_url, "flask-stream-0001",
                                     "POST /ask/stream", "generate_stream"),
                 what="the stream's spans")
    stream = next(s for s in spans if s.name == "generate_stream")
    server = next(s for s in spans if s.name == "POST /ask/stream")
    assert stream.kind == "llm"
    assert stream.parent_span_id == server.span_id


def test_an_uploaded_document_is_kept_and_becomes_retrievable(served: Served) -> None:
    """PUT /documents/<name> validates and keeps a Markdown file, indexes it, and the next
    question about its content retrieves it."""
    document = b"# Zanzibar notes\nThe zanzibar cluster runs the quokka reranker.\n"
    with served.client() as client:
        saved = client.put("/documents/zanzibar.md", content=document,
                           headers={"X-Request-ID": "flask-upload-0001"})
        assert saved.status_code == 201, saved.text
        assert saved.json()["indexed"] is True
        reply = client.post("/ask", json={"question": "Which reranker does zanzibar run?"})
    assert (served.data / "uploads" / saved.json()["name"]).read_bytes() == document
    assert "zanzibar.md" in reply.json()["sources"]
    poll(lambda: spans_named(served.store_url, "flask-upload-0001",
                             "PUT /documents/<name>", "Pipeline.index_document"),
         what="the upload's spans")


def test_a_pdf_posted_with_a_disposition_is_kept_but_not_indexed(served: Served) -> None:
    """POST /documents takes the name from Content-Disposition; an accepted document that is
    not text is stored but not put into the text index."""
    with served.client() as client:
        saved = client.post("/documents", content=PDF, headers={
            "Content-Disposition": 'attachment; filename="Q3 report.pdf"'})
    assert saved.status_code == 201, saved.text
    assert (saved.json()["type"], saved.json()["indexed"]) == ("pdf", False)
    assert (served.data / "uploads" / saved.json()["name"]).read_bytes() == PDF


def test_an_oversized_upload_gets_413_before_it_is_stored(served: Served) -> None:
    """A body over the example's 5 MiB upload limit is refused with 413 and never kept."""
    with served.client() as client:
        reply = client.put("/documents/huge.txt", content=b"a" * (5 * 1024 * 1024 + 1))
    assert reply.status_code == 413
    assert reply.json()["accepted"] is False
    assert not list((served.data / "uploads").glob("huge*"))


def test_a_disguised_executable_is_quarantined_and_recorded(served: Served) -> None:
    """An executable named .txt gets 422, lands in the quarantine, not in the uploads, and
    a high malicious_file_upload event carries the request's correlation ID."""
    with served.client() as client:
        reply = client.put("/documents/invoice.txt", content=b"MZ\x90\x00" + b"\x00" * 200,
                           headers={"X-Request-ID": "flask-evil-0001"})
    assert reply.status_code == 422
    assert reply.json()["accepted"] is False
    assert not list((served.data / "uploads").glob("invoice*"))
    assert list((served.data / "quarantine").iterdir())
    events = poll(lambda: read_events(served.store_url, event_type="malicious_file_upload",
                                      correlation_id="flask-evil-0001"),
                  what="the malicious_file_upload event")
    assert events[0].severity == Severity.HIGH


def test_the_admin_route_needs_the_bearer_token(served: Served) -> None:
    """/admin/stats answers 401 without the token (recorded as authn_login_fail by the
    middleware) and the store's statistics with it."""
    with served.client() as client:
        denied = client.get("/admin/stats", headers={"Authorization": "Bearer wrong-token",
                                                     "X-Request-ID": "flask-admin-0001"})
        allowed = client.get("/admin/stats",
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith("Bearer")
    assert allowed.status_code == 200
    assert {"events_by_severity", "events_by_type", "spans"} <= set(allowed.json())
    poll(lambda: read_events(served.store_url, event_type="authn_login_fail",
                             correlation_id="flask-admin-0001"), what="the authn_login_fail")


def test_health_routes_answer_with_the_example_checks(served: Served) -> None:
    """/livez passes; /readyz?verbose passes once the uploads volume, the store and the
    (fake) Ollama have reported; both carry a correlation ID."""
    with served.client() as client:
        live = client.get("/livez")
        ready = get_when(client, "/readyz?verbose")
    assert live.status_code == 200
    assert live.json()["status"] == "pass"
    assert live.headers["x-request-id"]
    checks = ready.json()["checks"]
    assert {"uploads:utilization", "store:queue", "ollama:responseTime"} <= set(checks)
    assert ready.json()["serviceId"] == "flask-rag"


def test_the_api_token_guards_the_detailed_health_routes_too(served: Served) -> None:
    """RAGTRAIL_API_TOKEN, the admin route's token, also opens /api/health/detailed."""
    with served.client() as client:
        anonymous = client.get("/api/health/detailed")
        detailed = client.get("/api/health/detailed",
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert anonymous.status_code == 401
    assert detailed.status_code == 200
    assert "uploads:utilization" in detailed.json()["checks"]


def test_a_failing_ollama_fails_readiness_and_questions_get_502(served: Served) -> None:
    """The Ollama check is critical: while it answers 500, /readyz is 503 and /livez stays
    200 (a dependency outage must not restart the pod), questions get 502 with the request's
    ID and a function_error event; readiness recovers by itself."""
    with served.client() as client:
        get_when(client, "/readyz")
        served.ollama.mode = "failing"
        try:
            get_when(client, "/readyz", 503)
            assert client.get("/livez").status_code == 200
            reply = client.post("/ask", json={"question": "What is sampling?"},
                                headers={"X-Request-ID": "flask-502-0001"})
            assert reply.status_code == 502
            assert reply.json()["correlation_id"] == "flask-502-0001"
            poll(lambda: read_events(served.store_url, event_type="function_error",
                                     correlation_id="flask-502-0001"), what="function_error")
        finally:
            served.ollama.mode = "ok"
        get_when(client, "/readyz")  # recovered by itself


def test_sigterm_drains_then_stops_and_flushes(tmp_path: Path,
                                               start_app: Callable[..., RunningApp]) -> None:
    """``python app.py``: after SIGTERM readiness fails while requests are still served for
    the drain, then the process exits 0 with every span flushed to the store."""
    env = example_env(tmp_path, UPLOAD_DIR=str(tmp_path / "uploads"))
    app = start_app(python(str(APP_DIR / "app.py"), "--port", "0", "--drain-seconds", "1.5"),
                    env=env, cwd=tmp_path, listening=r"serving on (http://127\.0\.0\.1:\d+)")
    with httpx.Client(base_url=app.url, timeout=10) as client:
        get_when(client, "/readyz")
        app.process.send_signal(signal.SIGTERM)
        get_when(client, "/readyz", 503)  # draining
        assert client.get("/livez").status_code == 200
        last = client.post("/ask", json={"question": "How do I drain a pod?"},
                           headers={"X-Request-ID": "flask-last-0001"})
        assert last.status_code == 200
    assert app.stop() == 0, app.output
    assert "stopped" in app.output
    # The process is gone: whatever the store holds now was flushed at shutdown.
    names = {s.name for s in read_spans(env["RAGTRAIL_STORE_URL"], "flask-last-0001")}
    assert {"POST /ask", "Pipeline.answer"} <= names


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-configure", "preload"])
def test_gunicorn_workers_each_record_and_flush_at_sigterm(
        tmp_path: Path, start_app: Callable[..., RunningApp], preload: bool) -> None:
    """The README's ``gunicorn --workers 2 --threads ... 'app:create_app()'``: concurrent
    requests spread over both workers all reach the store by the time gunicorn has stopped.

    With ``--preload`` ragtrail is configured in gunicorn's master and its store's writer
    runs there while the workers are forked, here busy with a burst of spans: each worker
    must start its own writer and be able to write (a fork in the middle of a SQLite
    transaction once left a worker's store locked for good)."""
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    assert gunicorn, "gunicorn is installed with the test extra"
    env = example_env(tmp_path, UPLOAD_DIR=str(tmp_path / "uploads"))
    app = start_app([gunicorn, "--bind", "127.0.0.1:0", "--workers", "2", "--threads", "4",
                     "--no-control-socket", "--graceful-timeout", "10",
                     *(["--preload", "--config", str(BUSY_MASTER)] if preload else []),
                     "app:create_app()"],
                    env=env, cwd=APP_DIR, listening=r"Listening at: (http://127\.0\.0\.1:\d+)")
    ids = [f"gunicorn-{int(preload)}-{n:04d}" for n in range(24)]
    with httpx.Client(base_url=app.url, timeout=10) as client:
        get_when(client, "/readyz")
    answered_each(app.url, ids, "GET", "/ask", params={"q": "What does liveness check?"})
    assert app.stop(signal.SIGTERM) == 0, app.output
    assert "Shutting down: Master" in app.output
    # Every worker has exited: what the store holds now is all it will ever hold.
    assert set(ids) - correlation_ids_of_spans(env["RAGTRAIL_STORE_URL"], "GET /ask") == set()
