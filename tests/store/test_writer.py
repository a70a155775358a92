"""The writer: never raises into callers, drops and counts beyond its bound, isolates bad rows."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy import exc as sa_exc
from store_helpers import make_event, make_sample, make_span, wait_for

from ragtrail._records import SecurityEvent, Severity, SpanRecord
from ragtrail._settings import Settings
from ragtrail.store import AuditStore, RingUsage, StoreHealth
from ragtrail.store._commit import refusal_test
from ragtrail.store._rows import INDEXED_CHARS

CHILD = Path(__file__).with_name("store_child.py")



def test_fresh_store_reports_ok(store_factory: Callable[..., AuditStore]) -> None:
    """A new store is healthy, empty, with the configured queue capacity."""
    health = store_factory(queue_size=123).health()
    assert health == StoreHealth(status="ok", queue_depth=0, queue_capacity=123, written=0,
                                 dropped=0, outcome_unknown=0, coalesced=0, last_error=None,
                                 last_error_time_us=None, ring_usage={}, writer_alive=True)


def test_from_settings_takes_every_store_setting(tmp_path: Path) -> None:
    """from_settings passes the URL, capacities, queue and batch sizes and coalescing window."""
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", events_capacity=3,
                        spans_capacity=4, metrics_capacity=5, queue_size=6, batch_size=2,
                        event_coalesce_seconds=0.5)
    store = AuditStore.from_settings(settings)
    try:
        for _ in range(5):
            store.record(make_event())
            store.record(make_span())
            store.record(make_sample())
            assert store.flush(10)  # three at a time: the queue holds six
        assert store.health().queue_capacity == 6
        assert store.health().ring_usage == {"events": RingUsage(3, 3), "spans": RingUsage(4, 4),
                                             "metrics": RingUsage(5, 5)}
    finally:
        store.close()


def test_record_never_raises_on_garbage(backend_store: Callable[..., AuditStore]) -> None:
    """Things that are not records, or records the database cannot hold, are dropped and
    counted; the good records around them are written."""
    store = backend_store()
    bad_severity = SecurityEvent("x", 99, "s", "d", 0)  # type: ignore[arg-type]
    too_big = make_span(start_us=2**70)
    odd_name = make_span(name=b"bytes")  # type: ignore[arg-type]
    circular: dict[str, object] = {}
    circular["self"] = circular
    for thing in (None, "text", 42, make_event("good-1"), bad_severity, too_big, odd_name,
                  make_event(metadata=circular), make_event("good-2"), make_span("good-span")):
        store.record(thing)  # type: ignore[arg-type]
    assert store.flush(10)
    assert [e.event_type for e in store.events()] == ["good-2", "good-1"]
    assert [s.name for s in store.spans()] == ["good-span", "b'bytes'"]
    assert store.health().dropped == 6
    assert store.stats().dropped == 3  # the stored totals count records of the three kinds


def test_hostile_text_is_stored_faithfully(backend_store: Callable[..., AuditStore]) -> None:
    """NUL, quotes, newlines and unicode in text and metadata are stored without breaking a
    batch (PostgreSQL text cannot hold NUL: it becomes U+FFFD there)."""
    store = backend_store()
    nasty = "'; DROP TABLE ragtrail_events; --\n\r\t\u202e\U0001f4a5\x00end"
    store.record(make_event("nasty", description=nasty, metadata={nasty: [nasty, object()]}))
    assert store.flush(10)
    (event,) = store.events()
    expected = nasty if store.engine.dialect.name == "sqlite" else nasty.replace("\x00", "\ufffd")
    assert event.description == expected
    assert list(event.metadata) == [nasty]  # JSON escapes NUL itself
    assert event.metadata[nasty][0] == nasty


def test_lone_surrogates_are_stored_escaped(backend_store: Callable[..., AuditStore]) -> None:
    """A span named after a file name that is not UTF-8 (``os.fsdecode`` gives a lone
    surrogate), with it in its error message: stored with the surrogate escaped, on both
    backends. No UTF-8 driver encodes one, and the whole span was dropped."""
    store = backend_store()
    name = os.fsdecode(b"ingest report-\xff.pdf")
    store.record(make_span(name, status="error", error_type="OSError",
                           error_message=f"cannot read {name}", correlation_id=name))
    store.record(make_span("after"))
    assert store.flush(20)
    assert store.health().dropped == 0
    escaped = "ingest report-\\udcff.pdf"
    assert [(s.name, s.error_message, s.correlation_id) for s in store.spans()] == [
        ("after", None, None), (escaped, f"cannot read {escaped}", escaped)]


def test_long_indexed_text_never_stops_the_writer(
        backend_store: Callable[..., AuditStore]) -> None:
    """A correlation ID, span name or event type of 3,000 characters (a job ID from a queue, a
    generated name): PostgreSQL refuses index entries over 2,704 bytes, which once stopped the
    writer for good (retried as an outage). Cut to INDEXED_CHARS there, kept whole in SQLite;
    the records around them are written either way."""
    store = backend_store()
    long = secrets.token_urlsafe(2250)  # 3,000 characters that do not compress
    store.record(make_span("before"))
    store.record(make_span(long, correlation_id=long))
    store.record(make_event(long, correlation_id=long))
    store.record(make_event("after"))
    assert store.flush(20)
    assert store.health().status == "ok"
    kept = long if store.engine.dialect.name == "sqlite" else long[:INDEXED_CHARS]
    assert [(s.name, s.correlation_id) for s in store.spans()] == [
        (kept, kept), ("before", None)]
    assert [(e.event_type, e.correlation_id) for e in store.events()] == [
        ("after", None), (kept, kept)]
    assert store.spans(correlation_id=kept)[0].name == kept


@pytest.mark.postgres
def test_a_server_limit_refuses_the_record_not_the_database(postgres_url: str) -> None:
    """SQLSTATE class 54 (program limit exceeded) is an OperationalError in psycopg, like an
    outage; it is about the rows, so their batch is split and the refused record dropped
    rather than retried forever. The error comes from a real server."""
    engine = create_engine(postgres_url)
    columns = ", ".join(f"1 AS c{k}" for k in range(1700))  # at most 1,664 columns
    try:
        with pytest.raises(sa_exc.OperationalError) as raised, engine.connect() as conn:
            conn.execute(text(f"SELECT {columns}"))
    finally:
        engine.dispose()
    assert raised.value.orig is not None
    assert raised.value.orig.sqlstate == "54011"  # type: ignore[attr-defined]  # too many columns
    assert refusal_test(engine.dialect.loaded_dbapi, "postgresql")(raised.value.orig)


def test_full_queue_drops_and_counts(store_factory: Callable[..., AuditStore],
                                     tmp_path: Path) -> None:
    """With the writer blocked, records beyond the queue bound are dropped and counted."""
    path = tmp_path / "blocked.db"
    store = store_factory(f"sqlite:///{path}", queue_size=10, batch_size=5,
                          engine_options={"connect_args": {"timeout": 0.05}})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(100):
            store.record(make_span())
        assert store.flush(timeout=0.3) is False
        health = store.health()
        assert health.queue_depth <= 10 + 1  # the bound (the flush marker rides on top)
        # 100 - the queue (10) - the batch in the writer's hand: up to the whole queue, as
        # a backlog (more than batch_size waiting) is taken in one go.
        assert 80 <= health.dropped <= 90
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.flush(10)
    assert len(store.spans(limit=None)) + store.health().dropped == 100


def test_close_is_idempotent_and_later_records_are_dropped(
        store_factory: Callable[..., AuditStore]) -> None:
    """After close(), record() is still silent (and counted as dropped); close() again is fine."""
    store = store_factory()
    store.record(make_event())
    store.close()
    store.close()
    store.record(make_event())
    assert store.flush(1)
    assert store.health().written == 1
    assert store.health().dropped == 1


def test_a_closed_store_can_be_read_and_keeps_no_connection_open(
        backend_store: Callable[..., AuditStore]) -> None:
    """Reading after close() works (what was written is still there) and closes its
    connection again: a pooled one would outlive the store (Python 3.13 warns at exit)."""
    store = backend_store()
    store.record(make_event())
    store.close()
    assert len(store.events()) == 1
    assert store.stats().ring_usage["events"].rows == 1
    assert store.engine.pool.checkedin() == 0


def test_flush_covers_coalesced_repeats_only(backend_store: Callable[..., AuditStore]) -> None:
    """A flush with nothing queued but coalesced repeats still commits those counts."""
    store = backend_store()
    store.record(make_event("repeat", source="r", time_us=1))
    assert store.flush(10)
    store.record(make_event("repeat", source="r", time_us=2))
    assert store.flush(10)
    assert [e.count for e in store.events()] == [2]


def test_store_module_import_is_cheap_for_the_cli() -> None:
    """Importing ragtrail.store does not start threads or touch any database."""
    code = ("import threading, ragtrail.store; "
            "assert threading.active_count() == 1, threading.enumerate()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_severity_is_stored_as_its_ordered_integer(store_factory: Callable[..., AuditStore],
                                                   tmp_path: Path) -> None:
    """The severity column holds 10/20/30/40 so SQL can compare severities."""
    path = tmp_path / "sev.db"
    store = store_factory(f"sqlite:///{path}")
    for level in Severity:
        store.record(make_event(severity=level))
    assert store.flush(10)
    with sqlite3.connect(path) as conn:
        values = [row[0] for row in conn.execute(
            "SELECT severity FROM ragtrail_events ORDER BY id")]
    conn.close()
    assert values == [10, 20, 30, 40]


def test_sqlite_store_uses_wal(store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """The SQLite file is in WAL mode, so readers (the CLI) never block the writer."""
    path = tmp_path / "wal.db"
    store = store_factory(f"sqlite:///{path}")
    store.record(make_event())
    assert store.flush(10)
    with sqlite3.connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert mode == "wal"


def test_sqlite_writer_connections_keep_a_larger_cache_and_checkpoint_less_often(
        store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """The settings that keep a full ring's writes cheap (docs/scaling.md): 8 KiB pages in a
    new file, a 16 MiB page cache and a checkpoint every 5,000 WAL pages (40 MB)."""
    path = tmp_path / "tuned.db"
    store = store_factory(f"sqlite:///{path}")
    store.record(make_event())
    assert store.flush(10)
    with store.engine.connect() as conn:
        cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
        checkpoint = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    assert (cache, checkpoint) == (-16384, 5000)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA page_size").fetchone() == (8192,)
    raw.close()


def test_a_store_with_4_kib_pages_keeps_them(store_factory: Callable[..., AuditStore],
                                             tmp_path: Path) -> None:
    """A store created with SQLite's default page size (an earlier ragtrail) is written as it
    is, with the checkpoint interval in pages doubled to keep the WAL at 40 MB."""
    path = tmp_path / "old.db"
    AuditStore(f"sqlite:///{path}").close()  # ragtrail's schema, rewritten with 4 KiB pages:
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode = DELETE")  # WAL mode cannot change the page size
    old.execute("PRAGMA page_size = 4096")
    old.execute("VACUUM")
    assert old.execute("PRAGMA page_size").fetchone() == (4096,)
    old.close()
    store = store_factory(f"sqlite:///{path}")
    store.record(make_event())
    assert store.flush(10)
    assert len(store.events()) == 1
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA page_size").fetchone() == (4096,)
    raw.close()


@dataclass(frozen=True, slots=True)
class AppSpan(SpanRecord):
    """An application's own subclass of a record type."""


@dataclass(frozen=True, slots=True)
class AppEvent(SecurityEvent):
    """An application's own subclass of a record type."""


def test_subclasses_of_record_types_are_stored(store_factory: Callable[..., AuditStore]
                                               ) -> None:
    """Records of subclasses are written (and events coalesce) like their base types."""
    store = store_factory()
    span = make_span()
    store.record(AppSpan(**{f.name: getattr(span, f.name) for f in fields(span)}))
    for _ in range(3):
        store.record(AppEvent("app", Severity.LOW, "me", "subclassed", 1))
    assert store.flush(10)
    assert [s.span_id for s in store.spans()] == [span.span_id]
    assert [(e.event_type, e.count) for e in store.events()] == [("app", 3)]


def spans_at_commits(store: AuditStore) -> list[int]:
    """A list that grows at each commit on the store's connections by the spans table's size
    then. Readers commit too: copy it before reading the store."""
    counts: list[int] = []
    event.listen(store.engine, "commit", lambda conn: counts.append(
        conn.exec_driver_sql("SELECT count(*) FROM ragtrail_spans").scalar()))
    return counts


def rows_per_commit(counts: list[int]) -> list[int]:
    """The spans each commit added, from ``spans_at_commits`` (starting from none)."""
    return [after - before for before, after in zip([0, *counts[:-1]], counts, strict=True)]


def test_writer_waits_for_a_full_batch(store_factory: Callable[..., AuditStore]) -> None:
    """Records are written in full batches while the linger lasts; flush() writes the rest at
    once instead of waiting for the linger to end."""
    store = store_factory(batch_size=50, batch_linger_seconds=600)
    counts = spans_at_commits(store)
    for _ in range(120):
        store.record(make_span())
    assert store.flush(timeout=60)  # far below the linger: flush cut it short
    sizes = rows_per_commit(list(counts))
    assert len(store.spans(limit=None)) == 120
    # Full batches of 50, or of up to 20 x 50 when the writer found more than one batch
    # queued; only the last, which flush() cut short, may be smaller.
    assert sum(sizes) == 120
    assert all(50 <= size <= 1000 for size in sizes[:-1])
    assert 1 <= sizes[-1] <= 1000


def test_a_backlog_is_written_in_larger_transactions(
        store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """Records that piled up while the writer waited (here on a lock; under load, for the
    GIL) go in with up to 20 batches per transaction, so the writer catches up: 1,000 records
    at batch_size 50 take 1-3 commits, not 20."""
    path = tmp_path / "backlog.db"
    store = store_factory(f"sqlite:///{path}", batch_size=50,
                          engine_options={"connect_args": {"timeout": 60}})
    assert store.flush(10)  # the schema exists before the lock is taken
    counts = spans_at_commits(store)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(1000):
            store.record(make_span())
        wait_for_depth = time.monotonic() + 20
        while store.health().queue_depth == 1000:  # the writer took its first batch
            assert time.monotonic() < wait_for_depth
            time.sleep(0.01)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.flush(timeout=60)
    sizes = rows_per_commit(list(counts))
    assert len(store.spans(limit=None)) == 1000
    assert sum(sizes) == 1000
    assert all(1 <= size <= 20 * 50 for size in sizes)
    assert 1 <= len(sizes) <= 3


def test_one_refused_record_in_a_backlog_costs_one_batch_of_single_commits(
        store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """A backlog transaction refused for one record (an integer over 64 bits) is tried again as its
    batches, and only the refused batch goes record by record: about 20 + 50 commits for
    1,000 records at batch_size 50, not 1,000."""
    path = tmp_path / "refused.db"
    store = store_factory(f"sqlite:///{path}", batch_size=50,
                          engine_options={"connect_args": {"timeout": 60}})
    assert store.flush(10)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(1000):
            store.record(make_span(f"span {i}", **({"start_us": 2**70} if i == 500 else {})))
        deadline = time.monotonic() + 20
        while store.health().queue_depth == 1000:  # the writer took its first batch
            assert time.monotonic() < deadline
            time.sleep(0.01)
        counts = spans_at_commits(store)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.flush(timeout=60)
    commits = len(counts)
    assert len(store.spans(limit=None)) == 999
    assert store.health().dropped == 1
    assert commits <= 20 + 50 + 5


def test_linger_ends_in_a_write_without_flush(store_factory: Callable[..., AuditStore]) -> None:
    """A lone record is committed once the linger passes, without any flush."""
    store = store_factory(batch_size=50, batch_linger_seconds=0.05)
    store.record(make_event())
    wait_for(lambda: store.health().written == 1)
    assert len(store.events()) == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_writer_thread_that_died_is_started_again(
        store_factory: Callable[..., AuditStore], monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer thread killed by an exception it cannot catch is restarted by health() and
    flush(); writer_alive turns False when no new thread can be started."""
    store = store_factory()
    writer = store._writer
    dying = writer.thread
    real_write = writer.batches.write

    def die_once(*args: Any) -> Any:  # a BaseException escapes the writer's restart loop
        writer.batches.write = real_write  # type: ignore[method-assign]
        raise SystemExit("injected")

    writer.batches.write = die_once  # type: ignore[method-assign]
    store.record(make_event("lost"))
    assert store.flush(0.2) is False
    wait_for(lambda: not dying.is_alive())
    assert store.health().writer_alive is True  # restarted here
    store.record(make_event("after"))
    assert store.flush(10)
    assert [e.event_type for e in store.events()] == ["after"]

    # A process out of threads cannot be set up safely in a test: refuse the new thread.
    def no_threads() -> threading.Thread:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(writer, "_new_thread", no_threads)
    monkeypatch.setattr(writer, "_last_revival", 0.0)
    writer.batches.write = die_once  # type: ignore[method-assign]
    dying = writer.thread
    store.record(make_event("lost"))
    wait_for(lambda: not dying.is_alive())
    health = store.health()
    assert (health.writer_alive, health.status) == (False, "failing")
    assert store.flush(0.1) is False
