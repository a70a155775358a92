"""The store's tables (SQLAlchemy Core), its schema version, and migrations between versions.

Every table name starts with ``ragtrail_`` so a store can share a PostgreSQL database with the
application. Times are BIGINT microseconds since the epoch, severities their ordered integer,
free-form mappings JSON text (portable, and the store never queries inside them).

Row IDs are assigned by the writer (``max(id) + 1`` under the ring's lock, see ``_write``), so
they are ordered by commit across processes: "newest first" is ``ORDER BY id DESC`` and the
ring drops the lowest IDs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    inspect,
    literal_column,
    select,
    text,
)
from sqlalchemy.exc import ProgrammingError

from ragtrail._records import Severity
from ragtrail.store._errors import NewerStoreError, StoreError, describe_error

__all__ = [
    "COMPATIBLE_FROM",
    "EVENTS",
    "HIGH_SEVERITY",
    "METRICS",
    "RING",
    "RINGS",
    "SCHEMA_VERSION",
    "SPANS",
    "VERSION",
    "WRITERS",
    "StoredVersion",
    "check_readable",
    "ensure_schema",
    "read_version",
    "refusal",
    "version_row",
]

SCHEMA_VERSION = 2
"""Bump with a new entry in ``_MIGRATIONS`` whenever a table changes."""

COMPATIBLE_FROM = 1
"""The oldest schema version whose code may still read and write a store of this version,
recorded in the store beside its version. An additive change (a new table, a nullable
column older code need not fill) keeps it; a change older code would break (a column it does
not fill, data it would misread) raises it to ``SCHEMA_VERSION``. Version 2 added
``ragtrail_writers``: a version-1 writer ignores it, so its own batches go unkeyed (a lost
COMMIT answer may store one of them twice, as version 1 always did) while other writers'
keys stay exact (each reads and writes its own row only); so 1."""

_WRITABLE_FROM = 1  # the oldest version this ragtrail still writes (without what came later)

log = logging.getLogger("ragtrail.store")

# SQLite makes ``INTEGER PRIMARY KEY`` (exactly that spelling) an alias of the rowid: the
# primary-key B-tree is the table itself, so inserts in ID order append and range deletes at
# the low end are cheap. BIGINT elsewhere.
_Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

VERSION = Table(
    "ragtrail_schema", metadata,
    Column("version", Integer, nullable=False),
    # COMPATIBLE_FROM of the code that made or migrated the store; NULL (or no column) in a
    # store from before the marker: only code of its version or newer may use it.
    Column("compatible_from", Integer),
)

EVENTS = Table(
    "ragtrail_events", metadata,
    Column("id", _Id, primary_key=True, autoincrement=False),
    Column("time_us", BigInteger, nullable=False),
    Column("event_type", String(), nullable=False),
    Column("severity", SmallInteger, nullable=False),
    Column("source", String(), nullable=False),
    Column("description", Text, nullable=False),
    Column("correlation_id", String()),
    Column("trace_id", String()),
    Column("span_id", String()),
    Column("metadata", Text, nullable=False),
    Column("service", String(), nullable=False),
    Column("host", String(), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("count", Integer, nullable=False),
)

SPANS = Table(
    "ragtrail_spans", metadata,
    Column("id", _Id, primary_key=True, autoincrement=False),
    Column("trace_id", String(), nullable=False),
    Column("span_id", String(), nullable=False),
    Column("parent_span_id", String()),
    Column("name", String(), nullable=False),
    Column("kind", String(), nullable=False),
    Column("start_us", BigInteger, nullable=False),
    Column("duration_us", BigInteger, nullable=False),
    Column("status", String(), nullable=False),
    Column("error_type", String()),
    Column("error_message", Text),
    Column("correlation_id", String()),
    Column("attributes", Text, nullable=False),
    Column("events", Text, nullable=False),
)

METRICS = Table(
    "ragtrail_metrics", metadata,
    Column("id", _Id, primary_key=True, autoincrement=False),
    Column("time_us", BigInteger, nullable=False),
    Column("cpu_percent", Float, nullable=False),
    Column("memory_percent", Float, nullable=False),
    Column("disk_usage_percent", Float, nullable=False),
    Column("net_sent_bytes_per_s", Float, nullable=False),
    Column("net_recv_bytes_per_s", Float, nullable=False),
    Column("active_connections", Integer, nullable=False),
    Column("queue_depth", Integer, nullable=False),
    Column("process_rss_bytes", BigInteger, nullable=False),
)

RING = Table(
    "ragtrail_ring", metadata,
    # One row per (table, bucket): bucket 0 holds the table's total and is the lock writers
    # take first; the events table also has one bucket per severity (its integer value).
    Column("ring", String(), primary_key=True),
    Column("bucket", SmallInteger, primary_key=True, autoincrement=False),
    Column("row_count", BigInteger, nullable=False),
    # Bucket 0 only: the last writer's capacity, and totals over the store's life (all
    # processes) of rows written, records dropped and events coalesced, for ``stats()``.
    Column("capacity", BigInteger, nullable=False, default=0),
    Column("written", BigInteger, nullable=False, default=0),
    Column("dropped", BigInteger, nullable=False, default=0),
    Column("coalesced", BigInteger, nullable=False, default=0),
)

WRITERS = Table(
    "ragtrail_writers", metadata,
    # One row per writer on a database server (see _ledger): the number of its last
    # committed batch, written in that batch's transaction, so a writer whose COMMIT went
    # unanswered can ask whether it committed. SQLite stores leave it empty.
    Column("writer", String(64), primary_key=True),
    Column("batch", BigInteger, nullable=False),
    Column("time_us", BigInteger, nullable=False),  # its last batch: idle rows are pruned
)

RINGS = {"events": EVENTS, "spans": SPANS, "metrics": METRICS}
"""The ring-buffered tables by the name used in ``ragtrail_ring`` and in ``ring_usage``."""

_HIGH = int(Severity.HIGH)

# (severity, id) serves the ring's per-severity trimming; the partial index on high and
# critical events makes "latest 100 events at or above high" read 100 index entries however
# many low events the table holds (benchmarks/bench_store.py: 2.5x faster at 0.5% high), and
# carries the severity so "at or above critical" filters without reading the table.
Index("ix_ragtrail_events_severity_id", EVENTS.c.severity, EVENTS.c.id)
Index("ix_ragtrail_events_high_id", EVENTS.c.id, EVENTS.c.severity,
      sqlite_where=EVENTS.c.severity >= _HIGH, postgresql_where=EVENTS.c.severity >= _HIGH)
Index("ix_ragtrail_events_type_id", EVENTS.c.event_type, EVENTS.c.id)
Index("ix_ragtrail_events_correlation", EVENTS.c.correlation_id)
Index("ix_ragtrail_spans_trace", SPANS.c.trace_id)
Index("ix_ragtrail_spans_correlation", SPANS.c.correlation_id)
Index("ix_ragtrail_spans_name_id", SPANS.c.name, SPANS.c.id)

HIGH_SEVERITY = _HIGH
"""The threshold of the partial index; queries at or above it repeat it so SQLite uses it."""


class StoredVersion(NamedTuple):
    """A store's schema version, and the oldest version of code that may use it (None: the
    store does not say, so only code of its version or newer may)."""

    version: int
    compatible_from: int | None


def read_version(conn: Connection) -> StoredVersion | None:
    """The stored schema version, or None when this database holds no ragtrail store."""
    if not inspect(conn).has_table(VERSION.name):
        return None
    return version_row(conn)


def version_row(conn: Connection) -> StoredVersion | None:
    """``ragtrail_schema``'s row in one SELECT, without inspecting the table (a running
    writer asks again every ``FLOOR_RECHECK_S``): ``*`` because a store migrated without the
    floor has no such column."""
    row = conn.execute(select(literal_column("*")).select_from(VERSION)
                       .order_by(VERSION.c.version.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    floor = row.get(VERSION.c.compatible_from.name)
    return StoredVersion(int(row[VERSION.c.version.name]), None if floor is None else int(floor))


def check_readable(stored: StoredVersion | None, where: str) -> None:
    """Refuse what a reader cannot read: no store at all, or one of a newer ragtrail that
    older code may not use."""
    if stored is None:
        raise StoreError(f"{where} is not a ragtrail store (no {VERSION.name} table)")
    _check_newer(stored, where)


def _check_newer(stored: StoredVersion, where: str) -> None:
    """A store of a newer ragtrail is used as it is if it says code of this version may (a
    rollback, or an older replica still starting during a rolling deploy), else refused."""
    refused = refusal(stored, where)
    if refused is not None:
        raise NewerStoreError(refused)
    version, floor = stored
    if version > SCHEMA_VERSION:
        log.info("ragtrail audit store %s has schema version %d, newer than this ragtrail's "
                 "%d, and may be used by ragtrail from schema version %d on: it is read and "
                 "written as it is", where, version, SCHEMA_VERSION, floor)


def refusal(stored: StoredVersion, where: str) -> str | None:
    """Why this ragtrail may not use ``stored`` (newer, and its floor above this version or
    not recorded), or None when it may."""
    version, floor = stored
    if version <= SCHEMA_VERSION or (floor is not None and floor <= SCHEMA_VERSION):
        return None
    usable = "" if floor is None else f", usable from schema version {floor} on"
    return (f"{where} was written by a newer ragtrail (schema version {version}{usable}; this "
            f"ragtrail has schema version {SCHEMA_VERSION}); upgrade ragtrail to use it")


def ensure_schema(conn: Connection, capacities: dict[str, int], where: str) -> None:
    """Create the store, or migrate an older one, inside the caller's (locked) transaction."""
    stored = read_version(conn)
    if stored is None:
        if inspect(conn).has_table(EVENTS.name):
            raise StoreError(f"{where} has a {EVENTS.name} table but no {VERSION.name} table; "
                             "it was not created by ragtrail")
        metadata.create_all(conn)
        conn.execute(VERSION.insert().values(version=SCHEMA_VERSION,
                                             compatible_from=COMPATIBLE_FROM))
        _count_rings(conn)
    else:
        _check_newer(stored, where)
        if stored.version < SCHEMA_VERSION:
            _migrate(conn, stored.version, where)
    for ring, capacity in capacities.items():
        conn.execute(RING.update().where(RING.c.ring == ring, RING.c.bucket == 0)
                     .values(capacity=capacity))


def _migrate(conn: Connection, version: int, where: str) -> None:
    """Migrate ``version`` to the current one; a role that may not create tables (the app's
    role with SELECT/INSERT/UPDATE/DELETE only, as docs/scaling.md suggests) keeps writing a
    store this ragtrail can still write, until a role that may starts ragtrail on it."""
    try:
        with conn.begin_nested():  # a savepoint: PostgreSQL aborts a transaction on error
            for step in range(version, SCHEMA_VERSION):
                _MIGRATIONS[step](conn)
            floor = {"compatible_from": COMPATIBLE_FROM} if _floor_column(conn, where) else {}
            conn.execute(VERSION.delete())
            conn.execute(VERSION.insert().values(version=SCHEMA_VERSION, **floor))
    except ProgrammingError as exc:  # e.g. InsufficientPrivilege: permission denied for schema
        if version < _WRITABLE_FROM:
            raise
        log.warning("ragtrail audit store %s is at schema version %d and this database role "
                    "cannot migrate it to %d (%s); it is written as version %d until a role "
                    "that may create tables starts ragtrail on it", where, version,
                    SCHEMA_VERSION, describe_error(exc), version)


def _floor_column(conn: Connection, where: str) -> bool:
    """Give ``ragtrail_schema`` the floor's column; False if this role may not alter the
    table (on PostgreSQL only its owner may, where a role that may create tables migrates):
    the store is then migrated without a floor, which only this version and later use."""
    try:
        with conn.begin_nested():
            _add_column(conn, VERSION, VERSION.c.compatible_from.name)
    except ProgrammingError as exc:
        log.warning("ragtrail audit store %s: this database role cannot add %s.%s (%s); "
                    "the store is migrated without the compatibility floor", where,
                    VERSION.name, VERSION.c.compatible_from.name, describe_error(exc))
        return False
    return True


def _add_column(conn: Connection, table: Table, column: str, constraint: str = "") -> None:
    """Add ``table``'s ``column`` as the metadata declares it, unless the store has it (the
    marker column, for one, comes with whichever migration runs first)."""
    if column not in {c["name"] for c in inspect(conn).get_columns(table.name)}:
        kind = table.c[column].type.compile(conn.dialect)
        conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column} {kind} "
                          f"{constraint}".rstrip()))


def _count_rings(conn: Connection) -> None:
    """(Re)build ``ragtrail_ring`` from the tables: a one-off O(table) count at creation or
    migration; from then on writers keep it exact in the same transactions as their rows."""
    conn.execute(RING.delete())
    rows: list[dict[str, object]] = []
    for ring, table in RINGS.items():
        total = conn.execute(select(func.count()).select_from(table)).scalar() or 0
        rows.append({"ring": ring, "bucket": 0, "row_count": total})
    by_severity = {int(level): int(n) for level, n in conn.execute(
        select(EVENTS.c.severity, func.count()).group_by(EVENTS.c.severity))}
    rows += [{"ring": "events", "bucket": int(level), "row_count": by_severity.get(level, 0)}
             for level in Severity]
    conn.execute(RING.insert(), rows)


def _v0_to_v1(conn: Connection) -> None:
    """Version 0 (before 0.1.0) had no coalescing count, no span events and no ring table."""
    for table, column, default in ((EVENTS, "count", "1"), (SPANS, "events", "'[]'")):
        _add_column(conn, table, column, f"NOT NULL DEFAULT {default}")
    RING.create(conn, checkfirst=True)
    for table in RINGS.values():
        for index in table.indexes:
            index.create(conn, checkfirst=True)
    _count_rings(conn)


def _v1_to_v2(conn: Connection) -> None:
    """Version 2 added ``ragtrail_writers``: batch keys, so a lost COMMIT answer is not a
    reason to write a batch twice."""
    WRITERS.create(conn, checkfirst=True)


_MIGRATIONS: dict[int, Callable[[Connection], None]] = {0: _v0_to_v1, 1: _v1_to_v2}
