"""The ring buffer: exact capacity, newest kept, per-severity reserves, many threads/processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import make_event, make_sample, make_span

from ragtrail._records import Severity
from ragtrail.store import RESERVED_SHARE, AuditStore, RingUsage
from ragtrail.store import _ring as ring_module
from ragtrail.store._ring import RingTable, evictions
from ragtrail.store._schema import EVENTS

CHILD = Path(__file__).with_name("store_child.py")


def test_below_capacity_nothing_is_lost(backend_store: Callable[..., AuditStore]) -> None:
    """Up to capacity, every record of every kind is kept."""
    store = backend_store(events_capacity=100, spans_capacity=100, metrics_capacity=100)
    for _ in range(100):
        store.record(make_event())
        store.record(make_span())
        store.record(make_sample())
    assert store.flush(10)
    stats = store.stats()
    assert (stats.events, stats.spans, stats.metrics) == (100, 100, 100)


def test_above_capacity_exactly_the_newest_are_kept(
        backend_store: Callable[..., AuditStore]) -> None:
    """Past capacity each table keeps exactly capacity rows: the newest, oldest dropped first."""
    store = backend_store(events_capacity=30, spans_capacity=20, metrics_capacity=10,
                          batch_size=7)
    events = [make_event() for _ in range(100)]
    spans = [make_span() for _ in range(100)]
    for event, span in zip(events, spans, strict=True):
        store.record(event)
        store.record(span)
        store.record(make_sample(queue_depth=len(spans)))
    assert store.flush(10)
    assert [e.event_type for e in store.events(limit=None)] == \
        [e.event_type for e in events[::-1][:30]]
    assert store.spans(limit=None) == spans[::-1][:20]
    assert len(store.metrics(limit=None)) == 10
    assert store.health().ring_usage == {
        "events": RingUsage(30, 30), "spans": RingUsage(20, 20), "metrics": RingUsage(10, 10)}


def test_a_smaller_capacity_is_reached_over_a_few_writes(
        backend_url: str, store_factory: Callable[..., AuditStore],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer with a smaller capacity (a replica with a stale ConfigMap) trimmed the shared
    table in one statement, which a statement_timeout cancelled on every retry: each write
    now removes its own rows plus a bounded excess, and the table still reaches the capacity
    with the newest rows kept. (The bound is lowered here so a few hundred rows show it.)"""
    monkeypatch.setattr(ring_module, "EXCESS_TRIMMED_PER_WRITE", 100)
    big = store_factory(backend_url, spans_capacity=1000)
    spans = [make_span() for _ in range(450)]
    for span in spans:
        big.record(span)
    assert big.flush(10)
    big.close()
    small = store_factory(backend_url, spans_capacity=50, batch_linger_seconds=0)
    sizes = []
    for _ in range(5):
        spans.append(make_span())
        small.record(spans[-1])
        assert small.flush(10)
        sizes.append(small.stats().spans)
    assert sizes == [350, 250, 150, 50, 50]  # 451 - (1 + 100), ..., then the capacity
    assert small.spans(limit=None) == spans[::-1][:50]
    assert small.health().ring_usage["spans"] == RingUsage(50, 50)


def test_concurrent_threads_keep_exact_capacity(
        backend_store: Callable[..., AuditStore]) -> None:
    """Eight threads recording at once: nothing lost below capacity, exactly capacity above."""
    roomy = backend_store(events_capacity=10_000, batch_size=50)
    tight = backend_store(spans_capacity=300, batch_size=50)

    def work(thread: int) -> None:
        for seq in range(250):
            roomy.record(make_event(f"t{thread}", source=f"s{seq}"))
            tight.record(make_span(f"t{thread}", duration_us=seq))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert roomy.flush(30)
    assert tight.flush(30)
    assert roomy.stats().events == 2000
    kept = tight.spans(limit=None)
    assert len(kept) == 300
    assert_newest_per_writer(kept_by_writer={
        name: [s.duration_us for s in kept if s.name == name] for name in {s.name for s in kept}},
        total=250)


def assert_newest_per_writer(kept_by_writer: dict[str, list[int]], total: int) -> None:
    """Each writer's kept sequence numbers are its last ones, without gaps."""
    for writer, seqs in kept_by_writer.items():
        assert sorted(seqs) == list(range(total - len(seqs), total)), writer


def run_children(url: str, workers: int, n: int, options: dict[str, object]) -> None:
    env = {**os.environ, "STORE_CHILD_OPTIONS": json.dumps(options)}
    children = [subprocess.Popen([sys.executable, str(CHILD), url, str(w), str(n), "close"],
                                 env=env, stderr=subprocess.PIPE, text=True)
                for w in range(workers)]
    for child in children:
        _out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err


@pytest.mark.slow
@pytest.mark.parametrize(("capacity", "expected"), [(5000, 1200), (500, 500)])
def test_four_processes_share_one_ring(backend_url: str, store_factory: Callable[..., AuditStore],
                                       capacity: int, expected: int) -> None:
    """Four processes writing one store: all kept below capacity; above it exactly capacity,
    the newest of each process, with IDs contiguous (commit order)."""
    options = {"events_capacity": capacity, "spans_capacity": capacity, "batch_size": 10}
    run_children(backend_url, workers=4, n=300, options=options)
    reader = store_factory(backend_url, read_only=True)
    for kept in (reader.events(limit=None), reader.spans(limit=None)):
        assert len(kept) == expected
    events = reader.events(limit=None)
    ids = sorted(e.id for e in events if e.id is not None)
    assert ids == list(range(ids[0], ids[0] + expected))
    by_worker: dict[str, list[int]] = defaultdict(list)
    for event in events:
        by_worker[event.event_type].append(int(event.description))
    assert_newest_per_writer(by_worker, total=300)
    stats = reader.stats()
    assert stats.ring_usage["events"] == RingUsage(expected, capacity)
    assert stats.written == 2400


# -- per-severity reserves ------------------------------------------------------------------

def test_eviction_plan_takes_lowest_severity_above_its_reserve() -> None:
    """Each new row evicts one from the lowest severity above its reserve, as if rows came
    one at a time, whatever the batching."""
    low, medium, high, critical = (int(s) for s in Severity)
    assert RESERVED_SHARE == {Severity.LOW: 0.10, Severity.MEDIUM: 0.10,
                              Severity.HIGH: 0.25, Severity.CRITICAL: 0.25}
    full = {0: 100, low: 12, medium: 11, high: 40, critical: 37}
    assert evictions(full, [critical] * 5, 100) == [(low, 2), (medium, 1), (high, 2)]
    # a low below its reserve takes its room from the lowest severity above its own reserve
    assert evictions({0: 100, low: 5, medium: 10, high: 25, critical: 60}, [low], 100) == \
        [(critical, 1)]
    assert evictions({0: 90, low: 90}, [low] * 20, 100) == [(low, 10)]
    assert evictions({0: 50, medium: 50}, [low] * 100, 50) == [(low, 95), (medium, 5)]
    assert evictions({0: 150, low: 150}, [], 100) == [(low, 50)]  # capacity was lowered


@settings(max_examples=500, deadline=None)
@given(capacity=st.integers(1, 40),
       start=st.lists(st.sampled_from(list(Severity)), max_size=60),
       incoming=st.lists(st.sampled_from(list(Severity)), max_size=60))
def test_eviction_plan_matches_a_row_by_row_model(
        capacity: int, start: list[Severity], incoming: list[Severity]) -> None:
    """evictions() equals a plain model: rows added one by one, each time the ring is over
    capacity the oldest row of the lowest severity above its reserve goes."""
    reserve = {level: int(capacity * RESERVED_SHARE[level]) for level in Severity}
    rows = list(start)  # oldest first; the stored state may exceed a lowered capacity
    evicted = dict.fromkeys(Severity, 0)

    def trim() -> None:
        while len(rows) > capacity:
            level = next(lv for lv in Severity if rows.count(lv) > reserve[lv])
            rows.remove(level)  # the oldest of that severity
            evicted[level] += 1

    trim()
    for level in incoming:
        rows.append(level)
        trim()
    before = {0: len(start), **{int(lv): start.count(lv) for lv in Severity}}
    expected = [(int(lv), n) for lv, n in evicted.items() if n]
    assert evictions(before, [int(lv) for lv in incoming], capacity) == expected


def test_low_flood_never_evicts_high_or_critical(
        backend_store: Callable[..., AuditStore]) -> None:
    """However many distinct low/medium events arrive, every high and critical one stays."""
    store = backend_store(events_capacity=50, batch_size=40)
    important = [make_event(severity=Severity.HIGH if i % 2 else Severity.CRITICAL)
                 for i in range(40)]
    for event in important:
        store.record(event)
    assert store.flush(10)
    junk = [make_event(severity=Severity.LOW if i % 3 else Severity.MEDIUM) for i in range(500)]
    for event in junk:
        store.record(event)
    assert store.flush(10)
    kept = store.events(limit=None)
    assert len(kept) == 50
    assert {e.event_type for e in important} <= {e.event_type for e in kept}
    assert sum(e.severity < Severity.HIGH for e in kept) == 10


def test_flood_displaces_at_most_its_reserve_of_high_events(
        backend_store: Callable[..., AuditStore]) -> None:
    """In a ring full of high events, a low flood takes its 10% reserve (from the oldest high
    events) and then only evicts itself."""
    store = backend_store(events_capacity=40)
    highs = [make_event(severity=Severity.HIGH) for _ in range(40)]
    for event in highs:
        store.record(event)
    assert store.flush(10)
    for _ in range(300):
        store.record(make_event(severity=Severity.LOW))
    assert store.flush(10)
    kept = store.events(limit=None)
    assert [e.event_type for e in kept if e.severity == Severity.HIGH] == \
        [e.event_type for e in highs[::-1][:36]]
    assert sum(e.severity == Severity.LOW for e in kept) == 4


def test_newest_low_events_keep_their_reserve(
        backend_store: Callable[..., AuditStore]) -> None:
    """Higher severities get the room beyond the reserves, but low events always keep their
    newest tenth of the ring, even when it is full of medium events."""
    store = backend_store(events_capacity=50)
    mediums = [make_event(severity=Severity.MEDIUM) for _ in range(100)]
    for event in mediums:
        store.record(event)
    assert store.flush(10)
    lows = [make_event(severity=Severity.LOW) for _ in range(100)]
    for event in lows:
        store.record(event)
    assert store.flush(10)
    kept = store.events(limit=None)
    assert [e.event_type for e in kept if e.severity == Severity.LOW] == \
        [e.event_type for e in lows[::-1][:5]]
    assert [e.event_type for e in kept if e.severity == Severity.MEDIUM] == \
        [e.event_type for e in mediums[::-1][:45]]


def test_critical_flood_leaves_high_events_their_reserve(
        backend_store: Callable[..., AuditStore]) -> None:
    """A flood of critical events evicts high ones only down to a quarter of the capacity."""
    store = backend_store(events_capacity=40)
    highs = [make_event(severity=Severity.HIGH) for _ in range(40)]
    for event in highs:
        store.record(event)
    assert store.flush(10)
    for _ in range(200):
        store.record(make_event(severity=Severity.CRITICAL))
    assert store.flush(10)
    kept_high = store.events(limit=None, min_severity="high")
    assert sum(e.severity == Severity.HIGH for e in kept_high) == 10
    assert [e.event_type for e in kept_high if e.severity == Severity.HIGH] == \
        [e.event_type for e in highs[::-1][:10]]
    assert len(store.events(limit=None)) == 40


def test_trimming_cost_does_not_grow_with_the_table(
        store_factory: Callable[..., AuditStore]) -> None:
    """Writing a batch into a full ring of 40,000 rows takes about as many SQLite VM steps as
    into a full ring of 1,000 (trimming is O(batch)); counting the table would take 40x."""
    steps = {}
    for capacity in (1_000, 40_000):
        store = store_factory(events_capacity=capacity, spans_capacity=capacity,
                              queue_size=100_000, batch_size=500)
        for i in range(capacity + 500):
            store.record(make_event(severity=Severity.HIGH if i % 10 == 0 else Severity.LOW))
            store.record(make_span())
        assert store.flush(60)
        counter = [0]

        def progress(counter: list[int] = counter) -> int:
            counter[0] += 1  # called every 100 SQLite VM instructions
            return 0  # go on

        sqlalchemy.event.listen(store.engine, "checkout",
                     lambda dbapi, _record, _proxy, handler=progress:
                     dbapi.set_progress_handler(handler, 100))
        for _ in range(500):
            store.record(make_event(severity=Severity.LOW))
            store.record(make_span())
        assert store.flush(60)
        assert store.health().ring_usage["events"] == RingUsage(capacity, capacity)
        steps[capacity] = counter[0]
    assert steps[40_000] < 1.5 * steps[1_000], steps


@pytest.mark.postgres
def test_writers_lock_a_rings_buckets_in_order(postgres_db_url: str,
                                              store_factory: Callable[..., AuditStore]) -> None:
    """A writer locks bucket 0 first and the others after it, wherever updates left their
    rows in the heap: locked in scan order, two writers each held some buckets and waited for
    the other's (PostgreSQL reported deadlocks with four writers). Here bucket 0's row is
    moved to the end of the heap and held by another transaction: a writer waiting for it
    must hold no other bucket meanwhile."""
    store = store_factory(postgres_db_url)
    store.record(make_event())
    assert store.flush(10)
    engine = sqlalchemy.create_engine(postgres_db_url)
    events = "ragtrail_ring.ring = 'events'"
    lock = f"SELECT bucket FROM ragtrail_ring WHERE {events} AND bucket = :b FOR UPDATE"
    try:
        with engine.begin() as conn:  # an update puts the row's new version last
            conn.execute(sqlalchemy.text(
                f"UPDATE ragtrail_ring SET row_count = row_count WHERE {events} AND bucket = 0"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # Statistics as autovacuum gathers them: a table this small is then scanned
            # sequentially, in heap order (without them the planner may use the key's index).
            conn.execute(sqlalchemy.text("ANALYZE ragtrail_ring"))
        with engine.connect() as conn:
            heap_order = conn.execute(sqlalchemy.text(
                f"SELECT bucket FROM ragtrail_ring WHERE {events} ORDER BY ctid")).scalars().all()
        assert heap_order[-1] == 0, heap_order  # the order a sequential scan meets them
        with engine.connect() as holder, engine.connect() as writer, \
                engine.connect() as prober:
            holder.begin()
            holder.execute(sqlalchemy.text(lock), {"b": 0})
            writer_pid = writer.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar()
            writer.rollback()
            ring = RingTable("events", EVENTS, 100)

            def write() -> None:
                with writer.begin():
                    ring.open(writer, adding=True)

            thread = threading.Thread(target=write)
            thread.start()
            try:
                _wait_until_blocked(prober, writer_pid)
                with prober.begin():
                    # NOWAIT: fails at once if the waiting writer took bucket 10 before 0.
                    prober.execute(sqlalchemy.text(lock + " NOWAIT"), {"b": 10})
            finally:
                holder.rollback()
                thread.join(10)
            assert not thread.is_alive()
    finally:
        engine.dispose()


def _wait_until_blocked(conn: sqlalchemy.Connection, pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    query = sqlalchemy.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
    while conn.execute(query, {"pid": pid}).scalar() != "Lock":
        conn.rollback()  # a fresh snapshot of pg_stat_activity each time
        assert time.monotonic() < deadline, "the writer never waited for the ring lock"
        time.sleep(0.01)
    conn.rollback()
