"""One batch, one transaction: rows built with their IDs in one pass, appended to the rings.

SQLite inserts go straight to the driver's ``executemany`` on the pooled connection (SQLAlchemy
Core's insert measured 0.59x of raw ``sqlite3`` here, issue 2); other databases use Core's
``insert()``, which batches with "insertmanyvalues" on PostgreSQL.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, ProgrammingError

from ragtrail._records import MetricsSample, SecurityEvent, SpanRecord
from ragtrail.store._batch import Batch, Flush
from ragtrail.store._coalesce import Coalescer, Slot
from ragtrail.store._engine import WRITE, Target
from ragtrail.store._errors import describe_error
from ragtrail.store._ledger import Ledger
from ragtrail.store._reports import RingUsage
from ragtrail.store._ring import RingTable
from ragtrail.store._rows import Row, RowBuilder
from ragtrail.store._schema import EVENTS, RINGS, SPANS, WRITERS

__all__ = ["BatchWriter"]

log = logging.getLogger("ragtrail.store")


@dataclass
class _Attempt:
    """One batch transaction's effects on the writer's memory, applied (``_done``) or undone
    (``_undo``) once its outcome is known."""

    batch: Batch
    dropped: Mapping[str, int]
    dirty: list[Slot]  # slots taken for their repeats
    undo: list[tuple[Slot, int | None, int]] = field(default_factory=list)  # their old state
    # Events whose windows learn their rows once committed, and those rows: two lists, as
    # (event, row) pairs would be tracked objects outliving young collections by thousands.
    fresh: tuple[list[SecurityEvent], list[int]] = field(default_factory=lambda: ([], []))
    usage: dict[str, RingUsage] = field(default_factory=dict)
    key: int = 0  # its batch number in the ledger (0: none)
    committed: bool = False


class _SqliteInsert:
    """Rows into SQLite by the driver: spans many rows to a statement, the rest row by row.

    ``sqlite3`` releases the GIL around every statement it steps, and a writer that wants it
    back waits for the app's next pause, up to the interpreter's 5 ms switch interval behind
    a busy thread: per row, that was 2.3-2.9 context switches and 50-110 us of CPU per request
    under uvicorn, for 6.5 us of SQLite work. Spans, one or more per request, therefore go in
    as multi-row ``INSERT ... VALUES`` statements of up to 2,048 rows, in power-of-two sizes
    so that a dozen prepared statements (cached by the driver) serve every batch: a batch of
    500 or a backlog of 4,000 is six statements. Bound values cost SQLite half the CPU
    per row of a JSON array expanded by ``json_each`` (5 against 10 us here; SQLite 3.40
    parses a JSON row once per column), which spans used before. Events stay with
    ``executemany``: a multi-row statement cut their bulk ingest by a third.
    """

    __slots__ = ("_chunks",)

    def __init__(self) -> None:
        self._chunks: list[int] | None = None  # the sizes this SQLite accepts, asked once
        _bind_none_directly()

    def __call__(self, conn: Connection, table: Table, rows: list[Row]) -> None:
        driver = conn.connection.driver_connection
        if table is SPANS and len(rows) > 1:
            rows = self._insert_chunks(driver, rows)
        if rows:
            driver.executemany(_SQLITE_INSERTS[table.name], rows)  # type: ignore[union-attr]

    def _insert_chunks(self, driver: Any, rows: list[Row]) -> list[Row]:
        """Insert ``rows`` in chunks of the largest sizes that fit; returns the last row if
        one is left over (it goes alone)."""
        if self._chunks is None:
            most = _variable_limit(driver) // len(SPANS.columns)
            self._chunks = [size for size in _CHUNK_SIZES if size <= most]
        start, left = 0, len(rows)
        for size in self._chunks:
            statement = _SPAN_MULTI_ROW_INSERTS[size]
            while left >= size:
                driver.execute(statement, tuple(chain.from_iterable(rows[start:start + size])))
                start += size
                left -= size
        return rows[start:]


def _bind_none_directly() -> None:
    """Give ``None`` an adapter in ``sqlite3``'s registry, unless one is there already.

    ``sqlite3`` binds int, float, str and bytearray as they are, but sends every other value,
    ``None`` included, through its adapter protocol first: with no adapter registered it asks
    ``PrepareProtocol.__adapt__``, and the ``AttributeError`` that raises costs 0.5 us per
    value (a span row has three ``None`` columns, usually: a third of the CPU its insert
    took). Found in the registry, the adapter is one C call returning ``None``, which is then
    bound as ``NULL`` exactly as before: stored values do not change, for ragtrail or for the
    app's own ``sqlite3`` use. An adapter the app registered for ``None`` is kept.
    """
    key = (type(None), sqlite3.PrepareProtocol)
    if key not in sqlite3.adapters:
        sqlite3.register_adapter(type(None), _NO_ADAPTATION)


# A C function mapping any value to None (the dict is empty and stays so): cheaper to call
# than a Python function.
_NO_ADAPTATION: Callable[[object], None] = dict[object, None]().get


def _variable_limit(driver: Any) -> int:
    """How many values one statement may bind, as the connection says (Python 3.11+: 32,766
    by default since SQLite 3.32, 250,000 in Debian's build); without ``getlimit`` (Python
    3.10, other drivers), 999: SQLite's lowest default, which a build may also have kept."""
    getlimit = getattr(driver, "getlimit", None)
    which = getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", None)
    if getlimit is not None and which is not None:
        return int(getlimit(which))
    return 999


# Compiled once by SQLAlchemy for SQLite: "INSERT INTO t (every column) VALUES (?, ...)".
_SQLITE_INSERTS = {table.name: str(table.insert().compile(dialect=sqlite.dialect()))
                   for table in RINGS.values()}
_CHUNK_SIZES = tuple(2**k for k in range(11, 0, -1))  # 2048 rows x 14 columns: 28,672 values


def _multi_row_insert(single_row: str, rows: int) -> str:
    """A single-row ``INSERT ... VALUES (?, ...)`` with its row of placeholders ``rows`` times."""
    head, _, row = single_row.partition(" VALUES ")
    return f"{head} VALUES " + ", ".join([row] * rows)


_SPAN_MULTI_ROW_INSERTS = {size: _multi_row_insert(_SQLITE_INSERTS[SPANS.name], size)
                           for size in _CHUNK_SIZES}


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
        self.strict = RowBuilder(strict=True, limited_text=not target.is_sqlite)
        self.builder = RowBuilder(strict=False, limited_text=False) if target.is_sqlite \
            else self.strict
        self.insert = _SqliteInsert() if target.is_sqlite else _core_insert
        # Keys only on a server: a SQLite COMMIT's outcome is never unknown (_ledger).
        self.ledger: Ledger | None = None if target.is_sqlite else Ledger()
        self.doubt: _Attempt | None = None  # a COMMIT that went unanswered
        self.shown, self.secrets = target.shown, target.secrets
        # Held for each transaction; os.fork() waits for it (AuditStore): a child forked
        # while this process held SQLite's write lock could never write the file again.
        self.transaction = threading.Lock()
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
    def pieces(batch: Batch, size: int, *, strict: bool = False) -> list[Batch]:
        """``batch``'s records in batches of at most ``size`` (its flushes stay with it);
        size 1 and ``strict`` find the records a database refuses."""
        return ([Batch(events=batch.events[i:i + size], strict=strict)
                 for i in range(0, len(batch.events), size)]
                + [Batch(spans=batch.spans[i:i + size], strict=strict)
                   for i in range(0, len(batch.spans), size)]
                + [Batch(metrics=batch.metrics[i:i + size], strict=strict)
                   for i in range(0, len(batch.metrics), size)])

    def write(self, batch: Batch, dropped: Mapping[str, int]) -> dict[str, RingUsage]:
        """Commit ``batch`` plus pending coalesced repeats; returns the rings' usage after it.

        ``dropped`` (records lost since the last commit, by ring) is added to the lifetime
        totals. On failure nothing is committed and the coalescer's state is restored, so the
        same batch can be written again; except when COMMIT itself failed on a server: then
        the outcome is unknown, ``doubt`` holds the attempt, and ``settle()`` must come first.
        """
        ledger = self.ledger
        if ledger is not None and ledger.due:
            self.ledger = ledger = self._register(ledger)
        attempt = _Attempt(batch, dropped, self.coalescer.take_dirty())
        committing = False
        pool = self.engine.pool
        try:
            with self.transaction, self.engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                try:
                    with conn.begin():
                        attempt.usage = self._write(conn, attempt)
                        if ledger is not None:
                            attempt.key = ledger.mark(conn)
                        committing = True  # what fails from here on is the COMMIT
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
            if committing and attempt.key:
                self.doubt = attempt
            else:
                self._undo(attempt)
            raise
        self._done(attempt)
        return attempt.usage

    def settle(self) -> _Attempt | None:
        """Ask the database whether the attempt in doubt committed, then finish or undo it
        and return it (``committed`` set); None if nothing is in doubt. Raises, still in
        doubt, while the database cannot answer."""
        attempt, ledger = self.doubt, self.ledger
        if attempt is None or ledger is None:
            return None
        with self.engine.begin() as conn:
            attempt.committed = ledger.committed(conn, attempt.key)
        self.doubt = None
        if attempt.committed:
            self._done(attempt)
        else:
            self._undo(attempt)
        return attempt

    def _register(self, ledger: Ledger) -> Ledger | None:
        """Make this writer's row; None (no keys) if this role cannot use the table."""
        try:
            with self.engine.begin() as conn:
                ledger.register(conn)
        except IntegrityError:
            pass  # an earlier attempt, its answer lost, made the row after all
        except ProgrammingError as exc:  # no such table, or permission denied
            log.warning("ragtrail audit store %s: cannot use %s (%s); batches are written "
                        "without keys, so a batch whose COMMIT answer is lost may be stored "
                        "twice (docs/scaling.md says what to grant)", self.shown,
                        WRITERS.name, describe_error(exc, self.secrets))
            return None
        ledger.refreshed()
        return ledger

    def _done(self, attempt: _Attempt) -> None:
        self.coalescer.written(*attempt.fresh)
        if self.ledger is not None:
            self.ledger.refreshed()

    def _undo(self, attempt: _Attempt) -> None:
        for slot, row_id, applied in reversed(attempt.undo):
            slot.row_id, slot.applied = row_id, applied
        self.coalescer.restore_dirty(attempt.dirty)

    def _write(self, conn: Connection, attempt: _Attempt) -> dict[str, RingUsage]:
        batch, dropped, undo = attempt.batch, attempt.dropped, attempt.undo
        builder = self.strict if batch.strict else self.builder
        usage: dict[str, RingUsage] = {}
        updates, repeats, later = self._repeats(attempt.dirty, undo)
        events = self.rings["events"]
        if batch.events or updates or dropped.get("events"):
            row_id, counts = events.open(conn, bool(batch.events))
            rows: list[Row] = []
            build, promoted = builder.event, self.coalescer.promoted
            fresh_events, fresh_rows = attempt.fresh
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
