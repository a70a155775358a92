"""A running writer and a compatibility floor raised by a newer release (a rolling deploy):
it stops writing, says so in health, and writes again if the floor comes down."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from forking import output_of_forked_child
from sqlalchemy import Connection, create_engine, event, text
from store_helpers import make_event, make_span, run_sql, stored_marks, wait_for

from ragtrail.health import StoreCheck
from ragtrail.store import SCHEMA_VERSION, AuditStore
from ragtrail.store._floor import FLOOR_RECHECK_S

NEWER = SCHEMA_VERSION + 1


def look_every(store: AuditStore, seconds: float) -> None:
    """The writer reads the version row every ``seconds``, starting before its next batch."""
    floor = store._writer.committer.floor
    floor.interval_s = seconds
    floor.expire()


def raise_floor(url: str, floor: int | None = NEWER) -> None:
    """What a newer release that older code would break leaves in ``ragtrail_schema``."""
    run_sql(url, f"UPDATE ragtrail_schema SET version = {NEWER}, "
                 f"compatible_from = {'NULL' if floor is None else floor}")


def rows(url: str, table: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return int(n)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "ragtrail.store" and r.levelno >= logging.ERROR]


def record_some(store: AuditStore, spans: int, events: int = 0) -> None:
    for _ in range(spans):
        store.record(make_span())
    for _ in range(events):
        store.record(make_event())


@pytest.mark.parametrize("floor", [NEWER, None], ids=["floor-above", "no-floor"])
def test_running_writer_stops_writing_once_a_newer_release_raises_the_floor(
        backend_url: str, store_factory: Callable[..., AuditStore], floor: int | None,
        caplog: pytest.LogCaptureFixture) -> None:
    """Records after the floor went above this version are dropped, not written: one ERROR
    naming both versions, health and the store check fail with that reason, record() and
    flush() return at once, and the schema row is left as the newer release wrote it."""
    store = store_factory(backend_url)
    look_every(store, 0.0)
    record_some(store, 3)
    assert store.flush(10)
    raise_floor(backend_url, floor)
    caplog.set_level("INFO", logger="ragtrail.store")
    record_some(store, 5, events=2)
    assert not store.flush(10)
    record_some(store, 4)
    assert not store.flush(10)

    health = store.health()
    usable = "" if floor is None else f", usable from schema version {floor} on"
    reason = (f"was written by a newer ragtrail (schema version {NEWER}{usable}; this "
              f"ragtrail has schema version {SCHEMA_VERSION})")
    assert (health.status, health.written, health.dropped) == ("failing", 3, 11)
    assert health.last_error is not None
    assert reason in health.last_error
    logged = errors(caplog)
    assert len(logged) == 1
    assert reason in logged[0]
    result = StoreCheck(store).check()
    assert result.status == "fail"
    assert "dropped 11" in result.output
    assert reason in result.output
    assert (rows(backend_url, "ragtrail_spans"), rows(backend_url, "ragtrail_events")) == (3, 0)
    assert stored_marks(backend_url) == (NEWER, floor)


def test_writer_writes_again_once_the_floor_is_lowered(
        backend_url: str, store_factory: Callable[..., AuditStore],
        caplog: pytest.LogCaptureFixture) -> None:
    """A rollout rolled back by lowering the floor again: the writer resumes (as a restart
    would), what it dropped meanwhile joins the stored totals, nothing is migrated."""
    store = store_factory(backend_url)
    look_every(store, 0.0)
    raise_floor(backend_url)
    record_some(store, 5)
    assert not store.flush(10)
    caplog.clear()
    run_sql(backend_url, f"UPDATE ragtrail_schema SET compatible_from = {SCHEMA_VERSION}")
    record_some(store, 2)
    assert store.flush(10)

    health = store.health()
    assert (health.status, health.written, health.dropped) == ("degraded", 2, 5)
    resumed = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
               and "writing resumed" in r.getMessage()]
    assert len(resumed) == 1
    assert f"allows schema version {SCHEMA_VERSION} again" in resumed[0]
    assert errors(caplog) == []
    assert rows(backend_url, "ragtrail_spans") == 2
    assert (store.stats().written, store.stats().dropped) == (2, 5)
    assert stored_marks(backend_url) == (NEWER, SCHEMA_VERSION)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_from_a_writer_shut_out_is_shut_out_too(
        backend_url: str, store_factory: Callable[..., AuditStore]) -> None:
    """A worker forked after the floor was raised (gunicorn --preload) starts a fresh writer
    that reads the version row before its first batch, rather than writing for an interval."""
    store = store_factory(backend_url)
    look_every(store, 0.0)
    raise_floor(backend_url)
    record_some(store, 1)
    assert not store.flush(10)

    def child() -> str:
        record_some(store, 2)
        flushed = store.flush(10)
        health = store.health()
        return f"{flushed} {health.status} {health.dropped}"

    assert output_of_forked_child(child) == "False failing 2"
    assert rows(backend_url, "ragtrail_spans") == 0


@contextmanager
def migration_holding_locks(url: str) -> Iterator[None]:
    """A newer release's migration in progress: the floor raised in a transaction that holds
    the lock the writer needs, committed when the block ends."""
    floor = f"UPDATE ragtrail_schema SET version = {NEWER}, compatible_from = {NEWER}"
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")  # SQLite's write lock, as the writer takes it
            conn.execute(floor)
            yield
            conn.execute("COMMIT")
        finally:
            conn.close()
        return
    engine = create_engine(url)
    try:
        with engine.begin() as sa_conn:
            sa_conn.execute(text(floor))
            sa_conn.execute(text("LOCK TABLE ragtrail_ring IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def _waits_briefly(url: str) -> dict[str, Any]:
    """Engine options so that a write waiting on another transaction's lock fails quickly."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 0.2}}
    return {"connect_args": {"options": "-c lock_timeout=200"}}


def test_writer_looks_at_the_floor_again_after_a_failed_write(
        backend_url: str, store_factory: Callable[..., AuditStore]) -> None:
    """A write that fails (here: on a migration's lock) has the writer read the version row
    before its next attempt, without waiting for the interval: what the migration locked
    out is not written once it committed a higher floor."""
    store = store_factory(backend_url, engine_options=_waits_briefly(backend_url))
    assert store._writer.committer.floor.interval_s == FLOOR_RECHECK_S
    record_some(store, 1)
    assert store.flush(10)
    with migration_holding_locks(backend_url):
        record_some(store, 3)
        wait_for(lambda: store.health().status == "failing")
    assert not store.flush(10)
    health = store.health()
    assert (health.written, health.dropped) == (1, 3)
    assert rows(backend_url, "ragtrail_spans") == 1


def test_version_row_is_read_once_an_interval_not_for_each_batch(
        backend_url: str, store_factory: Callable[..., AuditStore]) -> None:
    """Cheap in the writer: one single-row SELECT per interval, however many batches."""
    store = store_factory(backend_url)
    statements: list[str] = []

    def seen(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    look_every(store, 3600.0)
    for _ in range(20):
        record_some(store, 2)
        assert store.flush(10)
    reads = [s for s in statements if "ragtrail_schema" in s]
    assert len(reads) == 1
    assert "LIMIT" in reads[0].upper()


@contextmanager
def out_of_reach(request: pytest.FixtureRequest, url: str) -> Iterator[None]:
    """The database cannot be written in the block (a SQLite file another process holds
    locked, a PostgreSQL server stopped), and can again once it ends."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    server = request.getfixturevalue("postgres_server")
    server.stop()
    try:
        yield
    finally:
        server.start()


def test_writer_that_could_not_reach_the_store_at_start_is_shut_out_by_the_floor_too(
        request: pytest.FixtureRequest, backend_url: str,
        store_factory: Callable[..., AuditStore], caplog: pytest.LogCaptureFixture) -> None:
    """A store opened while its database was out of reach leaves the schema check to its
    writer; a floor above this version found there stops the writer as it stops a running
    one (one ERROR, records dropped and counted, flush() False, health failing with the
    reason) instead of keeping the records queued and retrying, and a lowered floor lets it
    write again."""
    store_factory(backend_url).close()
    raise_floor(backend_url)
    caplog.set_level("INFO", logger="ragtrail.store")
    with out_of_reach(request, backend_url):
        store = store_factory(backend_url, engine_options=_waits_briefly(backend_url))
        opened = store.health()
        look_every(store, 0.0)
        record_some(store, 3)
    record_some(store, 2, events=1)
    assert not store.flush(10)

    assert opened.status == "degraded"  # not reached when it opened: no floor seen yet
    health = store.health()
    reason = (f"was written by a newer ragtrail (schema version {NEWER}, usable from schema "
              f"version {NEWER} on; this ragtrail has schema version {SCHEMA_VERSION})")
    assert (health.status, health.written, health.dropped, health.queue_depth) == \
        ("failing", 0, 6, 0)
    assert health.last_error is not None
    assert reason in health.last_error
    logged = errors(caplog)
    assert len(logged) == 1
    assert reason in logged[0]
    assert rows(backend_url, "ragtrail_spans") == 0
    assert stored_marks(backend_url) == (NEWER, NEWER)

    # Shut out, each look is one read of the version row, not the schema check (which
    # takes the write lock a newer release's writers need).
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: statements.append(statement))
    record_some(store, 1)
    assert not store.flush(10)
    reads = [s for s in statements if s.upper() not in {"BEGIN", "COMMIT", "ROLLBACK"}]
    assert len(reads) == 1
    assert reads[0].lstrip().upper().startswith("SELECT")
    assert "ragtrail_schema" in reads[0]

    run_sql(backend_url, f"UPDATE ragtrail_schema SET compatible_from = {SCHEMA_VERSION}")
    record_some(store, 2)
    assert store.flush(10)
    assert (store.health().written, store.health().dropped) == (2, 7)
    assert rows(backend_url, "ragtrail_spans") == 2
    assert stored_marks(backend_url) == (NEWER, SCHEMA_VERSION)
