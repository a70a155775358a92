"""What the store reports about itself: ``health()`` (this process) and ``stats()`` (the data).

Plain frozen dataclasses, so ``dataclasses.asdict`` turns them into JSON for the health routes
and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["HealthStatus", "RingUsage", "SpanLatency", "StoreHealth", "StoreStats"]

HealthStatus = Literal["ok", "degraded", "failing"]


@dataclass(frozen=True, slots=True)
class RingUsage:
    """How full one ring-buffered table is."""

    rows: int
    capacity: int

    @property
    def fraction(self) -> float:
        return self.rows / self.capacity if self.capacity else 0.0


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """The background writer's state in this process.

    ``failing``: the last write failed and the writer is retrying (records wait in the queue,
    and are dropped once it is full), or a newer ragtrail raised the store's compatibility
    floor above this version, so this process no longer writes it (records are dropped,
    ``last_error`` names both versions). ``degraded``: writing works, but the queue is filling up
    or records were dropped or a write failed within the last minute. ``outcome_unknown``
    counts records lost to ``close()`` in a batch whose COMMIT was sent to a database server
    that could not be asked afterwards whether it committed them: stored or not, nobody
    knows (not counted in ``dropped``). ``ring_usage`` is as of
    the last committed batch (empty until then). ``writer_alive`` is False only when the
    writer thread died and could not be started again (what liveness probes want to know); a
    writer stopped by ``close()`` or never needed (``read_only``) counts as alive.
    """

    status: HealthStatus
    queue_depth: int
    queue_capacity: int
    written: int
    dropped: int
    coalesced: int
    last_error: str | None
    last_error_time_us: int | None
    ring_usage: dict[str, RingUsage] = field(default_factory=dict)
    writer_alive: bool = True
    outcome_unknown: int = 0  # last, with a default: code that builds a StoreHealth still does


@dataclass(frozen=True, slots=True)
class SpanLatency:
    """Span durations of one span name, in milliseconds (nearest-rank percentiles)."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What the store holds, over the rows still in the ring (``since`` narrows it).

    Event counts are rows by severity name and by type; ``event_occurrences`` and the
    ``occurrences_by_*`` maps add up the coalesced ``count`` of those rows (nine failed logins
    coalesced into one row are one row, nine occurrences). ``written``, ``dropped`` and
    ``coalesced`` are totals over the store's life across every process that wrote to it.
    """

    events: int
    event_occurrences: int
    events_by_severity: dict[str, int]
    events_by_type: dict[str, int]
    occurrences_by_severity: dict[str, int]
    occurrences_by_type: dict[str, int]
    spans: int
    span_latency: dict[str, SpanLatency]
    metrics: int
    written: int
    dropped: int
    coalesced: int
    ring_usage: dict[str, RingUsage]
