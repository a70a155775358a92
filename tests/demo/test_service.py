"""The demo service (``ragtrail.demo.create_app``) under uvicorn: real HTTP, real SQLite."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import pytest

from ragtrail import SpanRecord
from ragtrail.demo import FakeOllama
from ragtrail.demo.service import MAX_QUESTION_CHARS

from .conftest import TOKEN, Service

pytestmark = pytest.mark.network

StartService = Callable[..., Service]
T = TypeVar("T")


def _eventually(read: Callable[[], T], done: Callable[[T], bool], what: str) -> T:
    """``read()`` until ``done`` says yes: the server ends a request's span (and records its
    events) just after the client has the last byte, so a flush alone can be too early."""
    deadline = time.monotonic() + 10
    while not done(value := read()):
        assert time.monotonic() < deadline, f"{what} not stored: {value!r}"
        time.sleep(0.02)
    return value


def _spans(service: Service, correlation_id: str, *names: str) -> dict[str, SpanRecord]:
    """The request's spans by name, once every one of ``names`` is stored."""
    def read() -> dict[str, SpanRecord]:
        service.flush()
        return {s.name: s for s in service.monitor.store.spans(correlation_id=correlation_id)}
    return _eventually(read, lambda spans: set(names) <= set(spans), f"spans {names}")


def _event_types(service: Service, *expected: str) -> list[str]:
    """Every stored event's type, once each of ``expected`` is among them."""
    def read() -> list[str]:
        service.flush()
        return sorted(e.event_type for e in service.monitor.store.events(limit=None))
    return _eventually(read, lambda types: set(expected) <= set(types), f"events {expected}")


def _closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_ask_is_one_trace_of_nested_pipeline_steps(start_service: StartService) -> None:
    """/ask answers from the corpus, and its spans nest: request > answer > steps."""
    service = start_service()
    reply = service.client.post("/ask", json={"question": "What does a liveness probe do?"},
                                headers={"X-Request-ID": "svc-test-0001"})
    assert reply.status_code == 200
    assert reply.json()["correlation_id"] == "svc-test-0001"
    assert "k8s-liveness" in reply.json()["sources"]
    spans = _spans(service, "svc-test-0001", "POST /ask")
    assert {name: s.kind for name, s in spans.items()} == {
        "POST /ask": "server", "Pipeline.answer": "chain", "Pipeline.retrieve": "retriever",
        "embed": "embedding", "Pipeline.rerank": "reranker", "Pipeline.generate": "llm"}
    assert spans["Pipeline.answer"].parent_span_id == spans["POST /ask"].span_id
    for step in ("Pipeline.retrieve", "Pipeline.rerank", "Pipeline.generate"):
        assert spans[step].parent_span_id == spans["Pipeline.answer"].span_id
    assert spans["embed"].parent_span_id == spans["Pipeline.retrieve"].span_id
    assert len({s.trace_id for s in spans.values()}) == 1


def test_generate_asks_ollama_when_one_answers(start_service: StartService,
                                               fake_ollama: FakeOllama) -> None:
    """With an Ollama at ollama_url, the answer is generated there."""
    service = start_service(ollama_url=fake_ollama.url)
    reply = service.client.post("/ask", json={"question": "What is a trace?"})
    assert reply.status_code == 200
    assert fake_ollama.generated == 1


def test_generate_falls_back_to_the_template_when_no_ollama_listens(
        start_service: StartService) -> None:
    """Nothing listening at ollama_url: the template answers, and the span says so."""
    service = start_service(ollama_url=_closed_port_url())
    reply = service.client.post("/ask", json={"question": "What is a trace?"},
                                headers={"X-Request-ID": "svc-test-0002"})
    assert reply.status_code == 200
    assert reply.json()["answer"].startswith("A trace is a tree of spans")
    generate = _spans(service, "svc-test-0002", "Pipeline.generate")["Pipeline.generate"]
    assert generate.attributes["ragtrail.demo.generator"] == "template"


def test_a_failing_ollama_gives_502_and_events(start_service: StartService,
                                               fake_ollama: FakeOllama) -> None:
    """Ollama answering 500: /ask answers 502; function_error and server_error are recorded."""
    service = start_service(ollama_url=fake_ollama.url)
    fake_ollama.mode = "failing"
    reply = service.client.post("/ask", json={"question": "Anyone there?"},
                                headers={"X-Request-ID": "svc-test-0003"})
    assert reply.status_code == 502
    assert reply.json()["correlation_id"] == "svc-test-0003"
    _event_types(service, "function_error", "server_error")
    spans = _spans(service, "svc-test-0003", "Pipeline.generate", "POST /ask")
    assert spans["Pipeline.generate"].status == "error"
    assert spans["POST /ask"].attributes["http.response.status_code"] == 502


def test_readiness_follows_the_ollama_check(start_service: StartService,
                                            fake_ollama: FakeOllama) -> None:
    """The Ollama check is critical: readiness 503 while it fails, 200 once it is back."""
    service = start_service(ollama_url=fake_ollama.url)

    def wait_ready(status: int) -> httpx.Response:
        deadline = time.monotonic() + 10
        while (reply := service.client.get("/ready?verbose")).status_code != status:
            assert time.monotonic() < deadline, reply.text
            time.sleep(0.05)
        return reply

    assert set(wait_ready(200).json()["checks"]) == {
        "ollama:responseTime", "disk:utilization", "store:queue"}
    fake_ollama.mode = "failing"
    assert wait_ready(503).json()["checks"]["ollama:responseTime"][0]["status"] == "fail"
    fake_ollama.mode = "ok"
    wait_ready(200)
    assert service.client.get("/health").status_code == 200


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json", "expected a JSON body"),
    (b'{"question": ""}', "expected a non-empty question"),
    (b'["a list"]', "expected a non-empty question"),
    (b'{"question": "' + b"x" * (MAX_QUESTION_CHARS + 1) + b'"}', "limited to"),
])
def test_ask_refuses_bad_questions(start_service: StartService, body: bytes,
                                   reason: str) -> None:
    """Malformed, empty, non-string and over-long questions get 400 with the reason."""
    service = start_service()
    reply = service.client.post("/ask", content=body,
                                headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reason in reply.json()["error"]


def test_stream_sends_the_answer_in_chunks(start_service: StartService) -> None:
    """/ask/stream sends the same answer as /ask, in several chunks, traced as one request."""
    service = start_service()
    question = {"question": "Why stream the generated answer?"}
    whole = service.client.post("/ask", json=question).json()["answer"]
    chunks: list[str] = []
    with service.client.stream("POST", "/ask/stream", json=question,
                               headers={"X-Request-ID": "svc-test-0004"}) as reply:
        assert reply.status_code == 200
        chunks.extend(reply.iter_text())
    assert len(chunks) > 1
    assert "".join(chunks).strip() == whole
    spans = _spans(service, "svc-test-0004", "generate_stream", "POST /ask/stream")
    assert spans["generate_stream"].kind == "llm"
    assert spans["generate_stream"].trace_id == spans["POST /ask/stream"].trace_id


def _upload(service: Service, name: str, body: bytes) -> httpx.Response:
    return service.client.post("/documents", content=body, headers={
        "Content-Disposition": f'attachment; filename="{name}"'})


def test_an_accepted_upload_is_saved_and_answers_questions(
        start_service: StartService) -> None:
    """An accepted Markdown upload lands in uploads/ and is retrievable at once."""
    service = start_service()
    reply = _upload(service, "../zebra notes.md",
                    b"# Zebras\n\nZebra quokka facts: zebras sleep standing up.\n")
    assert reply.status_code == 201
    assert reply.json()["indexed"] is True
    assert reply.json()["name"] == "zebra notes.md"
    assert (service.data_dir / "uploads" / "zebra notes.md").is_file()
    answer = service.client.post("/ask", json={"question": "zebra quokka facts"}).json()
    assert answer["sources"][0] == f"upload-{reply.json()['sha256'][:12]}"


def test_a_disguised_executable_is_quarantined(start_service: StartService) -> None:
    """An ELF binary named invoice.pdf: 422, moved to quarantine, malicious_file_upload."""
    service = start_service()
    reply = _upload(service, "invoice.pdf", b"\x7fELF\x02\x01\x01" + bytes(200))
    assert reply.status_code == 422
    assert reply.json()["quarantined"] is True
    quarantined = [p.name for p in (service.data_dir / "quarantine").iterdir()
                   if not p.name.endswith(".json") and not p.name.startswith(".")]
    assert len(quarantined) == 1
    assert list((service.data_dir / "uploads").iterdir()) == []
    _event_types(service, "malicious_file_upload")


def test_an_oversized_upload_is_refused_unread(start_service: StartService) -> None:
    """Over max_upload_bytes: 413 before the body is read, nothing quarantined."""
    service = start_service(max_upload_bytes=1000)
    reply = _upload(service, "big.txt", b"x" * 5000)
    assert reply.status_code == 413
    assert reply.json()["quarantined"] is False
    assert list((service.data_dir / "quarantine").iterdir()) == []
    _event_types(service, "input_validation_fail")


@pytest.mark.parametrize("authorization", [None, f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_admin_refuses_without_the_token(start_service: StartService,
                                         authorization: str | None) -> None:
    """/admin/status: 401 with a Bearer challenge, recorded as authn_login_fail."""
    service = start_service()
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = service.client.get("/admin/status", headers=headers)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert _event_types(service, "authn_login_fail").count("authn_login_fail") == 1


def test_admin_answers_with_the_token(start_service: StartService) -> None:
    """The right bearer token (any case of the scheme) gets the status."""
    service = start_service()
    _upload(service, "invoice.pdf", b"MZ" + bytes(200))
    reply = service.client.get("/admin/status", headers={"Authorization": f"bearer {TOKEN}"})
    assert reply.status_code == 200
    assert len(reply.json()["quarantined"]) == 1
    assert reply.json()["monitor"]["enabled"] is True


def test_admin_is_closed_when_no_token_is_configured(start_service: StartService) -> None:
    """No api_token: /admin/status refuses every bearer token, an empty one too."""
    service = start_service(api_token=None)
    for header in ("Bearer None", "Bearer", "Bearer x"):
        assert service.client.get("/admin/status",
                                  headers={"Authorization": header}).status_code == 401
