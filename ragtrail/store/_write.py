"""One batch, one transaction: rows built before the write lock, then appended to the rings.

SQLite inserts go straight to the driver's ``executemany`` on the pooled connection (SQLAlchemy
Core's insert measured 0.59x of raw ``sqlite3`` here, issue 2); other databases use Core's
``insert()``, which batches with "insertmanyvalues" on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam
from sqlalchemy.dialects import sqlite

from ragtrail._records import MetricsSample, SpanRecord
from ragtrail.store._coalesce import Coalescer, Slot
from ragtrail.store._engine import WRITE, Target
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
    """Items taken from the queue with their rows built; kept as is across retries."""

    events: list[tuple[Slot, Row, int]] = field(default_factory=list)  # slot, row, severity
    spans: list[tuple[SpanRecord, Row]] = field(default_factory=list)
    metrics: list[tuple[MetricsSample, Row]] = field(default_factory=list)
    flushes: list[Flush] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)  # unbuildable records by ring

    @property
    def records(self) -> int:
        return len(self.events) + len(self.spans) + len(self.metrics)


def _sqlite_insert(conn: Connection, table: Table, rows: list[Row]) -> None:
    sql = _SQLITE_INSERTS[table.name]
    conn.connection.driver_connection.executemany(sql, rows)  # type: ignore[union-attr]


# Compiled once by SQLAlchemy for SQLite: "INSERT INTO t (every column) VALUES (?, ...)".
_SQLITE_INSERTS = {table.name: str(table.insert().compile(dialect=sqlite.dialect()))
                   for table in RINGS.values()}


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
        self.insert = _sqlite_insert if target.is_sqlite else _core_insert
        self._add_count = EVENTS.update().where(EVENTS.c.id == bindparam("row_id")).values(
            count=EVENTS.c.count + bindparam("n"))

    def build(self, items: Iterable[object], *, strict: bool = False) -> Batch:
        """Rows for ``items``; a record that cannot become a row is rejected, not retried."""
        batch = Batch()
        builder = self.strict if strict else self.builder
        for item in items:
            try:
                if isinstance(item, Slot):
                    row = builder.event(item.event)
                    batch.events.append((item, row, row[2]))
                elif isinstance(item, SpanRecord):
                    batch.spans.append((item, builder.span(item)))
                elif isinstance(item, MetricsSample):
                    batch.metrics.append((item, builder.metrics(item)))
                elif isinstance(item, Flush):
                    batch.flushes.append(item)
                else:
                    batch.rejected["other"] = batch.rejected.get("other", 0) + 1
            except Exception:  # a hostile or broken record must not stop the writer
                ring = "events" if isinstance(item, Slot) else \
                    "spans" if isinstance(item, SpanRecord) else "metrics"
                batch.rejected[ring] = batch.rejected.get(ring, 0) + 1
                if isinstance(item, Slot):
                    self.coalescer.discard(item)
        return batch

    def singles(self, batch: Batch) -> list[Batch]:
        """One batch per record, rows rebuilt strictly: for finding the records a database
        refuses. Records that cannot even be built come back in ``rejected``."""
        items: list[object] = [slot for slot, _row, _level in batch.events]
        items += [rec for rec, _row in batch.spans] + [rec for rec, _row in batch.metrics]
        singles = []
        for item in items:
            single = self.build([item], strict=True)
            if single.records or single.rejected:
                singles.append(single)
        return singles

    def write(self, batch: Batch, dropped: Mapping[str, int]) -> dict[str, RingUsage]:
        """Commit ``batch`` plus pending coalesced repeats; returns the rings' usage after it.

        ``dropped`` (records lost since the last commit, by ring) is added to the lifetime
        totals. On failure nothing is committed and the coalescer's state is restored, so the
        same batch can be written again.
        """
        dirty = self.coalescer.take_dirty()
        undo: list[tuple[Slot, int | None, int]] = []
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                try:
                    with conn.begin():
                        usage = self._write(conn, batch, dirty, dropped, undo)
                except BaseException:
                    # The retry gets a new connection: no session state (a pragma, a broken
                    # socket, an aborted transaction) survives a fault.
                    conn.invalidate()
                    raise
        except BaseException:
            for slot, row_id, applied in reversed(undo):
                slot.row_id, slot.applied = row_id, applied
            self.coalescer.restore_dirty(dirty)
            raise
        return usage

    def _write(self, conn: Connection, batch: Batch, dirty: list[Slot],
               dropped: Mapping[str, int], undo: list[tuple[Slot, int | None, int]],
               ) -> dict[str, RingUsage]:
        usage: dict[str, RingUsage] = {}
        event_rows: list[Row] = []
        for slot, row, _level in batch.events:
            undo.append((slot, slot.row_id, slot.applied))
            slot.applied = slot.hits  # repeats so far go into the inserted row's count
            event_rows.append((*row, 1 + slot.applied))
        updates, repeats, later = self._repeats(dirty, undo)
        events = self.rings["events"]
        if event_rows or updates or dropped.get("events"):
            first, counts = events.append(
                conn, event_rows, [level for _slot, _row, level in batch.events], self.insert,
                dropped=dropped.get("events", 0),
                coalesced=repeats + sum(s.applied for s, _r, _l in batch.events))
            for offset, (slot, _row, _level) in enumerate(batch.events):
                slot.row_id = first + offset
            if updates:
                conn.execute(self._add_count, updates)
            usage["events"] = RingUsage(counts.get(0, 0), events.capacity)
        for name, built in (("spans", batch.spans), ("metrics", batch.metrics)):
            if built or dropped.get(name):
                ring = self.rings[name]
                rows = [row for _rec, row in built]
                _first, counts = ring.append(conn, rows, (), self.insert,
                                             dropped=dropped.get(name, 0))
                usage[name] = RingUsage(counts.get(0, 0), ring.capacity)
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
