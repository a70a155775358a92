"""The scripted visit the demo pays the service: real HTTP requests, one phase at a time.

Plain ``http.client``, one connection per request: it sends paths exactly as written (no
dot-segment or percent normalisation), which the path-traversal probes need.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ragtrail.cli._views import counted
from ragtrail.demo._fake_ollama import FakeOllama

__all__ = ["QUESTION", "QUESTION_ID", "ProbeView", "Scenario", "ScenarioError"]

QUESTION_ID = "demo-question-0001"
"""The X-Request-ID of the question whose trace the report draws."""
QUESTION = ("I'm alice@example.com, card 4111 1111 1111 1111: which secrets must never reach "
            "the logs?")
"""That question: personal data in it shows what the store keeps of captured arguments."""

_QUESTIONS = (
    "What does a readiness probe decide?",
    QUESTION,  # second: the first request also pays one-off warm-ups
    "How is a trace propagated between services?",
    "Why stream the generated answer?",
    "What happens to uploaded documents that fail the checks?",
    "How does a hashing embedder work?",
)
_WAIT = 10.0  # seconds to wait for readiness to change; the demo's checks run twice a second


class ScenarioError(RuntimeError):
    """The service did not behave as the scenario needs (it is not ready, say)."""


@dataclass(frozen=True)
class ProbeView:
    """``/health`` and ``/ready`` as a probe saw them at one point of the scenario."""

    phase: str
    live_status: int
    ready_status: int
    ready: str
    checks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


class _Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> _Reply:
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return _Reply(response.status, data, time.perf_counter() - started)

    def ask(self, question: str, request_id: str | None = None) -> _Reply:
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["X-Request-ID"] = request_id
        return self.request("POST", "/ask", json.dumps({"question": question}).encode(),
                            headers)

    def stream(self, question: str) -> tuple[int, int, float, float]:
        """Status, chunks received, seconds to the first chunk, seconds in all."""
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            connection.request("POST", "/ask/stream",
                               json.dumps({"question": question}).encode(),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            chunks, first = 0, 0.0
            while response.read1(65536):
                if not chunks:
                    first = time.perf_counter() - started
                chunks += 1
        finally:
            connection.close()
        return response.status, chunks, first, time.perf_counter() - started


class Scenario:
    """Runs the phases in order; ``phases()`` yields (title, run) so the caller shows progress.

    Each ``run()`` returns a one-line summary of what the service answered.
    """

    def __init__(self, port: int, ollama: FakeOllama, api_token: str) -> None:
        self.client = _Client(port)
        self.ollama = ollama
        self.api_token = api_token
        self.probes: list[ProbeView] = []

    def phases(self) -> Iterator[tuple[str, Callable[[], str]]]:
        yield "waiting for readiness", self.wait_ready
        yield "normal questions", self.questions
        yield "a streamed answer", self.streamed_answer
        yield "a burst of failed logins", self.failed_logins
        yield "path-traversal and header-injection probes", self.probes_hostile
        yield "document uploads", self.uploads
        yield "the model server turns slow", self.dependency_slow
        yield "the model server fails", self.dependency_fails
        yield "the model server recovers", self.dependency_recovers

    # -- phases ---------------------------------------------------------------------------

    def wait_ready(self) -> str:
        view = self._wait_for("start", lambda v: v.ready_status == 200)
        return f"/ready {view.ready_status} {view.ready}"

    def questions(self) -> str:
        replies = [self.client.ask(q, QUESTION_ID if q == QUESTION else None)
                   for q in _QUESTIONS]
        ok = sum(r.status == 200 for r in replies)
        median_ms = statistics.median(r.seconds for r in replies) * 1000
        return f"{ok}/{len(replies)} answered, median {median_ms:.0f} ms"

    def streamed_answer(self) -> str:
        status, chunks, first, total = self.client.stream(
            "What is the latency users feel when streaming?")
        return (f"HTTP {status}, {counted(chunks, 'chunk')}, first after {first * 1000:.0f} ms, "
                f"all after {total * 1000:.0f} ms")

    def failed_logins(self) -> str:
        statuses = [self.client.request(
            "GET", "/admin/status", headers={"Authorization": f"Bearer wrong-{n}"}).status
            for n in range(12)]
        good = self.client.request(
            "GET", "/admin/status", headers={"Authorization": f"Bearer {self.api_token}"})
        return (f"{statuses.count(401)} x 401 with wrong tokens, then {good.status} with the "
                "right one")

    def probes_hostile(self) -> str:
        probes = {
            "../ in the path": ("/documents/..%2f..%2f..%2fetc%2fpasswd", {}),
            "double-encoded ../ in the query": (
                "/ask?q=x&file=%252e%252e%252fetc%252fshadow", {}),
            "CR LF in the path": ("/ask%0d%0aSet-Cookie:%20session=stolen", {}),
            "a malformed X-Request-ID": ("/ask?q=hello", {"X-Request-ID": "not a valid id!"}),
        }
        answers = [f"{what} {self.client.request('GET', path, headers=headers).status}"
                   for what, (path, headers) in probes.items()]
        # Recorded, not blocked: the middleware's reject_malicious setting is off by default.
        return ", ".join(answers)

    def uploads(self) -> str:
        notes = self._upload("probe-notes.md",
                             b"# Probe notes\n\nStartup probes protect slow model loads.\n")
        oversized = self._upload("scan.txt", b"x" * (1024 * 1024 + 256 * 1024))
        disguised = self._upload("invoice.pdf", b"\x7fELF\x02\x01\x01" + bytes(120))
        return (f"notes.md {notes.status}, 1.25 MiB file {oversized.status}, "
                f"ELF binary named invoice.pdf {disguised.status} "
                f"(quarantined: {disguised.json().get('quarantined')})")

    def dependency_slow(self) -> str:
        self.ollama.mode = "slow"
        reply = self.client.ask("Why do slow models hurt?")
        view = self._wait_for("ollama slow", lambda v: v.checks.get("ollama") == "warn")
        return (f"an answer took {reply.seconds * 1000:.0f} ms; "
                f"/ready {view.ready_status} {view.ready}")

    def dependency_fails(self) -> str:
        self.ollama.mode = "failing"
        statuses = [self.client.ask("Is anyone there?").status for _ in range(2)]
        view = self._wait_for("ollama failing", lambda v: v.ready_status == 503)
        return f"/ask answered {statuses}; /ready {view.ready_status} {view.ready}"

    def dependency_recovers(self) -> str:
        self.ollama.mode = "ok"
        view = self._wait_for("ollama back", lambda v: v.ready_status == 200
                              and v.checks.get("ollama") == "pass")
        status = self.client.ask("And now?").status
        return f"/ready {view.ready_status} {view.ready}; /ask {status}"

    # -- helpers --------------------------------------------------------------------------

    def probe(self, phase: str) -> ProbeView:
        live = self.client.request("GET", "/health")
        ready = self.client.request("GET", "/ready?verbose")
        document = ready.json()
        checks = {name.split(":", 1)[0]: str(entries[0].get("status"))
                  for name, entries in document.get("checks", {}).items() if entries}
        return ProbeView(phase, live.status, ready.status, str(document.get("status")), checks)

    def _wait_for(self, phase: str, done: Callable[[ProbeView], bool]) -> ProbeView:
        deadline = time.monotonic() + _WAIT
        while True:
            view = self.probe(phase)
            if done(view):
                self.probes.append(view)
                return view
            if time.monotonic() > deadline:
                self.probes.append(view)
                raise ScenarioError(f"{phase}: readiness stayed {view.ready_status} "
                                    f"{view.ready} {view.checks} for {_WAIT:g} s")
            time.sleep(0.1)

    def _upload(self, name: str, body: bytes) -> _Reply:
        return self.client.request("POST", "/documents", body, {
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Type": "application/octet-stream"})
