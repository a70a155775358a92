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

from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, Table, bindparam, func, select

from ragtrail._records import Severity
from ragtrail.store._schema import RING

__all__ = ["EXCESS_TRIMMED_PER_WRITE", "RESERVED_SHARE", "RingTable", "evictions"]

EXCESS_TRIMMED_PER_WRITE = 10_000
"""Rows beyond its own that one write removes from a table over its capacity."""

RESERVED_SHARE: Mapping[Severity, float] = {
    Severity.LOW: 0.10, Severity.MEDIUM: 0.10, Severity.HIGH: 0.25, Severity.CRITICAL: 0.25}
"""Fraction of the events capacity each severity keeps (its newest rows) whatever else comes."""

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
    total = before.get(0, 0)
    for level, reserve in reserves:  # e.g. the capacity was lowered since the last write
        if total <= capacity:
            break
        take = min(total - capacity, counts[level] - reserve)
        if take > 0:
            counts[level] -= take
            plan[level] += take
            total -= take
    overflow = total + len(incoming) - capacity
    if overflow > 0:
        lowest = next((level for level, reserve in reserves if counts[level] > reserve), None)
        if lowest is not None and counts[lowest] - _reserve(reserves, lowest) >= overflow \
                and incoming and min(incoming) >= lowest:
            # The common case, in one step: no new row can make a lower severity eligible,
            # and the lowest eligible one has enough rows above its reserve for all of them.
            plan[lowest] += overflow
        else:
            _one_by_one(counts, reserves, plan, total, incoming, capacity)
    return [(level, n) for level, n in plan.items() if n]


def _reserve(reserves: list[tuple[int, int]], level: int) -> int:
    return next(reserve for lv, reserve in reserves if lv == level)


def _one_by_one(counts: dict[int, int], reserves: list[tuple[int, int]],
                plan: dict[int, int], total: int, incoming: Sequence[int],
                capacity: int) -> None:
    """Add the rows one at a time, each evicting from the lowest severity above its reserve.

    Reserves add up to less than the capacity, so one is always found unless the stored
    counts drifted (rows deleted by hand); then the next batch trims what is left.
    """
    for level in incoming:
        counts[level] += 1
        if total < capacity:
            total += 1
            continue
        for lowest, reserve in reserves:
            if counts[lowest] > reserve:
                counts[lowest] -= 1
                plan[lowest] += 1
                break


class RingTable:
    """One ring-buffered table's statements, prepared once.

    A write is ``open()`` (lock, next ID, counts), the caller's insert, then ``close()``
    (trim, counts and totals), all in the caller's transaction.
    """

    def __init__(self, ring: str, table: Table, capacity: int) -> None:
        self.ring = ring
        self.table = table
        self.capacity = capacity
        self.by_severity = ring == "events"
        c = RING.c
        this = c.ring == ring
        # FOR UPDATE is the lock on PostgreSQL; SQLite ignores it (BEGIN IMMEDIATE locked).
        # In bucket order, bucket 0 first: rows are locked in the order the scan meets them,
        # and updates move them around the heap, so two writers could each lock some buckets
        # and wait for the other's (deadlocks seen with four writers).
        self._counts = select(c.bucket, c.row_count).where(this).order_by(c.bucket) \
            .with_for_update()
        self._max_id = select(func.max(table.c.id))
        self._totals = RING.update().where(this & (c.bucket == 0)).values(
            row_count=c.row_count + bindparam("p_n"), written=c.written + bindparam("p_added"),
            dropped=c.dropped + bindparam("p_dropped"),
            coalesced=c.coalesced + bindparam("p_coalesced"))
        self._bucket = RING.update().where(this & (c.bucket == bindparam("p_bucket"))).values(
            row_count=c.row_count + bindparam("p_n"))
        id_ = table.c.id
        self._oldest = select(id_).order_by(id_).offset(bindparam("p_skip")).limit(1)
        self._delete = table.delete().where(id_ <= bindparam("p_cutoff"))
        if self.by_severity:
            level = table.c.severity == bindparam("p_level")
            self._oldest = self._oldest.where(level)
            self._delete = self._delete.where(level)

    def open(self, conn: Connection, adding: bool) -> tuple[int, dict[int, int]]:
        """Lock the table's ring rows; returns (the next free ID, the row counts by bucket)."""
        counts = {int(b): int(n) for b, n in conn.execute(self._counts)}
        first = (conn.execute(self._max_id).scalar() or 0) + 1 if adding else 1
        return first, counts

    def close(self, conn: Connection, counts: dict[int, int], severities: Sequence[int],
              added: int, *, dropped: int = 0, coalesced: int = 0) -> int:
        """After ``added`` rows were inserted (``severities`` parallel, for events): trim to
        capacity, store the counts and lifetime totals; returns the rows now in the table."""
        delta = dict.fromkeys(counts, 0)
        for level in severities:
            delta[level] += 1
        total = counts.get(0, 0) + added
        if added and total > self.capacity:
            if self.by_severity:
                plan = evictions(counts, severities, self.capacity)
            else:
                plan = [(0, total - self.capacity)]
            # The rows this write added plus a bounded excess: after a capacity decrease (a
            # replica with a smaller setting) the table shrinks over a few writes instead of
            # in one statement that a statement_timeout cancels on every retry.
            budget = added + EXCESS_TRIMMED_PER_WRITE
            for bucket, take in plan:
                take = min(take, budget)
                if take <= 0:
                    break
                budget -= take
                removed = self._delete_oldest(conn, bucket, take)
                delta[bucket] = delta.get(bucket, 0) - removed
                total -= removed
        conn.execute(self._totals, {"p_n": total - counts.get(0, 0), "p_added": added,
                                    "p_dropped": dropped, "p_coalesced": coalesced})
        changed = [{"p_bucket": b, "p_n": n} for b, n in delta.items() if b and n]
        if changed:
            conn.execute(self._bucket, changed)
        return total

    def _delete_oldest(self, conn: Connection, bucket: int, take: int) -> int:
        params = {"p_skip": take - 1, "p_level": bucket}
        cutoff = conn.execute(self._oldest, params).scalar()
        if cutoff is None:  # counts drifted (rows deleted by hand): delete what is there
            cutoff = conn.execute(self._max_id).scalar() or 0
        return int(conn.execute(self._delete, {"p_cutoff": cutoff, "p_level": bucket}).rowcount)
