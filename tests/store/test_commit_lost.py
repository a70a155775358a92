"""A batch whose COMMIT went unanswered on PostgreSQL is stored exactly once.

A failover, a server crash or a network cut right after the client sent COMMIT leaves it not
knowing whether the server committed. The writer used to take that as a failure and send the
batch again: every row stored twice, coalesced counts raised twice, the stored totals
inflated. Each batch now writes its number to ``ragtrail_writers`` in the same transaction,
and the writer reads it back before it sends anything again. A loopback proxy
(``commit_cutter``) cuts the connection at the exact moment, reading the protocol.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from commit_cutter import CommitCutter
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from store_helpers import make_event, make_span, now_us, wait_for
from store_v1 import create_version_1_store

from ragtrail._records import Severity
from ragtrail.health import StoreCheck
from ragtrail.store import AuditStore

pytestmark = pytest.mark.postgres

EVENTS, SPANS, REPEATS, OVERFLOW = 50, 50, 10, 7
CHILD = Path(__file__).with_name("store_child.py")


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


@pytest.fixture
def cutter(postgres_server: Any) -> Iterator[CommitCutter]:
    with CommitCutter(postgres_server.port) as proxy:
        yield proxy


@pytest.mark.parametrize(("after_server", "refused"), [
    pytest.param(True, 0, id="server-committed"),
    pytest.param(False, 0, id="server-never-got-it"),
    pytest.param(True, 3, id="server-committed-then-away-a-while"),
])
def test_a_batch_whose_commit_answer_is_lost_is_stored_once(
        postgres_db_url: str, cutter: CommitCutter, store_factory: Callable[..., AuditStore],
        after_server: bool, refused: int) -> None:
    """Rows once each, the coalesced row's count and the stored totals (written, dropped,
    coalesced) exact, and health() saying what is stored, whether or not the server had
    committed, and when it cannot be asked at once."""
    store = store_factory(cutter.url(postgres_db_url), event_coalesce_seconds=60,
                          batch_linger_seconds=60, queue_size=EVENTS + SPANS)
    flood = {"event_type": "flood", "severity": Severity.HIGH, "source": "one"}
    store.record(make_event(**flood))
    assert store.flush(10)
    cutter.cut_next_commit(after_server=after_server, then_refuse=refused)
    for i in range(EVENTS):  # one batch: the writer lingers until flush()
        store.record(make_event(description=f"e{i}"))
        store.record(make_span(name=f"s{i}"))
    for _ in range(REPEATS):  # into the stored row's count, by UPDATE
        store.record(make_event(**flood))
    for _ in range(OVERFLOW):  # the queue is full: dropped, counted in the same transaction
        store.record(make_span())
    assert store.flush(30)
    assert cutter.cuts == 1

    assert query(postgres_db_url, "SELECT count(*), count(DISTINCT description) "
                                  "FROM ragtrail_events") == [(EVENTS + 1, EVENTS + 1)]
    assert query(postgres_db_url, "SELECT count(*), count(DISTINCT name) "
                                  "FROM ragtrail_spans") == [(SPANS, SPANS)]
    assert query(postgres_db_url, "SELECT count FROM ragtrail_events "
                                  "WHERE event_type = 'flood'") == [(1 + REPEATS,)]
    totals = query(postgres_db_url, "SELECT ring, row_count, written, dropped, coalesced "
                                    "FROM ragtrail_ring WHERE bucket = 0 ORDER BY ring")
    assert totals == [("events", EVENTS + 1, EVENTS + 1, 0, REPEATS),
                      ("metrics", 0, 0, 0, 0),
                      ("spans", SPANS, SPANS, OVERFLOW, 0)]
    health = store.health()
    assert (health.written, health.dropped, health.coalesced) == (
        EVENTS + 1 + SPANS, OVERFLOW, REPEATS)
    assert health.ring_usage["events"].rows == EVENTS + 1
    assert health.ring_usage["spans"].rows == SPANS


def test_a_commit_lost_while_a_refused_record_is_isolated(
        postgres_db_url: str, cutter: CommitCutter,
        store_factory: Callable[..., AuditStore]) -> None:
    """A batch the server refuses is written again a record at a time; when one of those
    commits goes unanswered, what is retried next leaves that record out once it is known
    to be stored."""
    store = store_factory(cutter.url(postgres_db_url), batch_linger_seconds=60)
    store.record(make_span())
    assert store.flush(10)
    cutter.cut_next_commit(after_server=True)  # the batch fails before COMMIT: the first
    for i in range(10):                        # record committed alone is cut
        store.record(make_span(name=f"s{i}"))
    store.record(make_span(name="too long", duration_us=2**63))  # over BIGINT: refused
    for i in range(10, 20):
        store.record(make_span(name=f"s{i}"))
    assert store.flush(30)
    assert cutter.cuts == 1
    assert query(postgres_db_url, "SELECT count(*), count(DISTINCT name) "
                                  "FROM ragtrail_spans") == [(21, 21)]
    assert query(postgres_db_url, "SELECT written, dropped FROM ragtrail_ring "
                                  "WHERE ring = 'spans' AND bucket = 0") == [(21, 1)]
    health = store.health()
    assert (health.written, health.dropped) == (21, 1)


def test_a_record_recorded_twice_is_stored_twice_across_a_lost_commit(
        postgres_db_url: str, cutter: CommitCutter,
        store_factory: Callable[..., AuditStore]) -> None:
    """The same record object recorded twice is two rows, also when the commit of one of
    them, alone while a refused record is isolated, goes unanswered: taking the stored copy
    out of what is retried leaves the other."""
    store = store_factory(cutter.url(postgres_db_url), batch_linger_seconds=60)
    store.record(make_span())
    assert store.flush(10)
    cutter.cut_next_commit(after_server=True)  # the first record committed alone is cut
    twice = make_span(name="twice")
    store.record(twice)
    store.record(twice)
    store.record(make_span(name="too long", duration_us=2**63))  # over BIGINT: refused
    store.record(make_span(name="after"))
    assert store.flush(30)
    assert cutter.cuts == 1
    assert query(postgres_db_url, "SELECT name, count(*) FROM ragtrail_spans "
                                  "GROUP BY name ORDER BY name") == [
        ("after", 1), ("op", 1), ("twice", 2)]
    assert (store.health().written, store.health().dropped) == (4, 1)


def test_a_lost_commit_among_other_writer_processes(
        postgres_db_url: str, cutter: CommitCutter,
        store_factory: Callable[..., AuditStore]) -> None:
    """Three other processes (gunicorn workers) write the same tables meanwhile: each has
    its own row, and every total is the sum of what each wrote, once."""
    store = store_factory(cutter.url(postgres_db_url), batch_linger_seconds=60)
    store.record(make_span())
    assert store.flush(10)
    children = [subprocess.Popen([sys.executable, str(CHILD), postgres_db_url, str(w), "300",
                                  "close"], stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "STORE_CHILD_OPTIONS": '{"batch_size": 20}'})
                for w in range(3)]
    cutter.cut_next_commit(after_server=True)
    for i in range(100):
        store.record(make_span(name=f"p{i}"))
    assert store.flush(30)
    for child in children:
        _out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    assert cutter.cuts == 1
    assert query(postgres_db_url, "SELECT count(*), count(DISTINCT (name, span_id)), "
                                  "count(DISTINCT id) FROM ragtrail_spans") == [(1001,) * 3]
    assert query(postgres_db_url, "SELECT ring, row_count, written FROM ragtrail_ring "
                                  "WHERE bucket = 0 AND ring <> 'metrics' ORDER BY ring") == [
        ("events", 900, 900), ("spans", 1001, 1001)]
    assert query(postgres_db_url, "SELECT count(DISTINCT writer) FROM ragtrail_writers") == [
        (4,)]
    assert store.health().written == 101


def test_every_writer_keys_its_batches_under_its_own_name(
        postgres_db_url: str, store_factory: Callable[..., AuditStore]) -> None:
    """A restarted store and a forked child (gunicorn --preload) never reuse a writer's
    name, or one could take another's batch for its own."""
    from forking import output_of_forked_child

    first = store_factory(postgres_db_url)
    first.record(make_span())
    assert first.flush(10)

    def child() -> str:
        first.record(make_span())
        return "flushed" if first.flush(10) else "not flushed"

    assert output_of_forked_child(child) == "flushed"
    first.record(make_span())
    assert first.flush(10)
    first.close()
    second = store_factory(postgres_db_url)
    second.record(make_span())
    assert second.flush(10)
    writers = query(postgres_db_url, "SELECT writer, batch FROM ragtrail_writers")
    assert len(writers) == 3  # the parent, its child, the second store
    assert sorted(batch for _, batch in writers) == [1, 1, 2]


def test_rows_of_writers_idle_for_a_day_are_pruned(
        postgres_db_url: str, store_factory: Callable[..., AuditStore]) -> None:
    """Crashed processes leave their rows; the next writer to start deletes those idle for a
    day, and keeps the others."""
    store_factory(postgres_db_url).close()  # creates the store
    day_us = 86_400 * 1_000_000
    engine = create_engine(postgres_db_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO ragtrail_writers VALUES ('gone', 7, :old), "
                          "('alive', 9, :recent)"),
                     {"old": now_us() - day_us - 60_000_000, "recent": now_us() - day_us // 2})
    engine.dispose()
    store = store_factory(postgres_db_url)
    store.record(make_span())
    assert store.flush(10)
    names = {name for (name,) in query(postgres_db_url, "SELECT writer FROM ragtrail_writers")}
    assert "gone" not in names
    assert "alive" in names
    assert len(names) == 2


# -- a role with SELECT/INSERT/UPDATE/DELETE only, on a store its owner made -----------------

@pytest.fixture
def roles(postgres_db_url: str, postgres_server: Any) -> Iterator[dict[str, str]]:
    """URLs of the database for a new owner role and an app role without CREATE."""
    suffix = secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    owner, app = f"owner_{suffix}", f"app_{suffix}"
    database = make_url(postgres_db_url).database
    for role in (owner, app):
        postgres_server.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    postgres_server.execute(f'ALTER DATABASE "{database}" OWNER TO {owner}')
    urls = {role: make_url(postgres_db_url).set(username=name, password=password)
            .render_as_string(hide_password=False)
            for role, name in (("owner", owner), ("app", app))}
    yield urls
    postgres_server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    for role in (app, owner):
        postgres_server.execute(f"DROP ROLE IF EXISTS {role}")


def grant_rows(owner_url: str, app_url: str) -> None:
    app = make_url(app_url).username
    engine = create_engine(owner_url)
    with engine.begin() as conn:
        conn.execute(text("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
                          f"TO {app}"))
    engine.dispose()


def test_an_app_role_with_row_privileges_keys_its_batches(
        roles: dict[str, str], cutter: CommitCutter,
        store_factory: Callable[..., AuditStore]) -> None:
    """The documented set-up: the owner creates the store, the app's role may only read and
    write rows; its batches are keyed, and a lost COMMIT answer still stores them once."""
    store_factory(roles["owner"]).close()
    grant_rows(roles["owner"], roles["app"])
    store = store_factory(cutter.url(roles["app"]), batch_linger_seconds=60)
    store.record(make_span())
    assert store.flush(10)
    cutter.cut_next_commit(after_server=True)
    for _ in range(20):
        store.record(make_span())
    assert store.flush(30)
    assert cutter.cuts == 1
    assert query(roles["owner"], "SELECT count(*) FROM ragtrail_spans") == [(21,)]
    assert query(roles["owner"], "SELECT batch FROM ragtrail_writers") == [(2,)]
    assert store.health().written == 21


def test_a_version_1_store_the_app_role_cannot_migrate_is_still_written(
        roles: dict[str, str], store_factory: Callable[..., AuditStore],
        caplog: pytest.LogCaptureFixture) -> None:
    """Upgrading ragtrail under a role that may not create tables: the store stays at
    version 1 and is written as before (without keys), with a warning saying why; once the
    owner has started ragtrail (migrated) and granted the new table, batches are keyed."""
    create_version_1_store(roles["owner"])
    grant_rows(roles["owner"], roles["app"])
    store = store_factory(roles["app"])
    store.record(make_span())
    assert store.flush(10)
    assert query(roles["owner"], "SELECT version FROM ragtrail_schema") == [(1,)]
    assert query(roles["owner"], "SELECT count(*) FROM ragtrail_spans") == [(3,)]
    assert "cannot migrate it to 2 (InsufficientPrivilege" in caplog.text
    assert "cannot use ragtrail_writers (UndefinedTable" in caplog.text
    store.close()

    store_factory(roles["owner"]).close()  # the owner's start migrates it
    assert query(roles["owner"], "SELECT version FROM ragtrail_schema") == [(2,)]
    caplog.clear()
    store = store_factory(roles["app"])  # not granted the new table yet: unkeyed
    store.record(make_span())
    assert store.flush(10)
    assert "cannot use ragtrail_writers (InsufficientPrivilege" in caplog.text
    store.close()

    grant_rows(roles["owner"], roles["app"])
    store = store_factory(roles["app"])
    store.record(make_span())
    assert store.flush(10)
    assert query(roles["owner"], "SELECT batch FROM ragtrail_writers") == [(1,)]
    assert query(roles["owner"], "SELECT count(*), max(id) FROM ragtrail_spans") == [(5, 5)]


def test_a_version_1_store_is_migrated_by_a_role_that_may_create_tables(
        roles: dict[str, str], store_factory: Callable[..., AuditStore],
        caplog: pytest.LogCaptureFixture) -> None:
    """The migration to version 2 takes CREATE on the schema (docs/scaling.md), not the
    ownership of ``ragtrail_schema``: an app role granted CREATE and the rows migrates a
    store its owner made, and keys its batches. Adding the floor's column to
    ``ragtrail_schema`` (only its owner may alter it) must not undo the whole migration."""
    create_version_1_store(roles["owner"])
    grant_rows(roles["owner"], roles["app"])
    engine = create_engine(roles["owner"])
    with engine.begin() as conn:
        conn.execute(text(f"GRANT CREATE ON SCHEMA public TO {make_url(roles['app']).username}"))
    engine.dispose()
    store = store_factory(roles["app"])
    store.record(make_span())
    assert store.flush(10)
    assert "cannot migrate" not in caplog.text
    assert "cannot add ragtrail_schema.compatible_from (InsufficientPrivilege" in caplog.text
    assert query(roles["owner"], "SELECT version FROM ragtrail_schema") == [(2,)]
    # the app role made the table, so only it may read it
    assert query(roles["app"], "SELECT batch FROM ragtrail_writers") == [(1,)]


@pytest.mark.parametrize("after_server", [
    pytest.param(True, id="server-committed"), pytest.param(False, id="server-never-got-it")])
def test_close_with_a_commit_in_doubt_counts_its_records_as_outcome_unknown(
        postgres_db_url: str, cutter: CommitCutter, store_factory: Callable[..., AuditStore],
        after_server: bool) -> None:
    """close() while the server stays unreachable after a COMMIT whose answer was lost: the
    batch may be stored, so its records are counted as of unknown outcome, not as dropped;
    the records queued behind it, never sent, are dropped."""
    store = store_factory(cutter.url(postgres_db_url), batch_linger_seconds=60)
    store.record(make_span())
    assert store.flush(10)
    cutter.cut_next_commit(after_server=after_server, then_refuse=1_000_000)
    for i in range(20):
        store.record(make_span(name=f"s{i}"))
    assert not store.flush(0)  # the writer takes the batch now, without lingering
    wait_for(lambda: cutter.cuts == 1)
    for _ in range(5):
        store.record(make_span(name="queued"))
    store.close(timeout=1)
    health = store.health()
    assert (health.written, health.dropped, health.outcome_unknown) == (1, 5, 20)
    assert "; dropped 5; outcome unknown 20;" in StoreCheck(store).check().output
    stored = 21 if after_server else 1
    assert query(postgres_db_url, "SELECT count(*) FROM ragtrail_spans") == [(stored,)]
