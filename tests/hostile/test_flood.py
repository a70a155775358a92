"""A million junk events from one source against a small events ring: the last high and
critical events of every other source survive, and the file stays within its bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path

from ragtrail import AuditStore, SecurityEvent, Severity
from ragtrail.store._coalesce import MAX_TYPES_PER_SOURCE

CAPACITY = 1_000
FLOOD = 1_000_000
ATTACKER = "203.0.113.9"
OTHERS = [f"10.0.{i}.1" for i in range(10)]
# Generous: a ring of 1,000 small rows needs well under a megabyte; the file may keep pages
# freed by trimming, but it must not grow with the number of events recorded.
MAX_FILE_BYTES = 8 * 1024 * 1024

StoreFactory = Callable[..., AuditStore]


def _event(event_type: str, severity: Severity, source: str, description: str) -> SecurityEvent:
    return SecurityEvent(event_type, severity, source, description, time.time_ns() // 1000)


def _junk(high_types: int) -> list[SecurityEvent]:
    """The attacker's repertoire, cycled through: identical events (coalesced), 5,000 distinct
    low/medium types with varied descriptions (too many for coalescing to absorb), and high
    events of ``high_types`` types."""
    pool = [_event("input_validation_fail", Severity.LOW, ATTACKER, "same junk")] * 10_000
    pool += [_event(f"junk_{i % 5_000}", Severity.LOW if i % 2 else Severity.MEDIUM, ATTACKER,
                    f"junk description {i}") for i in range(8_000)]
    pool += [_event(f"malicious_junk_{i % high_types}", Severity.HIGH, ATTACKER,
                    f"hostile junk {i}") for i in range(2_000)]
    return pool


def _others() -> list[SecurityEvent]:
    """Each other source's last events: one high and one critical."""
    return [_event(kind, severity, source, f"{kind} from {source}")
            for source in OTHERS
            for kind, severity in (("authz_fail", Severity.HIGH),
                                   ("malicious_file_upload", Severity.CRITICAL))]


def _flood(store: AuditStore, high_types: int) -> tuple[list[SecurityEvent], float]:
    others = _others()
    for event in others:
        store.record(event)
    assert store.flush(timeout=30)
    started = time.perf_counter()
    for event in islice(cycle(_junk(high_types)), FLOOD):
        store.record(event)
    assert store.flush(timeout=120)
    return others, time.perf_counter() - started


def _survivors(store: AuditStore, others: list[SecurityEvent]) -> set[tuple[str, str]]:
    kept = {(e.source, e.event_type) for e in store.events(min_severity="high", limit=None)}
    return {(e.source, e.event_type) for e in others} & kept


def _file_bytes(database: Path) -> int:
    return sum(p.stat().st_size for p in database.parent.glob(database.name + "*"))


def test_flood_cannot_evict_other_sources_high_and_critical_events(
        store_factory: StoreFactory, tmp_path: Path) -> None:
    """1,000,000 junk events (identical, 5,000 low/medium types, three high types) from one
    source: every other source's high and critical event is still there, the ring holds at
    most its capacity, and the file stays small."""
    database = tmp_path / "flood.db"
    store = store_factory(f"sqlite:///{database}", events_capacity=CAPACITY)
    others, seconds = _flood(store, high_types=3)
    assert _survivors(store, others) == {(e.source, e.event_type) for e in others}
    stats = store.stats()
    assert stats.ring_usage["events"].rows <= CAPACITY
    assert len(store.events(limit=None)) <= CAPACITY
    health = store.health()
    assert health.coalesced > FLOOD // 2  # the identical and repeated ones became counts
    assert health.written > 4 * CAPACITY  # and the distinct ones still overflowed the ring
    store.close(timeout=30)
    size = _file_bytes(database)
    assert size <= MAX_FILE_BYTES, size
    print(f"flood: {FLOOD} events in {seconds:.1f} s ({FLOOD / seconds:,.0f}/s); "
          f"coalesced {health.coalesced}, dropped {health.dropped}; file {size} bytes")


def test_flood_of_distinct_high_types_cannot_evict_other_sources(
        store_factory: StoreFactory, tmp_path: Path) -> None:
    """The same flood with 2,000 distinct high-severity types from the attacker: past its cap
    on distinct high types they share one overflow row."""
    store = store_factory(f"sqlite:///{tmp_path / 'flood.db'}", events_capacity=CAPACITY)
    others, _ = _flood(store, high_types=2_000)
    assert _survivors(store, others) == {(e.source, e.event_type) for e in others}
    attacker_high = store.events(source=ATTACKER, min_severity="high", limit=None)
    assert len(attacker_high) <= MAX_TYPES_PER_SOURCE + 1
