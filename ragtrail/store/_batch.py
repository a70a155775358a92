"""What the writer takes from the queue: the records of one transaction, and flush markers."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

from ragtrail._records import MetricsSample, SecurityEvent, SpanRecord
from ragtrail.store._coalesce import Slot

__all__ = ["Batch", "Flush"]

R = TypeVar("R")


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

    def take(self, part: Batch) -> Batch:
        """Take out the records of ``part``, a part of this batch (committed after all, or
        in doubt), and return those taken: in place, as the writer's retries and isolation
        hold this object."""
        return Batch(events=_take(self.events, part.events),
                     spans=_take(self.spans, part.spans),
                     metrics=_take(self.metrics, part.metrics))


def _take(records: list[R], part: list[R]) -> list[R]:
    """Remove from ``records`` one occurrence of each of ``part``'s (by identity: the same
    record object recorded twice is two rows, and only one of them is in ``part``)."""
    if not part:
        return []
    wanted = Counter(map(id, part))
    kept: list[R] = []
    taken: list[R] = []
    for record in records:
        if wanted[id(record)]:
            wanted[id(record)] -= 1
            taken.append(record)
        else:
            kept.append(record)
    records[:] = kept
    return taken
