"""Faults: the database cannot be written (read-only, full, locked, server down, disk full).

Every case checks the same promises: ``record()`` stays fast and silent, records beyond the
queue bound are dropped and counted (kept + dropped = recorded), ``health()`` says failing,
and writing resumes by itself once the fault clears.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from store_helpers import make_event, make_span, wait_for

from ragtrail.store import AuditStore, _engine

QUEUE = 200
MAX_RECORD_SECONDS = 0.05  # far below any busy timeout or connect timeout: never waits on I/O



def ride_out_fault(store: AuditStore, start: Callable[[], None], stop: Callable[[], None],
                   error_text: str) -> None:
    """Record through a fault and its recovery; check every promise on the way."""
    store.record(make_event("before"))
    assert store.flush(10)
    start()
    slowest = 0.0
    recorded = 3 * QUEUE
    for i in range(recorded):
        began = time.perf_counter()
        store.record(make_event("during", source=f"s{i}", description="x" * 500))
        slowest = max(slowest, time.perf_counter() - began)
    assert slowest < MAX_RECORD_SECONDS
    wait_for(lambda: store.health().status == "failing")
    health = store.health()
    # The writer holds one failed batch besides the queue: batch_size records, or from a
    # backlog up to 20 batches, never more than the queue held.
    held = min(QUEUE, 20 * store._batch_size)
    assert health.dropped >= recorded - QUEUE - held
    assert error_text in (health.last_error or "")
    assert health.last_error_time_us is not None
    assert store.flush(timeout=0.2) is False
    stop()
    assert store.flush(timeout=30)
    after = store.health()
    assert after.status == "degraded"  # recovered, but it lost records a moment ago
    kept = len(store.events(event_type="during", limit=None))
    assert kept + after.dropped == recorded
    assert kept >= QUEUE
    store.record(make_event("after"))
    assert store.flush(10)
    assert [e.event_type for e in store.events(limit=1)] == ["after"]
    assert store.stats().dropped == after.dropped  # the loss is in the store's totals too


def sqlite_fault_store(store_factory: Callable[..., AuditStore], tmp_path: Path,
                       pragma: Callable[[Any, bool], None], **options: Any
                       ) -> tuple[AuditStore, Callable[[bool], None]]:
    """A SQLite store whose writer runs ``pragma(connection, faulty)`` at each transaction."""
    store = store_factory(f"sqlite:///{tmp_path / 'faulty.db'}", queue_size=QUEUE,
                          batch_size=50, **options)
    state = {"faulty": False}

    @event.listens_for(store.engine, "begin")
    def _inject(conn: Any) -> None:
        pragma(conn, state["faulty"])

    return store, lambda on: state.update(faulty=on)


def test_read_only_database(store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """A database that refuses writes (PRAGMA query_only: root ignores chmod 0444)."""
    store, fault = sqlite_fault_store(
        store_factory, tmp_path,
        lambda conn, on: conn.exec_driver_sql(f"PRAGMA query_only = {int(on)}"))
    ride_out_fault(store, lambda: fault(True), lambda: fault(False), "readonly")


@contextlib.contextmanager
def bind_mount(source: Path, target: Path) -> Iterator[Callable[[str], None]]:
    """``target`` shows ``source``; yields ``remount("ro" | "rw")``."""
    source.mkdir()
    target.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(source), str(target)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount here (needs root with CAP_SYS_ADMIN)")

    def remount(mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,bind,{mode}", str(target)], check=True)

    try:
        yield remount
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
def test_a_volume_that_comes_up_read_only(store_factory: Callable[..., AuditStore],
                                          tmp_path: Path) -> None:
    """A real read-only bind mount: a pod restarts onto its volume while it is read-only,
    with the WAL a killed process left behind, and readers poll the store meanwhile (as
    ``/api/monitoring`` does). Every connection of the process then shares SQLite's
    read-only view of the WAL index; once the volume is writable again, writing resumes."""
    with bind_mount(tmp_path / "volume", tmp_path / "mnt") as remount:
        path = tmp_path / "mnt" / "audit.db"
        subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import os
            from ragtrail.store import AuditStore
            from ragtrail._records import SecurityEvent, Severity
            store = AuditStore({f"sqlite:///{path}"!r})
            store.record(SecurityEvent(event_type="earlier", severity=Severity.LOW,
                                       source="s", description="d", time_us=1))
            assert store.flush(10)
            os._exit(0)  # killed: the -wal and -shm files stay
            """)], check=True, timeout=60)
        assert Path(f"{path}-shm").exists()
        remount("ro")
        store = store_factory(f"sqlite:///{path}", queue_size=QUEUE, batch_size=50)
        polling = threading.Event()
        polls = []

        def poll() -> None:
            while not polling.is_set():
                polls.append([e.event_type for e in store.events(limit=5)])
                polling.wait(0.02)

        reader = threading.Thread(target=poll)
        reader.start()
        try:
            store.record(make_event("during"))
            wait_for(lambda: store.health().status == "failing")
            assert "readonly" in (store.health().last_error or "")
            remount("rw")
            assert store.flush(30)
            assert store.health().status == "degraded"
        finally:
            polling.set()
            reader.join(10)
            store.close(timeout=5)
        assert ["earlier"] in polls  # the readers read on through the fault
        with contextlib.closing(sqlite3.connect(path)) as check:
            assert check.execute("SELECT event_type FROM ragtrail_events ORDER BY id"
                                 ).fetchall() == [("earlier",), ("during",)]


def test_full_database(store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """A database that cannot grow (PRAGMA max_page_count: SQLITE_FULL)."""
    def limit(conn: Any, on: bool) -> None:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar() if on else 1_073_741_823
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")

    store, fault = sqlite_fault_store(store_factory, tmp_path, limit)
    ride_out_fault(store, lambda: fault(True), lambda: fault(False), "full")


def test_locked_database(store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """Another connection holds BEGIN EXCLUSIVE past the busy timeout; readers still read."""
    store = store_factory(f"sqlite:///{tmp_path / 'locked.db'}", queue_size=QUEUE,
                          batch_size=50, engine_options={"connect_args": {"timeout": 0.05}})
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)

    def lock() -> None:
        holder.execute("BEGIN EXCLUSIVE")

    def unlock() -> None:
        assert store.events(event_type="before") != []  # WAL: reading works meanwhile
        holder.execute("ROLLBACK")

    try:
        ride_out_fault(store, lock, unlock, "locked")
    finally:
        holder.close()


def test_postgresql_stopped_and_restarted(postgres_db_url: str, postgres_server: Any,
                                          store_factory: Callable[..., AuditStore]) -> None:
    """The server goes down and comes back: the writer reconnects by itself."""
    store = store_factory(postgres_db_url, queue_size=QUEUE, batch_size=50)
    ride_out_fault(store, postgres_server.stop, postgres_server.start, "Operational")
    assert postgres_server.password not in (store.health().last_error or "")


def test_error_messages_hide_password_and_sql(store_factory: Callable[..., AuditStore],
                                              postgres_server: Any) -> None:
    """last_error never shows the URL's password, an SQL statement or its values."""
    secret = "s3cr3t-pw"
    url = f"postgresql+psycopg://ragtrail:{secret}@127.0.0.1:{postgres_server.port}/nowhere"
    store = store_factory(url, queue_size=QUEUE)
    store.record(make_event(description="private text"))
    wait_for(lambda: store.health().status == "failing")  # the writer's attempt, not the start's
    message = store.health().last_error or ""
    for leaked in (secret, "INSERT", "[SQL", "private text"):
        assert leaked not in message
    assert secret not in repr(store)
    store.close(timeout=0.1)  # the database never comes: give up now, not at teardown


def test_close_during_outage_gives_up_at_the_timeout(
        store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """close(timeout) while the database is locked returns near the timeout, counting the loss."""
    store = store_factory(f"sqlite:///{tmp_path / 'a.db'}", queue_size=QUEUE,
                          engine_options={"connect_args": {"timeout": 0.05}})
    store.record(make_event())
    assert store.flush(10)
    holder = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(10):
            store.record(make_event())
        began = time.monotonic()
        store.close(timeout=0.5)
        assert time.monotonic() - began < 5
        assert store.health().dropped == 10
    finally:
        holder.close()


def test_close_without_timeout_is_bounded_when_sqlite_stays_locked(
        store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """close() with no timeout returns after close_timeout (+1 s for a writer waiting inside
    SQLite's busy timeout): what was still queued is counted as dropped at once, the batch the
    writer holds is written (or dropped) when its wait ends."""
    path = tmp_path / "locked.db"
    store = store_factory(f"sqlite:///{path}", batch_size=5, close_timeout=0.2,
                          engine_options={"connect_args": {"timeout": 60}})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(200):
            store.record(make_event())
        # The writer holds a batch (up to 20 x 5 records: a backlog) and waits on the lock.
        wait_for(lambda: store.health().queue_depth <= 195)
        queued = store.health().queue_depth
        began = time.monotonic()
        store.close()
        assert time.monotonic() - began < 15  # 1.2 s expected; the busy timeout is 60 s
        assert queued >= 100
        assert store.health().dropped >= queued
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_for(lambda: store.health().written + store.health().dropped == 200)


def test_a_database_unreachable_at_start_shows_in_health(
        store_factory: Callable[..., AuditStore]) -> None:
    """The store opens (the app must start) but health says the database was not reached,
    before any record fails: it said "ok" until then, and readiness passed on it."""
    with socket.socket() as closed:  # a free loopback port, closed again: connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    store = store_factory(f"postgresql+psycopg://u:pw-canary@127.0.0.1:{port}/x")
    health = store.health()
    assert health.status == "degraded"
    assert health.last_error is not None
    assert "Connection refused" in health.last_error
    assert "pw-canary" not in health.last_error


def test_a_server_that_never_answers_holds_start_up_for_two_seconds_not_ten(
        store_factory: Callable[..., AuditStore]) -> None:
    """A listener that accepts and never answers (a hung server, a half-dead PgBouncer):
    AuditStore() waited the whole 10 s connect timeout, in every worker's start-up. Now 2 s,
    health says so, and records queue for the writer's retries."""
    with socket.create_server(("127.0.0.1", 0)) as hung:
        port = hung.getsockname()[1]
        began = time.monotonic()
        store = store_factory(f"postgresql+psycopg://u:pw-canary@127.0.0.1:{port}/x",
                              close_timeout=0.5)
        waited = time.monotonic() - began
        store.record(make_event())
        health = store.health()
        store.close()
    assert 1.5 < waited < 5.0  # 2 s expected; 10 s before
    assert health.status == "degraded"
    assert health.last_error is not None
    assert "not answering within 2 s" in health.last_error
    assert health.queue_depth == 1


def test_close_without_timeout_is_bounded_when_postgresql_is_down(
        postgres_db_url: str, postgres_server: Any,
        store_factory: Callable[..., AuditStore]) -> None:
    """The server stops mid-run: close() gives up after close_timeout, counting the loss."""
    store = store_factory(postgres_db_url, close_timeout=0.3)
    store.record(make_event())
    assert store.flush(10)
    postgres_server.stop()
    for _ in range(10):
        store.record(make_event())
    began = time.monotonic()
    store.close()
    assert time.monotonic() - began < 15  # 0.3 s expected
    health = store.health()
    assert (health.written, health.dropped) == (1, 10)


def test_close_is_bounded_when_postgresql_hangs(
        postgres_db_url: str, postgres_server: Any,
        store_factory: Callable[..., AuditStore]) -> None:
    """A server that stops answering (its processes frozen) leaves the writer stuck inside a
    query: close() still returns, and every record ends up written or counted as dropped."""
    store = store_factory(postgres_db_url, batch_size=5, close_timeout=0.2)
    store.record(make_event())
    assert store.flush(10)
    postgres_server.freeze()
    try:
        for _ in range(200):
            store.record(make_event())
        # The writer holds a batch (up to 20 x 5 records: a backlog) and waits on the server.
        wait_for(lambda: store.health().queue_depth <= 195)
        queued = store.health().queue_depth
        began = time.monotonic()
        store.close()
        assert time.monotonic() - began < 15  # 1.2 s expected
        assert queued >= 100
        assert store.health().dropped >= queued
    finally:
        postgres_server.thaw()
    wait_for(lambda: store.health().written + store.health().dropped == 201)


def test_a_hung_postgresql_shows_in_health(
        postgres_db_url: str, postgres_server: Any,
        store_factory: Callable[..., AuditStore]) -> None:
    """A frozen server raises nothing: the writer just waits inside a query. Health says
    "failing" once that wait passes the stall threshold (10 s; 0.5 s here), and "ok" again
    after the server answers; the records then all arrive."""
    store = store_factory(postgres_db_url, close_timeout=5)
    store._writer.stalled_after_s = 0.5  # the threshold, without waiting 10 s
    store.record(make_event())
    assert store.flush(10)
    postgres_server.freeze()
    try:
        store.record(make_event())
        wait_for(lambda: store.health().status == "failing")
        assert "has not returned" in (store.health().last_error or "")
    finally:
        postgres_server.thaw()
    assert store.flush(20)
    assert store.health().status != "failing"
    assert store.health().written == 2


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "8m") -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full(store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """A real ENOSPC on a 8 MiB tmpfs: writing resumes once space is freed."""
    with small_tmpfs(tmp_path / "mnt") as mnt:
        store = store_factory(f"sqlite:///{mnt / 'audit.db'}", queue_size=QUEUE, batch_size=50)
        filler = mnt / "filler"

        def fill() -> None:
            with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
                while True:
                    out.write(b"\0" * 65536)

        try:
            ride_out_fault(store, fill, filler.unlink, "full")
        finally:
            store.close(timeout=5)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_the_wal_fits_a_small_volume(store_factory: Callable[..., AuditStore],
                                     tmp_path: Path) -> None:
    """A 12 MiB volume and small rings: several times the volume's size goes through the
    WAL, which must be checkpointed before it fills the disk (with SQLite's 40 MiB budget
    it filled the volume and the store failed for good: no room left to checkpoint)."""
    with small_tmpfs(tmp_path / "mnt", size="12m") as mnt:
        store = store_factory(f"sqlite:///{mnt / 'audit.db'}", spans_capacity=2000,
                              events_capacity=100, metrics_capacity=100, queue_size=4000)
        try:
            for _ in range(12):
                for _ in range(2000):
                    store.record(make_span("retrieve", attributes={"query": "q" * 400}))
                assert store.flush(30), store.health().last_error
            health = store.health()
            assert (health.status, health.dropped, health.written) == ("ok", 0, 24_000)
            assert os.path.getsize(mnt / "audit.db-wal") < 6 << 20
        finally:
            store.close(timeout=5)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_the_wal_shrinks_when_the_volume_fills_up_later(
        store_factory: Callable[..., AuditStore], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another file fills the volume after the store opened (logs in the same emptyDir): the
    writer's long-lived connection measures the room again (here at every checkout instead of
    every 30 s) and checkpoints within the smaller share, so the disk never fills. Measured
    once at connect, the 16 MiB budget of a 64 MiB volume met 12 MiB of room: disk full."""
    monkeypatch.setattr(_engine, "_REFIT_SECONDS", 0.0)
    with small_tmpfs(tmp_path / "mnt", size="64m") as mnt:
        store = store_factory(f"sqlite:///{mnt / 'audit.db'}", spans_capacity=2000,
                              events_capacity=100, metrics_capacity=100, queue_size=4000)
        try:
            store.record(make_event("opened"))
            assert store.flush(10)
            free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
            with (mnt / "ballast").open("wb") as ballast:
                ballast.write(b"\1" * (free - (12 << 20)))
            for _ in range(12):
                for _ in range(2000):
                    store.record(make_span("retrieve", attributes={"query": "q" * 400}))
                assert store.flush(30), store.health().last_error
            health = store.health()
            assert (health.last_error, health.dropped, health.written) == (None, 0, 24_001)
            assert os.path.getsize(mnt / "audit.db-wal") < 6 << 20
        finally:
            store.close(timeout=5)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_an_oversized_wal_is_checkpointed_without_waiting_for_readers(
        store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """A WAL left larger than the volume allows (another program wrote it with automatic
    checkpoints off) while a reader holds a snapshot: opening the store checkpoints what it
    can at once instead of waiting out the busy timeout for the reader (5 s per connect)."""
    with small_tmpfs(tmp_path / "mnt", size="10m") as mnt:
        path = mnt / "audit.db"
        store_factory(f"sqlite:///{path}").close(timeout=5)
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other, \
                contextlib.closing(sqlite3.connect(path, isolation_level=None)) as reader:
            other.execute("PRAGMA wal_autocheckpoint = 0")
            other.execute("CREATE TABLE filler (data BLOB)")
            other.execute("INSERT INTO filler VALUES (zeroblob(1000000))")
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM filler").fetchall()  # holds a snapshot
            for _ in range(5):  # past the reader's snapshot: no checkpoint can finish
                other.execute("INSERT INTO filler VALUES (zeroblob(1000000))")
            assert os.path.getsize(f"{path}-wal") > 5 << 20
            began = time.monotonic()
            store = store_factory(f"sqlite:///{path}")
            store.record(make_event("after"))
            assert store.flush(10)
            assert time.monotonic() - began < 2.5  # the busy timeout is 5 s
            reader.execute("COMMIT")
        store.close(timeout=5)


@pytest.mark.parametrize("how", ["deleted", "moved away"])
def test_a_database_file_removed_under_the_store(
        store_factory: Callable[..., AuditStore], tmp_path: Path, how: str) -> None:
    """SQLite writes on into a file unlinked under it, unseen: the writer notices the path
    no longer holds the file it opened, creates a new one (0600, as at start) for the next
    batch, and health says what happened instead of staying "ok"."""
    path = tmp_path / "audit.db"
    store = store_factory(f"sqlite:///{path}")
    store.record(make_event("before"))
    assert store.flush(10)
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{path}{suffix}")
        if how == "deleted":
            old.unlink(missing_ok=True)
        elif old.exists():
            old.rename(tmp_path / f"moved{suffix}")
    store.record(make_event("after"))
    assert store.flush(10)
    assert [e.event_type for e in store.events()] == ["after"]
    assert path.stat().st_mode & 0o777 == 0o600
    health = store.health()
    assert health.status == "degraded"
    assert "deleted or replaced" in (health.last_error or "")
    with contextlib.closing(sqlite3.connect(path)) as reader:  # what a new reader finds
        assert reader.execute("SELECT event_type FROM ragtrail_events").fetchall() == [
            ("after",)]
