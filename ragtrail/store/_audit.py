"""``AuditStore``: the ring-buffered audit trail, written in the background, read by queries."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ragtrail._records import MetricsSample, Record, SecurityEvent, Severity, SpanRecord
from ragtrail._settings import Settings
from ragtrail.store._coalesce import Coalescer
from ragtrail.store._commit import Committer
from ragtrail.store._counters import Counters
from ragtrail.store._engine import make_engine, parse_target
from ragtrail.store._errors import StoreError, describe_error
from ragtrail.store._file_guard import FileGuard
from ragtrail.store._opening import SchemaGate
from ragtrail.store._process import open_stores
from ragtrail.store._queries import (
    Since,
    events_query,
    metrics_query,
    read_stats,
    run,
    spans_query,
    stream,
)
from ragtrail.store._reports import StoreHealth, StoreStats
from ragtrail.store._rows import event_from_row, metrics_from_row, span_from_row
from ragtrail.store._write import BatchWriter
from ragtrail.store._writer import Writer

__all__ = ["AuditStore"]

DEFAULT_LINGER_S = 0.05
"""How long the writer lets a batch fill after its first record (``batch_linger_seconds``)."""

DEFAULT_CLOSE_TIMEOUT_S = 10.0
"""How long ``close()`` without a timeout waits for a database that cannot be written."""

T = TypeVar("T")
_STREAMS: dict[str, tuple[Callable[..., Any], Callable[[Any], Record]]] = {
    "events": (events_query, event_from_row),
    "spans": (spans_query, span_from_row),
    "metrics": (metrics_query, metrics_from_row),
}
_RING_OF = {SecurityEvent: "events", SpanRecord: "spans", MetricsSample: "metrics"}


class AuditStore:
    """A SQLAlchemy Core ring buffer of security events, spans and metrics samples.

    ``record()`` queues a record for the background writer and returns at once; it never blocks
    and never raises. Queries read newest first. ``read_only=True`` opens an existing store
    without ever creating, migrating or writing it (the CLI's mode).

    >>> store = AuditStore("sqlite:///audit.db")            # doctest: +SKIP
    >>> store.record(event); store.flush(timeout=5)          # doctest: +SKIP
    >>> store.events(min_severity="high", limit=20)          # doctest: +SKIP

    The writer commits once ``batch_size`` records are queued or ``batch_linger_seconds``
    after it saw the first one, whichever comes first (``flush()`` waits for neither).
    ``close()`` without a timeout waits at most ``close_timeout`` seconds for a database that
    cannot be written. A new SQLite file (and its ``-wal``/``-shm``) is readable by its owner
    only (0600), in a directory created 0700 if missing.

    ``engine_options`` go to ``sqlalchemy.create_engine`` (``connect_args``, pool sizes, event
    hooks through ``store.engine``); SQLite's busy timeout is ``connect_args={"timeout": s}``
    (default 5 s).
    """

    def __init__(
        self,
        url: str = "sqlite:///ragtrail.db",
        *,
        events_capacity: int = 100_000,
        spans_capacity: int = 100_000,
        metrics_capacity: int = 10_000,
        queue_size: int = 10_000,
        batch_size: int = 500,
        event_coalesce_seconds: float = 60.0,
        read_only: bool = False,
        engine_options: Mapping[str, Any] | None = None,
        batch_linger_seconds: float = DEFAULT_LINGER_S,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT_S,
    ) -> None:
        for name, value in (("events_capacity", events_capacity),
                            ("spans_capacity", spans_capacity),
                            ("metrics_capacity", metrics_capacity),
                            ("queue_size", queue_size), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if event_coalesce_seconds < 0:
            raise ValueError("event_coalesce_seconds must be >= 0 (0 turns coalescing off); "
                             f"got {event_coalesce_seconds!r}")
        for name, seconds in (("batch_linger_seconds", batch_linger_seconds),
                              ("close_timeout", close_timeout)):
            if not isinstance(seconds, int | float) or not 0 <= seconds < math.inf:
                raise ValueError(f"{name} must be a finite number of seconds >= 0; "
                                 f"got {seconds!r}")
        self.read_only = read_only
        self._target = parse_target(url)
        self._capacities = {"events": events_capacity, "spans": spans_capacity,
                            "metrics": metrics_capacity}
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._coalesce_s = event_coalesce_seconds
        self._linger_s = float(batch_linger_seconds)
        self._close_timeout = float(close_timeout)
        self._closed = False
        try:
            self.engine: Engine = make_engine(self._target, read_only=read_only,
                                              engine_options=engine_options)
        except StoreError:
            raise
        except Exception as exc:  # an unknown driver, a bad option
            raise StoreError(f"{self._target.shown}: {describe_error(exc)}") from None
        self._schema = SchemaGate(self.engine, self._target, self._capacities)
        if read_only:
            self._schema.check_readable()
            self._start(schema_ready=True, run=False)
            return
        unreachable = (self._schema.try_ensure() if self._target.is_sqlite
                       else self._schema.at_start())
        self._start(schema_ready=unreachable is None)
        if unreachable is not None:  # health says so now, not only once a record fails
            self._counters.error(unreachable)
        open_stores.add(self)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AuditStore:
        """The store ``settings`` describe; ``kwargs`` win over them."""
        kwargs.setdefault("engine_options", settings.store_engine_options)
        return cls(settings.store_url, events_capacity=settings.events_capacity,
                   spans_capacity=settings.spans_capacity,
                   metrics_capacity=settings.metrics_capacity, queue_size=settings.queue_size,
                   batch_size=settings.batch_size,
                   event_coalesce_seconds=settings.event_coalesce_seconds,
                   batch_linger_seconds=settings.batch_linger_seconds,
                   close_timeout=settings.store_close_timeout, **kwargs)

    # -- writing ---------------------------------------------------------------------------

    def record(self, rec: Record) -> None:
        """Queue ``rec`` for the writer; never blocks, never raises (a full queue drops it)."""
        try:
            item: Any = rec
            event = isinstance(rec, SecurityEvent)
            if event:
                item = self._coalescer.admit(rec)  # type: ignore[arg-type]
                if item is None:
                    return  # a repeat inside its window: counted there
            queue = self._queue
            depth = len(queue)
            if depth < self._capacity:
                queue.append(item)
                if event:
                    self._coalescer.register(item)
                if not self._wake.is_set():
                    self._wake.set()
                if depth == self._hurry_at:  # a full batch: the writer stops lingering
                    self._hurry.set()
            else:
                self._counters.drop(_RING_OF.get(rec.__class__, "other"))
        except Exception:  # failsafe: instrumentation never breaks the caller
            self._counters.drop("other")

    def flush(self, timeout: float | None = None) -> bool:
        """True once everything recorded before the call is committed; False on timeout."""
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush (waiting up to ``timeout``; None: the store's ``close_timeout``), then stop
        the writer and release connections. Idempotent; interpreter exit does it too.

        If the database still cannot be written when the time is up, the records still
        queued are dropped and counted in ``health().dropped`` (not in the stored totals:
        the database is what failed); those of a batch whose COMMIT went unanswered, which
        the server may have stored, in ``health().outcome_unknown``. A writer stuck inside a
        database call gets one more second; the batch in its hands is counted when that call
        ends. Interpreter exit waits
        ``EXIT_FLUSH_TIMEOUT_S`` or ``close_timeout``, whichever is shorter.
        """
        if self._closed:
            return
        self._closed = True
        open_stores.discard(self)
        self._capacity = 0
        self._writer.stop(self._close_timeout if timeout is None else max(0.0, timeout))
        self.engine.dispose()

    def health(self) -> StoreHealth:
        """The writer's state in this process (no database access: cheap for health probes)."""
        writer, counters = self._writer, self._counters
        last_error, last_error_time_us = counters.last_error, counters.last_error_time_us
        stalled = writer.stalled(time.monotonic())
        if stalled is not None:
            last_error = (f"a database call has not returned for {stalled:.0f} s (a hung "
                          "server?); records wait in the queue")
            last_error_time_us = time.time_ns() // 1000
        return StoreHealth(
            status=writer.status(), writer_alive=writer.alive, queue_depth=len(writer.queue),
            queue_capacity=self._queue_size, written=counters.written,
            dropped=counters.dropped, outcome_unknown=counters.outcome_unknown,
            coalesced=self._coalescer.repeats,
            last_error=last_error, last_error_time_us=last_error_time_us,
            ring_usage=dict(writer.committer.ring_usage))

    # -- reading ---------------------------------------------------------------------------

    def events(self, *, min_severity: Severity | str | int | None = None,
               event_type: str | None = None, source: str | None = None,
               correlation_id: str | None = None, since: Since = None, until: Since = None,
               after_id: int | None = None, limit: int | None = 100) -> list[SecurityEvent]:
        """Security events, newest first; ``until`` is exclusive, ``since`` inclusive.

        ``after_id`` keeps events whose ``id`` is greater: IDs follow commit order across
        every writing process, so following a store is "ask again with the highest ID seen"
        (``ragtrail tail``). If more than ``limit`` arrived, the newest ``limit`` are returned.
        """
        query = events_query(min_severity=min_severity, event_type=event_type, source=source,
                             correlation_id=correlation_id, since=since, until=until,
                             after_id=after_id, limit=limit)
        return self._read(lambda conn: run(conn, query, event_from_row))

    def spans(self, *, trace_id: str | None = None, correlation_id: str | None = None,
              name: str | None = None, kind: str | None = None,
              min_duration_ms: float | None = None, errors_only: bool = False,
              since: Since = None, limit: int | None = 100) -> list[SpanRecord]:
        """Finished spans, newest first."""
        query = spans_query(trace_id=trace_id, correlation_id=correlation_id, name=name,
                            kind=kind, min_duration_ms=min_duration_ms,
                            errors_only=errors_only, since=since, limit=limit)
        return self._read(lambda conn: run(conn, query, span_from_row))

    def metrics(self, *, since: Since = None, limit: int | None = 100) -> list[MetricsSample]:
        """System metrics samples, newest first."""
        query = metrics_query(since=since, limit=limit)
        return self._read(lambda conn: run(conn, query, metrics_from_row))

    def stream(self, ring: str, /, *, limit: int | None = None, newest_first: bool = False,
               **filters: Any) -> Generator[Record, None, None]:
        """Records of ``ring`` (``"events"``, ``"spans"`` or ``"metrics"``) oldest first (or
        ``newest_first``), read a thousand rows at a time, each batch in a short transaction
        of its own: memory stays flat however many rows match, and a slow reader never holds
        the database (``ragtrail export``). ``filters`` are those of the ring's query method
        (``events()``, ...); ``limit`` keeps the newest. Rows added after the call are not
        included; rows the ring trims while the stream is read are skipped."""
        try:
            build, convert = _STREAMS[ring]
        except KeyError:
            raise ValueError(f"ring must be one of {', '.join(_STREAMS)}; got {ring!r}") from None
        return stream(self._read, ring, build(**filters, limit=limit), convert, newest_first)

    def stats(self, *, since: Since = None) -> StoreStats:
        """Counts by severity and type, span latency percentiles by name, ring usage, and
        lifetime written/dropped/coalesced totals of all writers."""
        return self._read(lambda conn: read_stats(conn, since))

    def _read(self, work: Callable[[Connection], T]) -> T:
        try:
            with self.engine.connect() as conn, conn.begin():
                return work(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self._target.shown}: "
                             f"{describe_error(exc, self._target.secrets)}") from None
        finally:
            if self._closed:  # reading a closed store works, and leaves no connection open
                self.engine.dispose()

    # -- lifecycle -------------------------------------------------------------------------

    def _file_guard(self) -> FileGuard | None:
        """A guard for a SQLite file opened by its path (not in memory, not a URI)."""
        path = self._target.sqlite_path
        if path is None or self._target.url.query.get("uri") or path.startswith("file:"):
            return None
        return FileGuard(path, self.engine)

    def _start(self, schema_ready: bool, *, run: bool = True) -> None:
        """A fresh queue, coalescer, counters and writer thread (at start and after fork).

        ``run=False`` (read-only stores): the writer never starts, so health() says "ok",
        flush() has nothing to wait for, and record() drops and counts everything.
        """
        self._coalescer = Coalescer(self._coalesce_s, max_keys=self._queue_size)
        self._counters = Counters()
        batches = BatchWriter(self.engine, self._target, self._capacities, self._coalescer)
        guard = self._file_guard() if run else None
        committer = Committer(
            batches, batch_size=self._batch_size, coalescer=self._coalescer,
            counters=self._counters, ensure_schema=self._schema.ensure,
            secrets=self._target.secrets, check_file=guard.check if guard is not None else None)
        self._writer = Writer(committer, queue_size=self._queue_size, linger_s=self._linger_s)
        self._queue = self._writer.queue
        self._wake = self._writer.wake
        self._hurry = self._writer.hurry
        self._hurry_at = self._batch_size - 1  # the queue depth before a full batch's last
        if run:
            self._capacity = self._queue_size
            self._writer.start(schema_ready=schema_ready)
        else:
            self._capacity = 0
            self._writer.stop(0)

    def _restart_after_fork(self) -> None:
        # The parent's writer thread did not survive the fork, and its pooled connections
        # belong to the parent: drop them unclosed (docs.sqlalchemy.org, "Using Connection
        # Pools with Multiprocessing or os.fork()") and start over with an empty queue (what
        # was queued before the fork is the parent's to write).
        self.engine.dispose(close=False)
        self._start(schema_ready=True)

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "closed" if self._closed else "open"
        return f"<AuditStore {self._target.shown} ({mode})>"
