"""``ragtrail demo`` end to end: a real subprocess, real uvicorn, real HTTP, real stores.

One full run costs about 5 s (most of it the scripted outage: health checks run every
second), so the scenario runs once per store backend and the Ctrl-C tests stop early.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from ragtrail import AuditStore, SecurityEvent, SpanRecord
from ragtrail.cli import main
from ragtrail.cli._demo import INSTALL_HINT
from ragtrail.demo._report import span_tree

pytestmark = pytest.mark.network

RUN_TIMEOUT = 120  # a full run is ~5 s here; CI under coverage on busy cores is slower

# What the scenario provokes, and the event type each is recorded as.
EXPECTED_EVENT_TYPES = {
    "authn_login_fail",  # the burst of wrong bearer tokens
    "malicious_path_traversal", "malicious_header_injection",  # the probes
    "malicious_file_upload", "input_validation_fail",  # disguised executable, oversized file
    "slow_call", "function_error", "server_error",  # the model server slow, then failing
    "dependency_unhealthy",  # the Ollama health check failing
}
REPORT_SECTIONS = (
    "Events by severity", "Events by type", "Latest high and critical events",
    "Slowest spans by name (ms)", "The trace of one question",
    "Health and readiness, as a probe saw them", "Explore further",
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGTRAIL_", "OTEL_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "ragtrail", "demo", *args]


def _read(url: str) -> tuple[list[SecurityEvent], list[SpanRecord]]:
    store = AuditStore(url, read_only=True)
    try:
        return store.events(limit=None), store.spans(limit=None)
    finally:
        store.close()


class _Running:
    """The demo as a child process whose output is read line by line as it comes."""

    def __init__(self, args: Sequence[str], cwd: Path) -> None:
        self.process = subprocess.Popen(args, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._stderr: list[str] = []
        self._new_line = threading.Condition()
        # Both pipes read continuously (never by communicate(), which would race the reader).
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self._stderr.extend(self.process.stderr)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._new_line:
            while True:
                for line in self.lines:
                    if match := re.search(pattern, line):
                        return match
                left = deadline - time.monotonic()
                assert left > 0, f"{pattern!r} not printed in time:\n{self.stdout}"
                assert self.process.poll() is None, f"exited before {pattern!r}:\n{self.stdout}"
                self._new_line.wait(left)

    def finish(self, timeout: float = RUN_TIMEOUT) -> tuple[int, str]:
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self.close()
        return self.process.returncode, "".join(self._stderr)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    @property
    def stdout(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def running() -> Iterator[list[_Running]]:
    started: list[_Running] = []
    yield started
    for demo in started:
        demo.close()


def test_demo_runs_the_scenario_and_reports_what_the_store_holds(tmp_path: Path) -> None:
    """No arguments: exit 0, every phase and report section printed, ./ragtrail.db holds
    the provoked event types and the traced question, the ELF upload is quarantined."""
    started = time.monotonic()
    result = subprocess.run(_demo(), cwd=tmp_path, env=_env(), capture_output=True, text=True,
                            timeout=RUN_TIMEOUT, check=False)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert re.search(r"^Starting the example RAG service on http://127\.0\.0\.1:\d+$", out, re.M)
    assert "[9/9] the model server recovers ... /ready 200 pass" in out
    for section in REPORT_SECTIONS:
        assert section in out, section
    assert "ragtrail spans --db ragtrail.db --correlation-id demo-question-0001" in out
    events, spans = _read(f"sqlite:///{tmp_path / 'ragtrail.db'}")
    assert {e.event_type for e in events} >= EXPECTED_EVENT_TYPES
    question = {s.name: s for s in spans if s.correlation_id == "demo-question-0001"}
    assert {"POST /ask", "Pipeline.answer", "Pipeline.generate"} <= set(question)
    # The personal data in the traced question is redacted in the store, as the report shows.
    stored = question["Pipeline.answer"].attributes["input.value"]["question"]
    assert stored == "I'm [REDACTED], card [REDACTED]: which secrets must never reach the logs?"
    assert f"    stored  {stored}" in out
    assert not any("4111 1111" in str(s.attributes) for s in spans)
    quarantined = [p for p in (tmp_path / "ragtrail-demo" / "quarantine").iterdir()
                   if p.suffix != ".json" and not p.name.startswith(".")]
    assert len(quarantined) == 1
    # Readiness as the probe saw it: pass, warn while slow, fail while failing, pass again.
    assert re.search(r"ollama failing\s+200\s+503\s+fail", out)
    print(f"ragtrail demo took {elapsed:.1f} s")  # shown with -s; the lead reports it


def test_ctrl_c_during_the_scenario_stops_cleanly_and_flushes(
        tmp_path: Path, running: list[_Running]) -> None:
    """SIGINT mid-scenario: exit 130, no traceback, and what happened so far is stored."""
    demo = _Running(_demo("--db", "interrupted.db"), tmp_path)
    running.append(demo)
    demo.wait_for(r"^\[4/9\] a burst of failed logins \.\.\. 12 x 401")
    demo.process.send_signal(signal.SIGINT)
    status, stderr = demo.finish()
    assert status == 130, demo.stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert "Interrupted: stopping the service and flushing the audit store." in demo.stdout
    assert re.search(r"Stopped\. \d+ records written to the audit store, 0 dropped, 0 left",
                     demo.stdout)
    events, _ = _read(f"sqlite:///{tmp_path / 'interrupted.db'}")
    logins = [e for e in events if e.event_type == "authn_login_fail"]
    assert sum(e.count for e in logins) == 12


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_ends_serve_and_flushes_requests_made_after_the_report(
        tmp_path: Path, running: list[_Running], stop: signal.Signals) -> None:
    """--serve keeps answering after the report; Ctrl-C or SIGTERM then exits 0 with the
    later request's spans in the store."""
    demo = _Running(_demo("--serve", "--db", "served.db"), tmp_path)
    running.append(demo)
    base_url = demo.wait_for(r"The service keeps running at (http://127\.0\.0\.1:\d+)")[1]
    demo.wait_for(r"^The scenario and the report took")
    reply = httpx.get(f"{base_url}/ask", params={"q": "What is a startup probe?"},
                      headers={"X-Request-ID": "after-the-report-1"}, timeout=10)
    assert reply.status_code == 200
    if shutil.which("curl") and stop == signal.SIGINT:
        # The printed upload line as a user pastes it, where the demo ran: it named a
        # README.md that is not there, so curl sent an empty file (rejected, quarantined).
        [upload] = [line for line in demo.stdout.splitlines()
                    if "curl" in line and "/documents" in line]
        pasted = subprocess.run(["sh", "-c", upload], cwd=tmp_path, capture_output=True,
                                text=True, timeout=30, check=False)
        assert '"accepted":true' in pasted.stdout.replace(" ", ""), pasted.stdout
    demo.process.send_signal(stop)
    status, stderr = demo.finish()
    assert status == 0, demo.stdout + stderr
    assert "Traceback" not in stderr, stderr
    _, spans = _read(f"sqlite:///{tmp_path / 'served.db'}")
    assert {"GET /ask", "Pipeline.answer"} <= {
        s.name for s in spans if s.correlation_id == "after-the-report-1"}


def test_demo_stores_in_postgresql(tmp_path: Path, postgres_db_url: str,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--db with a PostgreSQL URL (in-process, through ``main``): the run is stored there,
    the report reads it back, and the password is never printed."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--db", postgres_db_url]) == 0
    captured = capsys.readouterr()
    password = postgres_db_url.split(":")[2].split("@")[0]
    assert password not in captured.out + captured.err
    for section in REPORT_SECTIONS:
        assert section in captured.out, section
    assert 'ragtrail stats --db "$RAGTRAIL_STORE_URL"' in captured.out
    assert "first: export RAGTRAIL_STORE_URL=" in captured.out  # or they read ./ragtrail.db
    events, _ = _read(postgres_db_url)
    assert {e.event_type for e in events} >= EXPECTED_EVENT_TYPES
    assert not (tmp_path / "ragtrail.db").exists()


def test_missing_uvicorn_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Without uvicorn: one line naming the extra, exit 2, nothing started or created."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes ``import uvicorn`` fail
    assert main(["demo"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"ragtrail: error: {INSTALL_HINT}\n"
    assert "pip install uvicorn" in captured.err
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_a_port_in_use_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--port on a port another server listens on: exit 2 before anything is created."""
    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == 2
    assert capsys.readouterr().err == \
        f"ragtrail: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_store_ends_the_demo_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A database nobody listens on: exit 2 naming it, in seconds, not after the 10 s flush
    budget a run that wrote records gets (it took 11 s)."""
    monkeypatch.chdir(tmp_path)
    with socket.socket() as closed:  # a free loopback port, closed again: connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    assert main(["demo", "--db", f"postgresql+psycopg://u:pw-canary@127.0.0.1:{port}/x"]) == 2
    assert time.monotonic() - started < 6.0
    err = capsys.readouterr().err
    assert err.endswith("Connection refused\n")
    assert err.splitlines()[-1].startswith(f"ragtrail: error: postgresql+psycopg://u:***@127.0.0.1:{port}/x")
    assert "pw-canary" not in err


def _span(span_id: str, parent: str | None, start: int) -> SpanRecord:
    return SpanRecord(trace_id="a" * 32, span_id=span_id, name=span_id, kind="function",
                      start_us=start, duration_us=1, parent_span_id=parent)


def test_span_tree_puts_children_under_parents_in_start_order() -> None:
    """Depth-first, siblings by start time; a span whose parent is missing is a root."""
    spans = [_span("root", None, 0), _span("late", "root", 5), _span("early", "root", 1),
             _span("grandchild", "early", 2), _span("orphan", "elsewhere", 3)]
    assert [(depth, s.span_id) for depth, s in span_tree(spans)] == [
        (0, "root"), (1, "early"), (2, "grandchild"), (1, "late"), (0, "orphan")]
