"""One batch, one transaction: rows built with their IDs in one pass, appended to the rings.

SQLite inserts go straight to the driver's ``executemany`` on the pooled connection (SQLAlchemy
Core's insert measured 0.59x of raw ``sqlite3`` here, issue 2); other databases use Core's
``insert()``, which batches with "insertmanyvalues" on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam
from sqlalchemy.dialects import sqlite

from ragtrail._records import MetricsSample, SecurityEvent, SpanRecord
from ragtrail.store._coalesce import Coalescer, Slot
from ragtrail.store._engine import WRITE, Target
from ragtrail.store._json import encode_utf8
from ragtrail.store._reports import RingUsage
from ragtrail.store._ring import RingTable
from ragtrail.store._rows import Row, RowBuilder
from ragtrail.store._schema import EVENTS, RINGS

__all__ = ["Batch", "BatchWriter", "Flush"]


class Flush:
    """A marker in the queue: set once everything queued before it is committed (or lost)."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False

    def finish(self, ok: bool) -> None:
        self.ok = ok
        self.done.set()


@dataclass
class Batch:
    """Records taken from the queue, kept as they are across retries.

    Rows are built inside the transaction, once the next IDs are known, in one pass; a record
    that cannot be built fails the transaction like a row the database refuses, and the
    writer retries the batch one record at a time with ``strict`` rows to find it.
    """

    events: list[SecurityEvent | Slot] = field(default_factory=list)  # Slot: an overflow row
    spans: list[SpanRecord] = field(default_factory=list)
    metrics: list[MetricsSample] = field(default_factory=list)
    flushes: list[Flush] = field(default_factory=list)
    strict: bool = False
    others: int = 0  # queued things that are not records (dropped)

    @property
    def records(self) -> int:
        return len(self.events) + len(self.spans) + len(self.metrics)

    @property
    def ring(self) -> str:
        """The ring of a one-record batch (for counting it when it is dropped)."""
        return "events" if self.events else "spans" if self.spans else "metrics"


class _SqliteInsert:
    """Rows into SQLite by the driver: spans as one statement per batch, the rest row by row.

    ``sqlite3`` releases the GIL around every row it steps. Under a server the event loop
    takes it each time, and the writer then waits for the loop's next socket call to get it
    back: 2.3-2.9 context switches and 50-110 us of CPU per request under uvicorn, for 6.5 us
    of SQLite work. Spans, one or more per request, go in as one JSON array expanded by
    SQLite's ``json_each`` in one step: 0.2 switches per request, 26% more requests per
    second and 22% less CPU per request (BENCHMARKS.md). It costs more CPU per row when
    nothing else wants the GIL (a bulk load: 10 against 6.5 us), so events and metrics, which
    come in bursts or rarely, stay row by row, and so do SQLite without JSON functions. Large
    spans (captured values) go 16 to a multi-row ``VALUES`` statement: the same CPU as row by
    row in a bulk load, but 16 times fewer GIL hand-offs, which let the writer keep up with a
    RAG-shaped endpoint under uvicorn (BENCHMARKS.md). For events a multi-row statement cost
    a third of the bulk throughput, so they stay with ``executemany``.
    """

    def __init__(self) -> None:
        self._json_ok: bool | None = None  # does this SQLite have json_each? asked once

    def __call__(self, conn: Connection, table: Table, rows: list[Row]) -> None:
        driver = conn.connection.driver_connection
        json_insert = _SQLITE_JSON_INSERTS.get(table.name)
        if json_insert is not None and len(rows) > 1 and self._has_json(driver):
            # SQLite 3.40 parses a row's JSON once per column: spans with large captured
            # values (2 KB: 37-43 against 16-18 us each) are cheaper as bound values.
            small: list[Row] = []
            large: list[Row] = []
            for row in rows:
                (small if _span_json_chars(row) <= _MAX_SPAN_JSON_CHARS else large).append(row)
            payload = _encode_rows(small) if len(small) > 1 else None
            if payload is not None:
                driver.execute(json_insert, (payload,))  # type: ignore[union-attr]
                rows = large
            rows = _insert_whole_chunks(driver, table, rows)
        if rows:
            driver.executemany(_SQLITE_INSERTS[table.name], rows)  # type: ignore[union-attr]

    def _has_json(self, driver: Any) -> bool:
        if self._json_ok is None:
            try:
                driver.execute(
                    "SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')").fetchall()
                self._json_ok = True
            except sqlite3.OperationalError:  # built without JSON functions (before 3.38)
                self._json_ok = False
        return self._json_ok


_MAX_SPAN_JSON_CHARS = 768  # a request span's attributes: 200-400; a captured retrieval: 2-3 K
_ROWS_PER_STATEMENT = 16  # x 14 span columns: far below SQLite's oldest limit of 999 variables


def _insert_whole_chunks(driver: Any, table: Table, rows: list[Row]) -> list[Row]:
    """Insert ``rows`` 16 to a statement; returns the remainder (fewer than 16) not inserted."""
    whole = len(rows) - len(rows) % _ROWS_PER_STATEMENT
    if whole:
        statement = _SQLITE_MULTI_ROW_INSERTS[table.name]
        for start in range(0, whole, _ROWS_PER_STATEMENT):
            driver.execute(statement,
                           tuple(chain.from_iterable(rows[start:start + _ROWS_PER_STATEMENT])))
    return rows[whole:]


def _span_json_chars(row: Row) -> int:
    """The length of a span row's JSON-text columns (attributes, events), its bulk."""
    return len(row[_SPAN_ATTRIBUTES]) + len(row[_SPAN_EVENTS])


def _encode_rows(rows: list[Row]) -> str | None:
    """Span rows (text, integers, None) as a JSON array of arrays, or None if JSON would not
    carry them as they are (a NUL, a lone surrogate): those go as bound values.

    Never ``\\u`` escapes for what is not ASCII: SQLite would turn an escaped lone surrogate
    into invalid UTF-8 in the file. Unescaped, it fails the statement as a bound value does,
    and the writer's one-by-one retry finds the record."""
    try:
        text = encode_utf8(rows)
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
        return None
    # SQLite's JSON functions cut text at an escaped NUL; a bound value keeps it.
    return None if "\\u0000" in text else text


# Compiled once by SQLAlchemy for SQLite: "INSERT INTO t (every column) VALUES (?, ...)".
_SQLITE_INSERTS = {table.name: str(table.insert().compile(dialect=sqlite.dialect()))
                   for table in RINGS.values()}


def _json_each_insert(table: Table) -> str:
    """INSERT ... SELECT from a JSON array of row arrays; json_extract (SQLite 3.9+ with JSON1,
    built in since 3.38) rather than ``->>`` (3.38+). Names come from the schema only."""
    columns = ", ".join(c.name for c in table.columns)
    values = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(table.columns)))
    return f"INSERT INTO {table.name} ({columns}) SELECT {values} FROM json_each(?)"  # noqa: S608


def _multi_row_insert(single_row: str) -> str:
    """A single-row ``INSERT ... VALUES (?, ...)`` with its row of placeholders repeated
    ``_ROWS_PER_STATEMENT`` times."""
    head, _, row = single_row.partition(" VALUES ")
    return f"{head} VALUES " + ", ".join([row] * _ROWS_PER_STATEMENT)


_SQLITE_JSON_INSERTS = {RINGS["spans"].name: _json_each_insert(RINGS["spans"])}
_SQLITE_MULTI_ROW_INSERTS = {name: _multi_row_insert(_SQLITE_INSERTS[name])
                             for name in _SQLITE_JSON_INSERTS}
_SPAN_ATTRIBUTES, _SPAN_EVENTS = (list(RINGS["spans"].columns.keys()).index(name)
                                  for name in ("attributes", "events"))


def _core_insert(conn: Connection, table: Table, rows: list[Row]) -> None:
    names = [c.name for c in table.columns]
    conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in rows])


class BatchWriter:
    """Builds batches and writes each in one transaction; runs on the writer thread only."""

    def __init__(self, engine: Engine, target: Target, capacities: Mapping[str, int],
                 coalescer: Coalescer) -> None:
        self.engine = engine
        self.coalescer = coalescer
        self.rings = {name: RingTable(name, RINGS[name], capacities[name]) for name in RINGS}
        self.strict = RowBuilder(strict=True, strip_nul=not target.is_sqlite)
        self.builder = RowBuilder(strict=False, strip_nul=False) if target.is_sqlite \
            else self.strict
        self.insert = _SqliteInsert() if target.is_sqlite else _core_insert
        self._add_count = EVENTS.update().where(EVENTS.c.id == bindparam("row_id")).values(
            count=EVENTS.c.count + bindparam("n"))

    def sort(self, items: Iterable[object]) -> Batch:
        batch = Batch()
        kinds: dict[type, list[Any]] = {SecurityEvent: batch.events, Slot: batch.events,
                                        SpanRecord: batch.spans, MetricsSample: batch.metrics,
                                        Flush: batch.flushes}
        for item in items:
            kind = kinds.get(type(item))
            if kind is None:  # a subclass of a record type, or not a record at all
                kind = next((found for cls, found in kinds.items() if isinstance(item, cls)),
                            None)
            if kind is None:
                batch.others += 1
            else:
                kind.append(item)
        return batch

    @staticmethod
    def singles(batch: Batch) -> list[Batch]:
        """One strict batch per record, for finding the records a database refuses."""
        return ([Batch(events=[slot], strict=True) for slot in batch.events]
                + [Batch(spans=[rec], strict=True) for rec in batch.spans]
                + [Batch(metrics=[rec], strict=True) for rec in batch.metrics])

    def write(self, batch: Batch, dropped: Mapping[str, int]) -> dict[str, RingUsage]:
        """Commit ``batch`` plus pending coalesced repeats; returns the rings' usage after it.

        ``dropped`` (records lost since the last commit, by ring) is added to the lifetime
        totals. On failure nothing is committed and the coalescer's state is restored, so the
        same batch can be written again.
        """
        dirty = self.coalescer.take_dirty()
        undo: list[tuple[Slot, int | None, int]] = []  # slots to restore if this fails
        # Events whose windows learn their rows once committed, and those rows: two lists, as
        # (event, row) pairs would be tracked objects outliving young collections by thousands.
        fresh: tuple[list[SecurityEvent], list[int]] = ([], [])
        pool = self.engine.pool
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                try:
                    with conn.begin():
                        usage = self._write(conn, batch, dirty, dropped, undo, fresh)
                except BaseException:
                    # The retry gets a new connection: no session state (a pragma, a broken
                    # socket, an aborted transaction) survives a fault.
                    conn.invalidate()
                    raise
                if self.engine.pool is not pool:
                    # close() disposed the pool while this write was stuck (a hung server):
                    # the old pool would drop the connection unclosed, so close it here.
                    conn.invalidate()
        except BaseException:
            for slot, row_id, applied in reversed(undo):
                slot.row_id, slot.applied = row_id, applied
            self.coalescer.restore_dirty(dirty)
            raise
        self.coalescer.written(*fresh)
        return usage

    def _write(self, conn: Connection, batch: Batch, dirty: list[Slot],
               dropped: Mapping[str, int], undo: list[tuple[Slot, int | None, int]],
               fresh: tuple[list[SecurityEvent], list[int]]) -> dict[str, RingUsage]:
        builder = self.strict if batch.strict else self.builder
        usage: dict[str, RingUsage] = {}
        updates, repeats, later = self._repeats(dirty, undo)
        events = self.rings["events"]
        if batch.events or updates or dropped.get("events"):
            row_id, counts = events.open(conn, bool(batch.events))
            rows: list[Row] = []
            build, promoted = builder.event, self.coalescer.promoted
            fresh_events, fresh_rows = fresh
            for item in batch.events:
                if type(item) is Slot:  # an overflow row, with its own window
                    slot: Slot | None = item
                    event = cast(SecurityEvent, item.event)
                else:
                    event = cast(SecurityEvent, item)
                    slot = promoted(event)  # repeats came before the event was written
                    fresh_events.append(event)
                    fresh_rows.append(row_id)
                if slot is None:
                    rows.append(build(event, row_id, 1))
                else:
                    hits = slot.hits  # repeats so far go into the inserted row's count
                    undo.append((slot, slot.row_id, slot.applied))
                    slot.row_id, slot.applied = row_id, hits
                    rows.append(build(event, row_id, 1 + hits))
                    repeats += hits
                row_id += 1
            if rows:
                self.insert(conn, events.table, rows)
            if updates:
                conn.execute(self._add_count, updates)
            stored = events.close(conn, counts, [row[3] for row in rows], len(rows),
                                  dropped=dropped.get("events", 0), coalesced=repeats)
            usage["events"] = RingUsage(stored, events.capacity)
        for name, records, build_row in (("spans", batch.spans, builder.span),
                                         ("metrics", batch.metrics, builder.metrics)):
            if records or dropped.get(name):
                ring = self.rings[name]
                first, counts = ring.open(conn, bool(records))
                if records:
                    self.insert(conn, ring.table, [build_row(rec, first + i)  # type: ignore[arg-type]
                                                   for i, rec in enumerate(records)])
                stored = ring.close(conn, counts, (), len(records),
                                    dropped=dropped.get(name, 0))
                usage[name] = RingUsage(stored, ring.capacity)
        if later:
            self.coalescer.restore_dirty(later)
        return usage

    def _repeats(self, dirty: list[Slot], undo: list[tuple[Slot, int | None, int]],
                 ) -> tuple[list[dict[str, Any]], int, list[Slot]]:
        """``count`` updates for stored rows with new repeats; slots not stored yet wait."""
        updates: list[dict[str, Any]] = []
        repeats = 0
        later: list[Slot] = []
        for slot in dirty:
            if slot.row_id is None:  # its event is still in the queue: a later batch
                later.append(slot)
                continue
            hits = slot.hits
            if slot.row_id == -1 or hits <= slot.applied:
                continue
            undo.append((slot, slot.row_id, slot.applied))
            updates.append({"row_id": slot.row_id, "n": hits - slot.applied})
            repeats += hits - slot.applied
            slot.applied = hits
        return updates, repeats, later
