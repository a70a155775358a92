"""ragtrail under gevent's monkey-patching (gunicorn ``-k gevent``), each test in a fresh process.

``patch_all()`` cannot be undone, so every scenario runs in a child interpreter that patches
first, as gunicorn's gevent worker does, and prints what it saw as JSON. Skipped when gevent is
not installed (it is no dependency of ragtrail's).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gevent") is None,
                                reason="gevent is not installed")

ROOT = Path(__file__).resolve().parent.parent

PATCH = """
from gevent import monkey
monkey.patch_all()
import asyncio, json, os, signal, sys, time
import gevent
"""


def run_patched(script: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run ``script`` after ``patch_all()`` in a new interpreter; its last stdout line as JSON."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAGTRAIL_STORE_URL": "",
           "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    done = subprocess.run([sys.executable, "-c", PATCH + textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_worker_keeps_taking_sigterm_once_ragtrail_runs(tmp_path: Path) -> None:
    """A monitor, a health service and its checks leave the worker's one OS thread with
    SIGTERM and the other control signals unblocked (greenlet starts had left them blocked, so
    gunicorn had to SIGKILL its workers)."""
    result = run_patched("""
        import ragtrail
        from ragtrail.health import FunctionCheck, HealthService
        monitor = ragtrail.configure(service_name="green", store_url=sys.argv[1])
        service = HealthService(monitor, checks=[FunctionCheck(lambda: True, "a"),
                                                 FunctionCheck(lambda: True, "b")])
        service.start()
        deadline = time.monotonic() + 10
        while len(service.results) < len(service.checks) and time.monotonic() < deadline:
            gevent.sleep(0.01)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
        print(json.dumps({"reported": len(service.results) == len(service.checks),
                          "blocked": sorted(int(s) for s in blocked)}))
    """, f"sqlite:///{tmp_path / 'audit.db'}")
    assert result == {"reported": True, "blocked": []}


def test_health_checks_leave_asyncio_to_the_app(tmp_path: Path) -> None:
    """The health checks' asyncio loop runs on an OS thread of its own: a request greenlet's
    ``asyncio.run()`` works, and sync and async checks still report."""
    result = run_patched("""
        import ragtrail
        from ragtrail.health import FunctionCheck, HealthService
        async def remote() -> bool:
            await asyncio.sleep(0.01)
            return True
        monitor = ragtrail.configure(service_name="green", store_url=sys.argv[1])
        service = HealthService(monitor, checks=[FunctionCheck(lambda: True, "sync"),
                                                 FunctionCheck(remote, "async")])
        service.start()
        async def view() -> str:
            await asyncio.sleep(0.01)
            return "answered"
        def request() -> str:
            try:
                return asyncio.run(view())
            except RuntimeError as exc:
                return str(exc)
        answers = [gevent.spawn(request).get() for _ in range(3)]
        deadline = time.monotonic() + 10
        while len(service.results) < len(service.checks) and time.monotonic() < deadline:
            gevent.sleep(0.01)
        ready = service.respond("GET", "/ready")
        print(json.dumps({"answers": answers, "ready": ready.status if ready else None,
                          "statuses": sorted(r.status for r in service.results.values())}))
    """, f"sqlite:///{tmp_path / 'audit.db'}")
    assert result == {"answers": ["answered"] * 3, "ready": 200, "statuses": ["pass"] * 3}


def test_the_drain_hands_sigterm_on_under_gevent() -> None:
    """``install_sigterm_handler(drain_seconds=...)``: draining starts at once and the earlier
    handler runs after the drain (starting a greenlet from the handler hung the process)."""
    result = run_patched("""
        from ragtrail.health import install_sigterm_handler
        class Service:
            draining_at = None
            def begin_draining(self) -> None:
                self.draining_at = time.monotonic()
        service = Service()
        chained = []
        signal.signal(signal.SIGTERM, lambda sig, frame: chained.append(time.monotonic()))
        install_sigterm_handler(service, drain_seconds=0.2)
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = sent + 10
        while not chained and time.monotonic() < deadline:
            gevent.sleep(0.01)
        print(json.dumps({"draining": service.draining_at is not None,
                          "chained_after_drain": bool(chained) and chained[0] - sent >= 0.2}))
    """, timeout=30)
    assert result == {"draining": True, "chained_after_drain": True}


def test_a_locked_sqlite_file_does_not_stall_the_requests(tmp_path: Path) -> None:
    """While another connection holds the SQLite file's write lock, the writer waits on its own
    OS thread: greenlets keep running (a greenlet writer stopped them for the busy timeout),
    and the records are written once the lock is released."""
    result = run_patched("""
        import sqlite3
        import ragtrail
        path = sys.argv[1]
        monitor = ragtrail.configure(service_name="green", store_url=f"sqlite:///{path}")
        store = monitor.store
        store.flush(5)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        monitor.security_event("probe", "low", "test", "written once the lock is released")
        store.flush(0)  # hurry the writer into its busy wait
        late = 0.0
        deadline = time.monotonic() + 3
        while store._writer.committer.call_started is None and time.monotonic() < deadline:
            started = time.monotonic()
            gevent.sleep(0.01)
            late = max(late, time.monotonic() - started - 0.01)
        waiting = store._writer.committer.call_started is not None
        for _ in range(20):  # greenlets keep running during the wait
            started = time.monotonic()
            gevent.sleep(0.01)
            late = max(late, time.monotonic() - started - 0.01)
        holder.execute("COMMIT")
        flushed = store.flush(10)
        rows = holder.execute("select count(*) from ragtrail_events where event_type='probe'")
        print(json.dumps({"waiting": waiting, "stalled": late > 0.5, "flushed": flushed,
                          "rows": rows.fetchone()[0]}))
    """, str(tmp_path / "audit.db"))
    assert result == {"waiting": True, "stalled": False, "flushed": True, "rows": 1}


@pytest.mark.parametrize("init_gevent", [False, True])
def test_otlp_grpc_under_gevent_warns_unless_grpc_knows(init_gevent: bool,
                                                        tmp_path: Path) -> None:
    """OTLP over gRPC under gevent: a warning says how to stop grpc blocking every greenlet,
    unless ``grpc.experimental.gevent.init_gevent()`` ran."""
    pytest.importorskip("grpc")
    result = run_patched("""
        import logging
        if sys.argv[2] == "True":
            import grpc.experimental.gevent
            grpc.experimental.gevent.init_gevent()
        import ragtrail
        messages = []
        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                messages.append(record.getMessage())
        logging.getLogger("ragtrail").addHandler(Keep())
        ragtrail.configure(service_name="green", store_url=sys.argv[1],
                           otlp_endpoint="http://127.0.0.1:9", otlp_protocol="grpc")
        print(json.dumps({"warned": any("init_gevent()" in m for m in messages)}))
    """, f"sqlite:///{tmp_path / 'audit.db'}", str(init_gevent))
    assert result == {"warned": not init_gevent}
