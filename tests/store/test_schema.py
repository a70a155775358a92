"""Schema versions (refusal, migration) and read-only opening that never creates or writes."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from store_helpers import make_event, make_span, run_sql, stored_marks
from store_v1 import create_version_1_store

from ragtrail._records import Severity
from ragtrail.store import SCHEMA_VERSION, AuditStore, RingUsage, StoreError
from ragtrail.store._schema import COMPATIBLE_FROM

V0_DDL = [  # the tables as "version 0" had them: no count, no span events, no ring table
    "CREATE TABLE ragtrail_schema (version INTEGER NOT NULL)",
    "INSERT INTO ragtrail_schema (version) VALUES (0)",
    "CREATE TABLE ragtrail_events (id INTEGER PRIMARY KEY, time_us BIGINT NOT NULL, "
    "event_type VARCHAR NOT NULL, severity SMALLINT NOT NULL, source VARCHAR NOT NULL, "
    "description TEXT NOT NULL, correlation_id VARCHAR, trace_id VARCHAR, span_id VARCHAR, "
    "metadata TEXT NOT NULL, service VARCHAR NOT NULL, host VARCHAR NOT NULL, "
    "pid INTEGER NOT NULL)",
    "CREATE TABLE ragtrail_spans (id INTEGER PRIMARY KEY, trace_id VARCHAR NOT NULL, "
    "span_id VARCHAR NOT NULL, parent_span_id VARCHAR, name VARCHAR NOT NULL, "
    "kind VARCHAR NOT NULL, start_us BIGINT NOT NULL, duration_us BIGINT NOT NULL, "
    "status VARCHAR NOT NULL, error_type VARCHAR, error_message TEXT, correlation_id VARCHAR, "
    "attributes TEXT NOT NULL)",
    "CREATE TABLE ragtrail_metrics (id INTEGER PRIMARY KEY, time_us BIGINT NOT NULL, "
    "cpu_percent FLOAT NOT NULL, memory_percent FLOAT NOT NULL, "
    "disk_usage_percent FLOAT NOT NULL, net_sent_bytes_per_s FLOAT NOT NULL, "
    "net_recv_bytes_per_s FLOAT NOT NULL, active_connections INTEGER NOT NULL, "
    "queue_depth INTEGER NOT NULL, process_rss_bytes BIGINT NOT NULL)",
]
V0_ROWS = [
    "INSERT INTO ragtrail_events VALUES (1, 10, 'old_high', 30, 'legacy', 'from v0', NULL, "
    "NULL, NULL, '{\"a\": 1}', 'svc', 'host', 42)",
    "INSERT INTO ragtrail_events VALUES (2, 20, 'old_low', 10, 'legacy', 'from v0', NULL, "
    "NULL, NULL, '{}', 'svc', 'host', 42)",
    "INSERT INTO ragtrail_spans VALUES (1, '" + "a" * 32 + "', '" + "b" * 16 + "', NULL, "
    "'old_span', 'server', 10, 2000, 'ok', NULL, NULL, NULL, '{}')",
]


def stored_version(url: str) -> int:
    return stored_marks(url)[0]


def make_newer(url: str, version: int, compatible_from: int) -> None:
    """What a hypothetical newer ragtrail would leave: its version and floor, and the table
    its additive change brought (this ragtrail neither knows nor touches it)."""
    run_sql(url, f"UPDATE ragtrail_schema SET version = {version}, "
                 f"compatible_from = {compatible_from}",
            "CREATE TABLE ragtrail_future (id INTEGER PRIMARY KEY)")


def test_new_store_records_its_schema_version(backend_url: str,
                                              store_factory: Callable[..., AuditStore]) -> None:
    """Creating a store writes the current schema version and the oldest version of code
    that may use it."""
    store_factory(backend_url)
    assert stored_marks(backend_url) == (SCHEMA_VERSION, COMPATIBLE_FROM)


@pytest.mark.parametrize("read_only", [False, True])
def test_store_from_a_newer_ragtrail_is_refused(backend_url: str, read_only: bool,
                                                store_factory: Callable[..., AuditStore]) -> None:
    """A newer store that older code may not use (its floor above our version) is refused
    with one line naming its version, its floor and ours, and saying to upgrade."""
    store_factory(backend_url).close()
    make_newer(backend_url, SCHEMA_VERSION + 2, SCHEMA_VERSION + 1)
    newer = (rf"was written by a newer ragtrail \(schema version {SCHEMA_VERSION + 2}, usable "
             rf"from schema version {SCHEMA_VERSION + 1} on; this ragtrail has schema version "
             rf"{SCHEMA_VERSION}\); upgrade ragtrail to use it$")
    with pytest.raises(StoreError, match=newer) as err:
        AuditStore(backend_url, read_only=read_only)
    assert "\n" not in str(err.value)
    assert stored_marks(backend_url) == (SCHEMA_VERSION + 2, SCHEMA_VERSION + 1)


def test_newer_store_compatible_with_this_ragtrail_is_written(
        backend_url: str, store_factory: Callable[..., AuditStore],
        caplog: pytest.LogCaptureFixture) -> None:
    """A rollback (or an older replica starting during a rolling deploy) onto a store a
    newer ragtrail migrated with an additive change: written and read as it is, with a log
    line naming both versions; its version and floor are left alone."""
    store_factory(backend_url).close()
    make_newer(backend_url, SCHEMA_VERSION + 1, SCHEMA_VERSION)
    caplog.set_level("INFO", logger="ragtrail.store")
    store = store_factory(backend_url, event_coalesce_seconds=0)
    store.record(make_event(event_type="after_rollback", severity=Severity.HIGH))
    store.record(make_span(name="after rollback"))
    assert store.flush(10)
    assert store.health().status == "ok"
    assert (f"schema version {SCHEMA_VERSION + 1}, newer than this ragtrail's "
            f"{SCHEMA_VERSION}, and may be used by ragtrail from schema version "
            f"{SCHEMA_VERSION} on") in caplog.text
    reader = store_factory(backend_url, read_only=True)
    assert [e.event_type for e in reader.events()] == ["after_rollback"]
    assert [s.name for s in reader.spans()] == ["after rollback"]
    assert reader.stats().written == 2
    assert stored_marks(backend_url) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)


@pytest.mark.parametrize("read_only", [False, True])
def test_newer_store_without_a_floor_is_refused(
        backend_url: str, read_only: bool) -> None:
    """A newer store that records no floor (made before the marker existed) may be used by
    its own version and later only."""
    create_version_1_store(backend_url)
    run_sql(backend_url, f"UPDATE ragtrail_schema SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=rf"newer ragtrail \(schema version "
                                         rf"{SCHEMA_VERSION + 1}; this ragtrail has schema "
                                         rf"version {SCHEMA_VERSION}\); upgrade"):
        AuditStore(backend_url, read_only=read_only)


def test_version_0_store_is_migrated(backend_url: str,
                                     store_factory: Callable[..., AuditStore]) -> None:
    """An older store is migrated in place: old rows readable, counts and ring rebuilt."""
    run_sql(backend_url, *V0_DDL, *V0_ROWS)
    store = store_factory(backend_url, events_capacity=3)
    assert stored_marks(backend_url) == (SCHEMA_VERSION, COMPATIBLE_FROM)
    old = store.events()
    assert [(e.id, e.event_type, e.count, e.metadata) for e in old] == [
        (2, "old_low", 1, {}), (1, "old_high", 1, {"a": 1})]
    assert [(s.name, s.events) for s in store.spans()] == [("old_span", ())]
    assert store.stats().ring_usage["events"] == RingUsage(2, 3)
    for _ in range(2):
        store.record(make_event(severity=Severity.LOW))
    store.record(make_span())
    assert store.flush(10)
    events = store.events()
    assert [e.id for e in events] == [4, 3, 1]  # new IDs follow; the old low one went first
    assert store.stats().events_by_severity == {"low": 2, "medium": 0, "high": 1, "critical": 0}


def test_version_1_store_is_migrated(backend_url: str,
                                     store_factory: Callable[..., AuditStore]) -> None:
    """A store the version-1 writer made gets ``ragtrail_writers`` and the compatibility
    marker (version 2 may be used by version 1); its rows, coalesced counts and lifetime
    totals stay, and writing goes on from them (keyed on a server)."""
    create_version_1_store(backend_url)
    store = store_factory(backend_url, event_coalesce_seconds=0)
    assert stored_marks(backend_url) == (SCHEMA_VERSION, COMPATIBLE_FROM) == (2, 1)
    assert [(e.id, e.event_type, e.count, e.metadata) for e in store.events()] == [
        (2, "rate_limited", 1, {}), (1, "authn_login_fail", 4, {"user": "u1"})]
    assert [s.name for s in store.spans()] == ["GET /ask", "retrieve"]
    store.record(make_event(severity=Severity.HIGH))
    store.record(make_span())
    assert store.flush(10)
    stats = store.stats()
    assert (stats.events, stats.event_occurrences, stats.spans, stats.metrics) == (3, 6, 3, 1)
    assert (stats.written, stats.dropped, stats.coalesced) == (7, 0, 3)
    assert stats.ring_usage["events"] == RingUsage(3, 100_000)
    assert [e.id for e in store.events()] == [3, 2, 1]
    engine = create_engine(backend_url)
    with engine.connect() as conn:
        assert inspect(conn).has_table("ragtrail_writers")
        keys = conn.execute(text("SELECT batch FROM ragtrail_writers")).scalars().all()
    engine.dispose()
    assert keys == ([] if backend_url.startswith("sqlite") else [1])  # SQLite needs none


def test_table_without_version_is_not_taken_over(backend_url: str) -> None:
    """A ragtrail_events table without ragtrail_schema was not made by ragtrail: refused."""
    run_sql(backend_url, "CREATE TABLE ragtrail_events (id INTEGER PRIMARY KEY)")
    with pytest.raises(StoreError, match="not created by ragtrail"):
        AuditStore(backend_url)


def digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_read_only_never_creates_a_file(tmp_path: Path) -> None:
    """Opening a missing SQLite file read-only fails with one line and creates nothing."""
    missing = tmp_path / "nope" / "audit.db"
    with pytest.raises(StoreError, match="no such file"):
        AuditStore(f"sqlite:///{missing}", read_only=True)
    assert not missing.parent.exists()


def test_read_only_never_modifies_the_store(tmp_path: Path,
                                            store_factory: Callable[..., AuditStore]) -> None:
    """Reads, stats, records and close through a read-only store leave the file unchanged."""
    path = tmp_path / "audit.db"
    writer = AuditStore(f"sqlite:///{path}")
    writer.record(make_event())
    writer.close()
    before = digest(path)
    reader = store_factory(f"sqlite:///{path}", read_only=True)
    assert len(reader.events()) == 1
    reader.stats()
    reader.record(make_event())
    assert reader.flush(1)
    assert reader.health().dropped == 1
    reader.close()
    assert digest(path) == before


def test_read_only_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    """Another SQLite database, or not a database at all: StoreError with one clear line."""
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (x)")
    conn.close()
    with pytest.raises(StoreError, match="is not a ragtrail store"):
        AuditStore(f"sqlite:///{other}", read_only=True)
    garbage = tmp_path / "notes.txt"
    garbage.write_text("hello, this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot read it") as err:
        AuditStore(f"sqlite:///{garbage}", read_only=True)
    assert "\n" not in str(err.value)


def test_read_only_refuses_an_empty_postgres_database(postgres_db_url: str) -> None:
    """A reachable PostgreSQL database without a store is refused, and nothing is created."""
    with pytest.raises(StoreError, match="is not a ragtrail store"):
        AuditStore(postgres_db_url, read_only=True)
    with pytest.raises(StoreError, match="is not a ragtrail store"):
        AuditStore(postgres_db_url, read_only=True)


def test_bad_url_is_a_store_error() -> None:
    """A URL SQLAlchemy cannot parse or load is a StoreError, not a traceback from deep inside."""
    with pytest.raises(StoreError, match="not a database URL"):
        AuditStore("::::", read_only=True)
    with pytest.raises(StoreError):
        AuditStore("nosuchdialect://x/y", read_only=True)


@pytest.mark.parametrize(("option", "value"), [
    ("events_capacity", 0), ("queue_size", -1), ("batch_size", 1.5),
    ("event_coalesce_seconds", -1.0), ("batch_linger_seconds", -0.1),
    ("batch_linger_seconds", float("nan")), ("close_timeout", float("inf"))])
def test_bad_options_name_themselves(tmp_path: Path, option: str, value: object) -> None:
    """Invalid sizes are a ValueError naming the option, before anything is opened."""
    with pytest.raises(ValueError, match=option):
        AuditStore(f"sqlite:///{tmp_path / 'x.db'}", **{option: value})  # type: ignore[arg-type]
    assert not (tmp_path / "x.db").exists()


def test_new_sqlite_files_are_private(tmp_path: Path) -> None:
    """A new store's file, -wal and -shm are 0600 and missing directories are made 0700 (the
    mode bits: CI runs as root, which reads anything)."""
    path = tmp_path / "new" / "dir" / "audit.db"
    store = AuditStore(f"sqlite:///{path}")
    try:
        store.record(make_event())
        assert store.flush(10)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode)
                 for p in (path, path.with_name("audit.db-wal"), path.with_name("audit.db-shm"),
                           path.parent, path.parent.parent)}
    finally:
        store.close()
    assert modes == {"audit.db": 0o600, "audit.db-wal": 0o600, "audit.db-shm": 0o600,
                     "dir": 0o700, "new": 0o700}


def test_existing_sqlite_file_keeps_its_mode(tmp_path: Path) -> None:
    """A database file the user created keeps the mode they gave it."""
    path = tmp_path / "shared.db"
    path.touch()
    path.chmod(0o640)
    AuditStore(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
