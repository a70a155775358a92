"""Coalescing: identical events inside the window become one row whose count grows."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path

from store_helpers import make_event, make_span, now_us

from ragtrail._records import Severity
from ragtrail.store import AuditStore
from ragtrail.store._coalesce import MAX_TYPES_PER_SOURCE, Coalescer

S = 1_000_000
T0 = 1_700_000_000_000_000


def test_identical_events_become_one_row_with_a_count(
        backend_store: Callable[..., AuditStore]) -> None:
    """Repeats of (type, source, severity) inside the window add to the first row's count."""
    store = backend_store(event_coalesce_seconds=60)
    first = make_event("login_failed", Severity.MEDIUM, "auth", time_us=T0,
                       description="first", metadata={"user": "a"})
    store.record(first)
    for i in range(1, 100):
        store.record(make_event("login_failed", Severity.MEDIUM, "auth", time_us=T0 + i,
                                description=f"repeat {i}"))
    assert store.flush(10)
    (row,) = store.events()
    assert (row.count, row.description, row.metadata, row.time_us) == (100, "first",
                                                                        {"user": "a"}, T0)
    assert store.health().coalesced == 99
    stats = store.stats()
    assert (stats.events, stats.event_occurrences, stats.coalesced) == (1, 100, 99)


def test_repeats_after_the_row_is_written_update_its_count(
        backend_store: Callable[..., AuditStore]) -> None:
    """Repeats arriving after the first event was committed still land on that row."""
    store = backend_store()
    store.record(make_event("scan", Severity.HIGH, "edge", time_us=T0))
    assert store.flush(10)
    for batch in range(3):
        for i in range(10):
            store.record(make_event("scan", Severity.HIGH, "edge", time_us=T0 + batch * 10 + i))
        assert store.flush(10)
        assert [e.count for e in store.events()] == [1 + 10 * (batch + 1)]


def test_different_keys_are_not_coalesced(backend_store: Callable[..., AuditStore]) -> None:
    """Another type, source or severity is another row."""
    store = backend_store()
    for event_type, severity, source in [("a", Severity.LOW, "s"), ("b", Severity.LOW, "s"),
                                         ("a", Severity.HIGH, "s"), ("a", Severity.LOW, "t"),
                                         ("a", Severity.LOW, "s")]:
        store.record(make_event(event_type, severity, source, time_us=T0))
    assert store.flush(10)
    assert sorted(e.count for e in store.events()) == [1, 1, 1, 2]


def test_a_repeat_after_the_window_starts_a_new_row(
        backend_store: Callable[..., AuditStore]) -> None:
    """The window is measured on the events' own times: a later repeat opens a new one."""
    store = backend_store(event_coalesce_seconds=10)
    for offset in (0, 5 * S, 10 * S, 12 * S, 25 * S):
        store.record(make_event("probe", Severity.LOW, "x", time_us=T0 + offset))
    assert store.flush(10)
    assert [((e.time_us - T0) // S, e.count) for e in store.events()] == [(25, 1), (10, 2),
                                                                            (0, 2)]


def test_zero_window_turns_coalescing_off(backend_store: Callable[..., AuditStore]) -> None:
    """event_coalesce_seconds=0 stores every event as its own row."""
    store = backend_store(event_coalesce_seconds=0)
    for _ in range(5):
        store.record(make_event("same", Severity.LOW, "same", time_us=T0))
    assert store.flush(10)
    assert [e.count for e in store.events()] == [1] * 5


def test_counts_are_exact_with_many_threads(backend_store: Callable[..., AuditStore]) -> None:
    """Eight threads repeating one event: the row's count is exactly the number recorded."""
    store = backend_store()

    def work() -> None:
        for i in range(2000):
            store.record(make_event("flood", Severity.LOW, "bot", time_us=T0 + i))
            if i % 500 == 0:
                store.flush(10)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.flush(10)
    assert [e.count for e in store.events()] == [16_000]


def test_flood_from_one_source_keeps_other_events(
        backend_store: Callable[..., AuditStore]) -> None:
    """100,000 identical junk events take one row, so other sources' events stay (issue 6)."""
    store = backend_store(events_capacity=20)
    others = [make_event(severity=Severity.LOW) for _ in range(19)]
    for event in others:
        store.record(event)
    start = now_us()  # windows of past events close at the writer's next idle tick
    for i in range(100_000):
        store.record(make_event("junk", Severity.LOW, "bot", time_us=start + i))
    assert store.flush(30)
    kept = store.events(limit=None)
    assert {e.event_type for e in kept} == {"junk"} | {e.event_type for e in others}
    assert [e.count for e in kept if e.event_type == "junk"] == [100_000]
    assert store.health().dropped == 0


def test_one_source_gets_a_bounded_number_of_rows_per_window(
        store_factory: Callable[..., AuditStore]) -> None:
    """Past MAX_TYPES_PER_SOURCE distinct types from one source and severity, new types share
    one overflow row that says so and counts them; other sources and severities are untouched."""
    store = store_factory(event_coalesce_seconds=60)
    extra = 500
    for i in range(MAX_TYPES_PER_SOURCE + extra):
        store.record(make_event(f"probe_{i}", Severity.HIGH, source="203.0.113.9"))
    store.record(make_event("authz_fail", Severity.HIGH, source="10.0.0.1"))
    store.record(make_event("probe_x", Severity.LOW, source="203.0.113.9"))
    assert store.flush(timeout=30)
    attacker = store.events(source="203.0.113.9", limit=None)
    assert len(attacker) == MAX_TYPES_PER_SOURCE + 2  # the capped types, overflow, the low one
    overflow = [e for e in attacker if e.description.startswith("more than")]
    assert len(overflow) == 1
    assert overflow[0].count == extra
    assert overflow[0].event_type == f"probe_{MAX_TYPES_PER_SOURCE}"
    assert [e.event_type for e in store.events(source="10.0.0.1")] == ["authz_fail"]


def test_low_and_medium_types_are_not_capped(store_factory: Callable[..., AuditStore]) -> None:
    """The cap guards the high and critical reserves only: varied low and medium events keep
    a row each (the ring's per-severity reserves keep them from evicting anything higher)."""
    store = store_factory(event_coalesce_seconds=60)
    for i in range(MAX_TYPES_PER_SOURCE + 10):
        store.record(make_event(f"noise_{i}", Severity.MEDIUM, source="203.0.113.9"))
    assert store.flush(timeout=30)
    rows = store.events(source="203.0.113.9", limit=None)
    assert len(rows) == MAX_TYPES_PER_SOURCE + 10
    assert not any(e.description.startswith("more than") for e in rows)


def test_a_new_window_leaves_nothing_the_garbage_collector_tracks() -> None:
    """A new event is queued as it is, and its window is plain integers under a key of
    strings and integers (not the Severity member, which the collector tracks). Objects kept
    for a window's length reach the oldest generation, whose growth triggers full
    collections: a flood of new events into a full ring ran 0.63x of raw sqlite3 with a
    tracked key and a window object per event, 0.71x with untracked keys (medians of 5)."""
    coalescer = Coalescer(window_s=60.0, max_keys=100)
    for i in range(50):
        event = make_event(severity=Severity.HIGH, source=f"10.0.0.{i}")
        item = coalescer.admit(event)
        assert item is event
        coalescer.register(item)
    gc.collect()
    kept = [*coalescer.open, *coalescer.open.values(), *coalescer._types,
            *coalescer._types.values()]
    assert len(kept) == 200
    assert [thing for thing in kept if gc.is_tracked(thing)] == []


def test_sweeping_expired_windows_survives_new_ones_opened_meanwhile() -> None:
    """Recording threads open windows without the lock while the writer sweeps expired ones.
    A garbage collection inside the sweep runs Python code (finalizers), where another
    thread can run: the sweep iterated the live tables, and a window opened there crashed the
    writer thread ("dictionary changed size during iteration"; seen in a soak, the store's
    health failing for a second each time). A gc callback stands in for that thread here
    (collections run at allocation on Python 3.11, so this fails there without the fix)."""
    coalescer = Coalescer(window_s=60.0, max_keys=10_000)
    for i in range(300):
        coalescer.register(coalescer.admit(make_event(severity=Severity.HIGH, source=f"s{i}",
                                                      time_us=T0)))
    opened_meanwhile = 0

    def open_one_meanwhile(phase: str, info: dict[str, int]) -> None:
        nonlocal opened_meanwhile
        if phase == "start":
            opened_meanwhile += 1
            item = coalescer.admit(make_event(severity=Severity.HIGH, time_us=T0 + 61 * S))
            assert item is not None
            coalescer.register(item)

    thresholds = gc.get_threshold()
    gc.callbacks.append(open_one_meanwhile)
    gc.set_threshold(1)
    try:
        coalescer.close_expired(T0 + 61 * S)
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(open_one_meanwhile)
    assert opened_meanwhile > 0
    assert all(key[1] not in {f"s{i}" for i in range(300)} for key in coalescer.open)


def test_repeats_reach_an_event_written_after_its_window_was_forgotten() -> None:
    """The database was down past the window: the window is forgotten while its first event
    is still queued, yet the repeats counted before still reach that event's row."""
    coalescer = Coalescer(window_s=60.0, max_keys=100)
    event = make_event(event_type="authz_fail", source="10.0.0.7")
    assert coalescer.admit(event) is event
    coalescer.register(event)
    for _ in range(3):
        assert coalescer.admit(make_event(event_type="authz_fail", source="10.0.0.7")) is None
    coalescer.close_expired(event.time_us + 120_000_000)
    assert coalescer.open == {}
    slot = coalescer.promoted(event)
    assert slot is not None
    assert slot.hits == 3
    coalescer.written([event], [41])
    assert slot.row_id == 41
    assert coalescer.take_dirty() == [slot]


def test_windows_close_under_steady_traffic_so_coalescing_goes_on(
        store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    """Expired windows were forgotten only after a second with nothing to write: on a pod
    with steady traffic the open-window table filled up (``queue_size`` keys) and from then
    on every new kind of event was stored alone, one 401 after another. (Seen in a soak.)"""
    store = store_factory(f"sqlite:///{tmp_path / 'a.db'}", queue_size=50,
                          event_coalesce_seconds=0.3, batch_linger_seconds=0)
    for _ in range(60):  # distinct keys: the table of open windows is full
        store.record(make_event())
    busy_until = time.monotonic() + 1.6  # past their windows, and past one sweep
    while time.monotonic() < busy_until:  # spans keep the writer from ever idling a second
        store.record(make_span())
        time.sleep(0.01)  # pacing the traffic, not waiting for anything
    for _ in range(20):
        store.record(make_event("authn_login_fail", Severity.MEDIUM, "client-7"))
    assert store.flush(10)
    (row,) = store.events(event_type="authn_login_fail", limit=None)
    assert row.count == 20


def test_an_expired_window_is_replaced_even_when_the_table_is_full() -> None:
    """A key whose window ended gets a new one in place: it takes no new room."""
    coalescer = Coalescer(window_s=1, max_keys=1)
    first = make_event("scan", Severity.HIGH, "edge", time_us=T0)
    coalescer.register(first)
    later = make_event("scan", Severity.HIGH, "edge", time_us=T0 + 2 * S)
    assert coalescer.admit(later) is later  # its window ended: a new row
    coalescer.register(later)
    assert coalescer.admit(make_event("scan", Severity.HIGH, "edge",
                                      time_us=T0 + 2 * S + 1)) is None  # a repeat of it
