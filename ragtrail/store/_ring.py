"""Ring-buffer appends: IDs, row counts and trimming in O(batch), inside the writer's transaction.

``ragtrail_ring`` keeps each table's row count (and, for events, the count per severity),
updated in the same transaction as the rows, so trimming never counts the table: it deletes
the ``excess`` oldest rows through the primary key or the (severity, id) index. Updating the
table's bucket-0 row first is also the lock that orders writers: on PostgreSQL the row lock
serialises concurrent writers of one table, on SQLite ``BEGIN IMMEDIATE`` already has. So
``max(id) + 1`` is a safe next ID and IDs follow commit order across processes.

Events are trimmed with per-severity reserves (issue 6): every severity keeps its newest
``RESERVED_SHARE`` of the capacity, and the rest of the room goes to the higher severities:
the oldest rows of the lowest severity above its reserve go first. So a flood of low or
medium events, once past its own small reserve, only evicts its own kind: it can displace at
most 10% + 10% of the capacity, and only of the oldest high/critical rows beyond their
reserves; the newest quarter of the capacity in high and in critical events survives any
flood. When all rows share one severity the ring is a plain FIFO.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, select

from ragtrail._records import Severity
from ragtrail.store._schema import RING

__all__ = ["RESERVED_SHARE", "RingTable", "evictions"]

RESERVED_SHARE: Mapping[Severity, float] = {
    Severity.LOW: 0.10, Severity.MEDIUM: 0.10, Severity.HIGH: 0.25, Severity.CRITICAL: 0.25}
"""Fraction of the events capacity each severity keeps (its newest rows) whatever else comes."""

Inserter = Callable[[Connection, Table, list[tuple[Any, ...]]], None]


def evictions(before: Mapping[int, int], incoming: Sequence[int],
              capacity: int) -> list[tuple[int, int]]:
    """(severity, rows to delete), ascending, so the events ring holds ``capacity`` rows.

    ``before`` maps bucket 0 to the total and each severity to its rows before a batch whose
    severities, in order, are ``incoming``. The result is what adding the rows one at a time
    would evict, so it does not depend on how records were batched.

    >>> evictions({0: 10, 10: 1, 20: 0, 30: 9, 40: 0}, [10, 10, 30], 10)
    [(10, 2), (30, 1)]
    """
    counts = {int(level): before.get(int(level), 0) for level in Severity}
    reserves = [(int(level), int(capacity * share)) for level, share in RESERVED_SHARE.items()]
    plan = dict.fromkeys(counts, 0)

    def evict(n: int) -> None:
        # Reserves add up to less than the capacity, so this frees all n unless the stored
        # counts drifted (rows deleted by hand); then the next batch trims the rest.
        for level, reserve in reserves:
            take = min(n, counts[level] - reserve)
            if take > 0:
                counts[level] -= take
                plan[level] += take
                n -= take

    total = before.get(0, 0)
    if total > capacity:  # e.g. the capacity was lowered since the last write
        evict(total - capacity)
        total = capacity
    for level in incoming:
        counts[level] += 1
        if total < capacity:
            total += 1
        else:
            evict(1)
    return [(level, n) for level, n in plan.items() if n]


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
        added: dict[int, int] = {}
        if self.by_severity and severities:
            for level in severities:
                added[level] = added.get(level, 0) + 1
            conn.execute(self._bucket, [{"p_bucket": b, "p_n": n} for b, n in added.items()])
        counts = {int(b): int(n) for b, n in conn.execute(self._counts)}
        if rows and counts.get(0, 0) > self.capacity:
            if self.by_severity:
                before = {b: n - added.get(b, 0) for b, n in counts.items()}
                before[0] -= len(rows)
                plan = evictions(before, severities, self.capacity)
            else:
                plan = [(0, counts[0] - self.capacity)]
            self._trim(conn, plan, counts)
        return first, counts

    def _trim(self, conn: Connection, plan: list[tuple[int, int]],
              counts: dict[int, int]) -> None:
        """Delete the oldest rows of each (bucket, n) of ``plan``; updates ``counts``."""
        c = self.table.c
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
