"""Durability: exit flushes, SIGKILL keeps what was flushed, fork restarts the writer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from forking import output_of_forked_child
from store_helpers import make_event, make_span

from ragtrail.store import AuditStore

CHILD = Path(__file__).with_name("store_child.py")


def test_interpreter_exit_flushes_what_was_recorded(backend_url: str,
                                                    store_factory: Callable[..., AuditStore]
                                                    ) -> None:
    """A child that records and exits without close() or flush(): the parent reads it all."""
    result = subprocess.run([sys.executable, str(CHILD), backend_url, "7", "2000", "exit"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    reader = store_factory(backend_url, read_only=True)
    assert sorted(int(e.description) for e in reader.events(limit=None)) == list(range(2000))
    assert len(reader.spans(limit=None)) == 2000


def test_interpreter_exit_is_bounded_when_the_database_stays_locked(tmp_path: Path) -> None:
    """A child whose store cannot be written exits anyway: at exit a store waits at most its
    close_timeout (here 0.2 s, +1 s for a writer inside SQLite's 60 s busy wait)."""
    path = tmp_path / "locked.db"
    AuditStore(f"sqlite:///{path}").close()
    options = {"close_timeout": 0.2, "engine_options": {"connect_args": {"timeout": 60}}}
    env = {**os.environ, "STORE_CHILD_OPTIONS": json.dumps(options)}
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with subprocess.Popen([sys.executable, str(CHILD), f"sqlite:///{path}", "1", "100",
                               "ready-then-exit"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env) as child:
            assert child.stdout is not None
            assert child.stdin is not None
            assert child.stdout.readline().strip() == "ready"
            holder.execute("BEGIN EXCLUSIVE")
            child.stdin.write("go\n")
            child.stdin.close()
            assert child.wait(timeout=30) == 0  # 1.2 s expected; the busy wait alone is 60 s
    finally:
        holder.close()
    reader = AuditStore(f"sqlite:///{path}", read_only=True)
    try:
        assert reader.events(event_type="w1") == []  # nothing got through the lock
    finally:
        reader.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_keeps_everything_flushed_before_it(
        backend_url: str, store_factory: Callable[..., AuditStore]) -> None:
    """Records flushed before a SIGKILL are all there afterwards (WAL + synchronous=NORMAL)."""
    with subprocess.Popen([sys.executable, str(CHILD), backend_url, "3", "1500",
                           "flush-then-hang"], stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "flushed"
        finally:
            child.kill()
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    reader = store_factory(backend_url, read_only=True)
    flushed = [e for e in reader.events(limit=None) if e.event_type == "w3"]
    assert sorted(int(e.description) for e in flushed) == list(range(1500))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_forked_child_gets_its_own_writer(backend_url: str,
                                          store_factory: Callable[..., AuditStore]) -> None:
    """After os.fork() the child records and flushes through a new writer and connections;
    the parent keeps working and reads the child's rows."""
    store = store_factory(backend_url)
    store.record(make_event("before-fork"))
    assert store.flush(10)
    store.record(make_event("queued-in-parent"))  # the parent's to write, not the child's

    def child() -> str:
        for i in range(50):
            store.record(make_event("child", source=f"s{i}"))
            store.record(make_span("child"))
        return f"flushed={store.flush(30)} written={store.health().written}"

    assert output_of_forked_child(child) == "flushed=True written=100"
    store.record(make_event("parent-after-fork"))
    assert store.flush(10)
    types = [e.event_type for e in store.events(limit=None)]
    assert types.count("child") == 50
    assert types.count("queued-in-parent") == 1
    assert {"before-fork", "parent-after-fork"} <= set(types)
    assert len(store.spans(name="child", limit=None)) == 50


def test_reading_while_another_process_writes(backend_url: str,
                                              store_factory: Callable[..., AuditStore]) -> None:
    """A read-only store keeps answering while another process writes: counts only grow."""
    AuditStore(backend_url).close()
    reader = store_factory(backend_url, read_only=True)
    env = {**os.environ, "STORE_CHILD_OPTIONS": json.dumps({"batch_size": 20})}
    seen = [0]
    with subprocess.Popen([sys.executable, str(CHILD), backend_url, "5", "3000", "close"],
                          env=env) as child:
        while child.poll() is None:
            latest = reader.events(limit=5)
            seen.append(reader.stats().events)
            assert [e.id for e in latest] == sorted((e.id for e in latest), reverse=True)
    assert child.returncode == 0
    assert seen == sorted(seen)
    assert reader.stats().events == 3000
    assert len(set(seen)) > 2  # it did read between the writer's commits
