"""Helpers for the example smoke tests: each example runs as its README says, a real server
in a subprocess on 127.0.0.1.

Each app gets a clean environment (no ``RAGTRAIL_*``/``OTEL_*``/``OLLAMA_*`` from the outer
shell), its audit store in a SQLite file under a temporary directory, and a port the server
picks itself (``--port 0``) and prints, so there is no race for a free port. What it recorded
is read back through ``AuditStore(read_only=True)``, polled with a deadline: the writer is in
another process, so it cannot be flushed from here.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ragtrail import AuditStore, SecurityEvent, SpanRecord, StoreError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START_TIMEOUT = 30.0  # interpreter start and imports on a busy CI machine, with margin
T = TypeVar("T")

def example_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The outer environment without ragtrail's, OpenTelemetry's or Ollama's variables, the
    store in ``tmp``, and quick health checks (so readiness passes within a second)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAGTRAIL_", "OTEL_", "OLLAMA_"))}
    env.update({"RAGTRAIL_STORE_URL": f"sqlite:///{tmp / 'audit.db'}",
                "RAGTRAIL_HEALTH_CHECK_INTERVAL": "0.5", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class RunningApp:
    """A server process; ``url`` is its base URL once it has printed where it listens."""

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                 listening: str) -> None:
        self._listening = re.compile(listening)
        self._lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        # A session of its own: a server's worker processes can be killed with it.
        self.process = subprocess.Popen(
            list(args), env=dict(env), cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        # Read continuously, so a chatty server never blocks on a full pipe.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or not self.url:
            self.process.kill()
            self._finish()
            raise AssertionError(f"{' '.join(args)} did not start:\n{self.output}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)
            match = self._listening.search(line)
            if match and not self.url:
                self.url = match.group(1)
                self._ready.set()
        self._ready.set()  # the process ended (before listening, if url is still "")

    def _finish(self) -> None:
        self.process.wait(5)
        # Workers that outlived their parent keep the output pipe open: the reader would wait
        # for its end forever.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit status (killing it at the deadline)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self._finish()
            raise AssertionError(
                f"no exit within {timeout} s of {sig!r}:\n{self.output}") from None
        self._finish()
        return code


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def poll(read: Callable[[], T | None], timeout: float = 15.0, what: str = "a result") -> T:
    """Call ``read`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        # Until the app's writer has created its tables, a read-only store cannot open.
        with contextlib.suppress(StoreError):
            value = read()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout} s")
        time.sleep(0.05)


def get_when(client: httpx.Client, path: str, status: int = 200, *, timeout: float = 15.0,
             **options: Any) -> httpx.Response:
    """GET ``path`` until it answers ``status``, as a probe is retried; the final response."""
    def attempt() -> httpx.Response | None:
        reply = client.get(path, **options)
        return reply if reply.status_code == status else None
    return poll(attempt, timeout, what=f"GET {path} answering {status}")


def read_spans(store_url: str, correlation_id: str) -> list[SpanRecord]:
    store = AuditStore(store_url, read_only=True)
    try:
        return store.spans(correlation_id=correlation_id, limit=None)
    finally:
        store.close()


def read_events(store_url: str, **filters: str) -> list[SecurityEvent]:
    store = AuditStore(store_url, read_only=True)
    try:
        return store.events(limit=None, **filters)  # type: ignore[arg-type]
    finally:
        store.close()


def spans_named(store_url: str, correlation_id: str, *names: str) -> list[SpanRecord] | None:
    """The request's spans once every one of ``names`` is among them, else None."""
    spans = read_spans(store_url, correlation_id)
    return spans if set(names) <= {s.name for s in spans} else None


def answered_each(url: str, ids: Sequence[str], method: str, path: str,
                  **options: Any) -> None:
    """Send one request per correlation ID, 8 at a time, each on a connection of its own so
    that the server's worker processes share them; each must answer 200 with its ID."""
    def send(cid: str) -> tuple[int, str | None]:
        with httpx.Client(base_url=url, timeout=10) as client:
            reply = client.request(method, path, headers={"X-Request-ID": cid}, **options)
            return reply.status_code, reply.headers.get("x-request-id")

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(send, ids)) == [(200, cid) for cid in ids]


def correlation_ids_of_spans(store_url: str, name: str) -> set[str | None]:
    """The correlation IDs of every stored span called ``name``."""
    store = AuditStore(store_url, read_only=True)
    try:
        return {s.correlation_id for s in store.spans(name=name, limit=None)}
    finally:
        store.close()
