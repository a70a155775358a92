"""Batch keys on a database server, so that a batch whose COMMIT went unanswered is not
written twice.

When the connection drops after the client sent COMMIT and before it read the answer (a
failover, a server crash, a network cut at that moment), the client cannot tell whether the
server committed. Each batch transaction therefore also sets this writer's row in
``ragtrail_writers`` to the batch's number; after such a failure the writer reads the row
back (``committed``) before it undoes or resends anything. The read locks the row, which
the transaction in doubt held until it ended, so it cannot run before the server has
finished with that transaction.

A writer is one store in one process: its identity is random, made anew in a forked child
(which builds its own writer) and at every start, so no two writers ever share a row.
SQLite needs none of this: its commit happens in this process and either returns or raises.
"""

from __future__ import annotations

import secrets
import time

from sqlalchemy import Connection, bindparam, select

from ragtrail.store._schema import WRITERS

__all__ = ["IDLE_PRUNED_AFTER_S", "Ledger"]

IDLE_PRUNED_AFTER_S = 86_400.0
"""A writer's row untouched this long is deleted by the next writer that starts (rows of
crashed processes must not pile up). A live writer refreshes its row well before that; one
whose COMMIT stays unanswered for longer (its server unreachable for a day) may send that
batch again."""

_REFRESH_S = IDLE_PRUNED_AFTER_S / 4


class Ledger:
    """One writer's batch numbers; used on the writer thread only."""

    def __init__(self) -> None:
        self.writer = secrets.token_hex(16)
        self.batch = 0  # the number of the last batch marked
        self._refreshed_at: float | None = None  # monotonic; None: no row known yet
        c = WRITERS.c
        mine = c.writer == bindparam("p_writer")
        self._prune = WRITERS.delete().where(c.time_us < bindparam("p_before"))
        self._touch = WRITERS.update().where(mine).values(time_us=bindparam("p_time"))
        self._add = WRITERS.insert().values(writer=bindparam("p_writer"), batch=0,
                                            time_us=bindparam("p_time"))
        self._mark = WRITERS.update().where(mine).values(batch=bindparam("p_batch"),
                                                         time_us=bindparam("p_time"))
        self._read = select(c.batch).where(mine).with_for_update()

    @property
    def due(self) -> bool:
        """The row must be made (first batch) or refreshed (idle for a while) before the
        next batch, in a transaction of its own."""
        return self._refreshed_at is None or \
            time.monotonic() - self._refreshed_at >= _REFRESH_S

    def register(self, conn: Connection) -> None:
        """Prune idle rows and make or refresh this writer's row, in the caller's transaction.

        Raises ``ProgrammingError`` if the table is missing or this role may not use it (all
        four privileges are exercised here), ``IntegrityError`` if an earlier attempt whose
        answer was lost made the row after all (which is as good). A transaction of its own,
        before any batch: a lookup waits for the lock of a row only if that row exists.
        """
        now = time.time_ns() // 1000
        conn.execute(self._prune, {"p_before": now - int(IDLE_PRUNED_AFTER_S * 1_000_000)})
        params = {"p_writer": self.writer, "p_time": now}
        if conn.execute(self._touch, params).rowcount == 0:
            conn.execute(self._add, params)

    def refreshed(self) -> None:
        """A registration or a batch committed: the row is fresh."""
        self._refreshed_at = time.monotonic()

    def mark(self, conn: Connection) -> int:
        """Number the batch being written in ``conn``'s transaction; returns its number."""
        self.batch += 1
        conn.execute(self._mark, {"p_writer": self.writer, "p_batch": self.batch,
                                  "p_time": time.time_ns() // 1000})
        return self.batch

    def committed(self, conn: Connection, batch: int) -> bool:
        """Whether batch ``batch`` was committed; waits for a transaction still holding the
        row (its COMMIT not processed yet). No row: pruned after a day, taken as not."""
        stored = conn.execute(self._read, {"p_writer": self.writer}).scalar()
        return stored is not None and stored >= batch
