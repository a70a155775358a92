"""Getting one batch into the database, and counting what became of its records.

The schema goes in first (again after a SQLite file was replaced), a store whose
compatibility floor a newer release raised above this version is no longer written
(``_floor``), a COMMIT left in doubt is settled before anything is written again, faults of
the database are told from records it refuses for their content, and a refused batch is
taken apart to drop only those records. The writer thread (``_writer``) owns the queue and
the retries; it is the only caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc

from ragtrail.store._batch import Batch
from ragtrail.store._coalesce import Coalescer
from ragtrail.store._counters import Counters
from ragtrail.store._errors import NewerStoreError, StoreError, describe_error
from ragtrail.store._floor import FloorWatch
from ragtrail.store._reports import RingUsage
from ragtrail.store._write import BatchWriter

__all__ = ["Committer", "refusal_test"]

log = logging.getLogger("ragtrail.store")


class Committer:
    """Commits batches for the writer thread; ``failing``, ``floor.refused``, the call in
    progress and the rings' usage are what ``health()`` reports of it."""

    def __init__(self, batches: BatchWriter, *, batch_size: int, coalescer: Coalescer,
                 counters: Counters, ensure_schema: Callable[[], None],
                 secrets: tuple[str, ...], check_file: Callable[[], None] | None = None,
                 ) -> None:
        self.batches = batches
        self.batch_size = batch_size
        self.coalescer = coalescer
        self.counters = counters
        self.ring_usage: dict[str, RingUsage] = {}
        self.failing = False
        self.schema_ready = False
        self.call_started: float | None = None  # monotonic start of the commit in progress
        self._ensure_schema = ensure_schema
        self._check_file = check_file  # a SQLite file's FileGuard.check
        self._secrets = secrets
        dialect = batches.engine.dialect
        self._refused = refusal_test(dialect.loaded_dbapi, dialect.name)
        self.floor = FloorWatch(batches.engine, batches.shown, secrets, counters)

    def commit(self, batch: Batch) -> None:
        self.call_started = now = time.monotonic()
        try:
            self._commit_now(batch, now)
        finally:
            self.call_started = None

    def _commit_now(self, batch: Batch, now: float) -> None:
        if self._check_file is not None:
            try:
                self._check_file()
            except StoreError:
                self.schema_ready = False  # a new file: the schema goes in first
                raise
        if not self.schema_ready:
            if self.floor.refused is not None and self.floor.due(now):
                self.floor.check(now)  # shut out: one SELECT, not the schema check's write lock
            if self.floor.refused is None:
                self._ensure(now)
        elif self.floor.due(now):
            self.floor.check(now)
        if self.floor.refused is not None:
            self._not_written(batch)
            return
        # Flush markers alone (a flush right after a full batch) need no transaction.
        if batch.records or self.counters.has_unsaved or self.coalescer.has_dirty or \
                self.batches.doubt is not None:
            self._write_batch(batch)
        if self.failing:  # before the flushes return: health agrees with a flush that worked
            log.warning("ragtrail audit store writable again; writing resumed")
            self.failing = False
        for marker in batch.flushes:
            marker.finish(True)

    def _ensure(self, now: float) -> None:
        """Create or migrate the schema (the first batch, a replaced file). A writer whose
        store opened without reaching the database finds a raised floor here, not in a floor
        look: it stops writing then, as a running writer does, instead of retrying."""
        try:
            self._ensure_schema()
        except NewerStoreError as exc:
            self.floor.refuse(str(exc), now)
            return
        self.schema_ready = True
        self.floor.passed(now)

    def _write_batch(self, batch: Batch) -> None:
        if self._settle(batch):
            return
        unsaved = self.counters.take_unsaved()
        try:
            usage = self.batches.write(batch, unsaved)
        except BaseException:
            if self.batches.doubt is None:  # else they may be stored: settle() will say
                self.counters.restore_unsaved(unsaved)
            raise
        self._written(batch, usage)

    def _settle(self, batch: Batch) -> bool:
        """Settle a COMMIT that went unanswered (a read), taking what it stored out of
        ``batch``; True if that was all of ``batch``."""
        settled = self.batches.settle()
        if settled is None:
            return False
        if not settled.committed:
            self.counters.restore_unsaved(dict(settled.dropped))
            return False
        self._written(settled.batch, settled.usage)
        if settled.batch is batch:
            return True
        batch.take(settled.batch)  # isolating a batch: a part of it
        return False

    def _not_written(self, batch: Batch) -> None:
        """The floor shuts this version out: ``batch`` is dropped, except what a COMMIT in
        doubt stored after all, and its flushes learn that it was not written."""
        if not self._settle(batch):
            self._drop(batch)
        for marker in batch.flushes:
            marker.finish(False)

    def _drop(self, batch: Batch) -> None:
        for ring, records in (("events", batch.events), ("spans", batch.spans),
                              ("metrics", batch.metrics)):
            if records:
                self.counters.drop(ring, len(records))
        for item in batch.events:  # their repeats open new windows instead
            self.coalescer.discard(item)

    def _written(self, batch: Batch, usage: dict[str, RingUsage]) -> None:
        self.ring_usage = {**self.ring_usage, **usage}
        with self.counters.lock:
            self.counters.written += batch.records

    def retryable(self, exc: Exception) -> bool:
        """Faults of the database (locked, full, read-only, down) are retried; a batch the
        database refuses for its content is not, or it would block every later record."""
        if isinstance(exc, StoreError):
            return True  # e.g. a foreign table in the way: retried until someone fixes it
        original = getattr(exc, "orig", None) or exc
        if self._refused(original):
            return False
        return isinstance(exc, sa_exc.DBAPIError | sa_exc.DisconnectionError
                          | sa_exc.TimeoutError) or type(original).__module__.split(".")[0] in \
            {"sqlite3", "psycopg", "psycopg2"}

    def isolate(self, batch: Batch) -> Batch:
        """Find and drop the records the database refuses; returns what is left to commit:
        the rest after a database fault, else an empty batch with the flushes.

        A backlog goes again as batches of ``batch_size`` first, and only a batch that is
        refused goes record by record: one bad record costs a batch of single commits, not
        a backlog's (up to 20 times as many, each waiting for the GIL behind a busy app)."""
        self.floor.expire()  # a refused batch: perhaps a newer release's schema
        pieces = (self.batches.pieces(batch, self.batch_size)
                  if batch.records > self.batch_size else [batch])
        for index, piece in enumerate(pieces):
            if len(pieces) > 1:
                try:
                    self.commit(piece)
                    continue
                except Exception as exc:
                    if self.retryable(exc):
                        return _rest(batch, pieces[index:])
            singles = self.batches.pieces(piece, 1, strict=True)
            for at, single in enumerate(singles):
                try:
                    self.commit(single)
                except Exception as single_exc:
                    if self.retryable(single_exc):
                        return _rest(batch, [*singles[at:], *pieces[index + 1:]])
                    self._reject(single, single_exc)
        # An empty batch to finish with: it saves the drop totals, then releases the flushes.
        return Batch(flushes=batch.flushes)

    def _reject(self, single: Batch, exc: Exception) -> None:
        message = describe_error(exc, self._secrets)
        if message != self.counters.last_error:  # one line per kind of refusal, not per record
            log.warning("ragtrail audit store refused a record (dropped): %s", message)
        self._drop(single)
        self.counters.error(message)

    def fault(self, exc: Exception) -> None:
        message = describe_error(exc, self._secrets)
        self.floor.expire()  # the next attempt looks at the version row first
        if not self.failing or message != self.counters.last_error:
            log.warning("ragtrail audit store cannot write (retrying, records are kept in "
                        "the queue up to its bound): %s", message)
        self.failing = True
        self.counters.error(message)


def refusal_test(dbapi: Any, dialect: str) -> Callable[[BaseException], bool]:
    """Whether a DB-API error is about a record's content (retrying the same rows cannot
    succeed), as opposed to a fault of the database."""
    errors: list[type[BaseException]] = [dbapi.DataError, dbapi.IntegrityError]
    if dialect == "sqlite":  # "Error binding parameter": a value of an unsupported type
        errors += [dbapi.ProgrammingError, dbapi.InterfaceError]
    content_errors = tuple(errors)

    def refused(error: BaseException) -> bool:
        # SQLSTATE class 54, e.g. a PostgreSQL index entry over 2,704 bytes: psycopg raises it
        # as an OperationalError, like an outage, but the same rows fail on every retry.
        sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        return isinstance(error, content_errors) or (
            isinstance(sqlstate, str) and sqlstate.startswith("54"))

    return refused


def _rest(batch: Batch, parts: list[Batch]) -> Batch:
    """What is left of ``batch`` after a database fault during its isolation: ``parts``,
    strict, with ``batch``'s flushes."""
    rest = Batch(flushes=batch.flushes, strict=True)
    for part in parts:
        rest.events += part.events
        rest.spans += part.spans
        rest.metrics += part.metrics
    return rest
