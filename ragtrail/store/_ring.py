"""Ring-buffer appends: IDs, row counts and trimming in O(batch), inside the writer's transaction.

``ragtrail_ring`` keeps each table's row count (and, for events, the count per severity),
updated in the same transaction as the rows, so trimming never counts the table: it deletes
the ``excess`` oldest rows through the primary key or the (severity, id) index. Updating the
table's bucket-0 row first is also the lock that orders writers: on PostgreSQL the row lock
serialises concurrent writers of one table, on SQLite ``BEGIN IMMEDIATE`` already has. So
``max(id) + 1`` is a safe next ID and IDs follow commit order across processes.

Events are trimmed with per-severity reserves (issue 6): the oldest rows of the lowest
severity above its reserve go first. Low and medium have no reserve, so a flood of them can
never evict a high or critical event; high and critical each keep a quarter of the capacity,
so a flood of critical events cannot wipe out every high one (nor the reverse). When all rows
share one severity the ring is a plain FIFO.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, select

from ragtrail._records import Severity
from ragtrail.store._schema import RING

__all__ = ["RESERVED_SHARE", "RingTable", "evictions"]

RESERVED_SHARE: Mapping[Severity, float] = {Severity.HIGH: 0.25, Severity.CRITICAL: 0.25}
"""Fraction of the events capacity each severity keeps however many lower-ranked rows come."""

Inserter = Callable[[Connection, Table, list[tuple[Any, ...]]], None]


def evictions(counts: Mapping[int, int], capacity: int) -> list[tuple[int, int]]:
    """(severity, rows to delete) so the events ring holds ``capacity`` rows.

    ``counts`` maps bucket 0 to the total and each severity to its rows.

    >>> evictions({0: 12, 10: 2, 20: 0, 30: 10, 40: 0}, 10)
    [(10, 2)]
    """
    excess = counts.get(0, 0) - capacity
    plan: list[tuple[int, int]] = []
    for level in Severity:  # ascending
        if excess <= 0:
            break
        reserve = int(capacity * RESERVED_SHARE.get(level, 0.0))
        take = min(excess, counts.get(int(level), 0) - reserve)
        if take > 0:
            plan.append((int(level), take))
            excess -= take
    return plan  # reserves add up to half the capacity, so the loop frees the whole excess


class RingTable:
    """One ring-buffered table's statements, prepared once; ``append`` runs them."""

    def __init__(self, ring: str, table: Table, capacity: int) -> None:
        self.ring = ring
        self.table = table
        self.capacity = capacity
        self.by_severity = ring == "events"
        c = RING.c
        this = (c.ring == ring)
        self._lock = RING.update().where(this & (c.bucket == 0)).values(
            row_count=c.row_count + bindparam("p_n"), written=c.written + bindparam("p_n"),
            dropped=c.dropped + bindparam("p_dropped"),
            coalesced=c.coalesced + bindparam("p_coalesced"))
        self._bucket = RING.update().where(this & (c.bucket == bindparam("p_bucket"))).values(
            row_count=c.row_count + bindparam("p_n"))
        self._counts = select(c.bucket, c.row_count).where(this)
        self._max_id = select(func.max(table.c.id))

    def append(self, conn: Connection, rows: Sequence[tuple[Any, ...]],
               severities: Sequence[int], insert: Inserter, *, dropped: int = 0,
               coalesced: int = 0) -> tuple[int, dict[int, int]]:
        """Insert ``rows`` (tuples without their ID) and trim; returns (first ID, row counts).

        ``severities`` is parallel to ``rows`` for the events table, empty otherwise.
        ``dropped`` and ``coalesced`` go to the table's lifetime totals in the same transaction.
        """
        conn.execute(self._lock, {"p_n": len(rows), "p_dropped": dropped, "p_coalesced": coalesced})
        first = 1
        if rows:
            first = (conn.execute(self._max_id).scalar() or 0) + 1
            insert(conn, self.table, [(first + i, *row) for i, row in enumerate(rows)])
        if self.by_severity and severities:
            added: dict[int, int] = {}
            for level in severities:
                added[level] = added.get(level, 0) + 1
            conn.execute(self._bucket, [{"p_bucket": b, "p_n": n} for b, n in added.items()])
        counts = {int(b): int(n) for b, n in conn.execute(self._counts)}
        if rows and counts.get(0, 0) > self.capacity:
            self._trim(conn, counts)
        return first, counts

    def _trim(self, conn: Connection, counts: dict[int, int]) -> None:
        """Delete the excess oldest rows (per severity plan for events); updates ``counts``."""
        c = self.table.c
        if self.by_severity:
            plan = evictions(counts, self.capacity)
        else:
            plan = [(0, counts[0] - self.capacity)]
        removed_total = 0
        for bucket, take in plan:
            oldest = select(c.id).order_by(c.id).offset(take - 1).limit(1)
            if self.by_severity:
                oldest = oldest.where(c.severity == bucket)
            cutoff = conn.execute(oldest).scalar()
            if cutoff is None:  # counts drifted (rows deleted by hand): delete what is there
                cutoff = conn.execute(self._max_id).scalar() or 0
            delete = self.table.delete().where(c.id <= cutoff)
            if self.by_severity:
                delete = delete.where(c.severity == bucket)
            removed = conn.execute(delete).rowcount
            removed_total += removed
            if self.by_severity:
                conn.execute(self._bucket, {"p_bucket": bucket, "p_n": -removed})
                counts[bucket] -= removed
        conn.execute(self._bucket, {"p_bucket": 0, "p_n": -removed_total})
        counts[0] -= removed_total
