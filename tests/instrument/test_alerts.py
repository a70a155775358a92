"""AlertDispatcher: pool threads, severity filters, coalescing windows, failure and hang
isolation, bounded queue and threads."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redaction_canaries import CANARIES, leaked

from ragtrail._records import SecurityEvent
from ragtrail._settings import Settings
from ragtrail.instrument._alerts import AlertDispatcher
from ragtrail.instrument._events import build_security_event
from ragtrail.instrument._redaction import Redactor

SETTINGS = Settings(alert_coalesce_seconds=300.0)
REDACTOR = Redactor(SETTINGS)
DEADLINE = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """An alert callback that remembers what it got and on which thread."""

    def __init__(self, min_severity: str | None = None) -> None:
        if min_severity is not None:
            self.min_severity = min_severity
        self.events: list[SecurityEvent] = []
        self.threads: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, event: SecurityEvent) -> None:
        with self._lock:
            self.events.append(event)
            self.threads.append(threading.get_ident())

    def wait_for(self, count: int) -> list[SecurityEvent]:
        poll(lambda: len(self.events) >= count, f"{count} alert(s)")
        return list(self.events)


class Hanging:
    """An alert callback that blocks until ``release`` is set; remembers who called."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def __call__(self, event: SecurityEvent) -> None:
        self.calls.append(event.source)
        self.release.wait(DEADLINE)


def poll(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def event(event_type: str = "authz_fail", source: str = "10.0.0.7", severity: str = "high",
          description: str = "denied") -> SecurityEvent:
    return build_security_event(SETTINGS, REDACTOR, event_type, severity, source, description)


@pytest.fixture
def dispatcher_factory() -> Iterator[Callable[..., AlertDispatcher]]:
    made: list[AlertDispatcher] = []
    releases: list[threading.Event] = []

    def make(**kwargs: Any) -> AlertDispatcher:
        releases.extend(kwargs.pop("releases", []))
        dispatcher = AlertDispatcher(kwargs.pop("settings", SETTINGS), **kwargs)
        made.append(dispatcher)
        return dispatcher

    yield make
    for release in releases:
        release.set()
    for dispatcher in made:
        dispatcher.shutdown(timeout=5)


def alert_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ragtrail-alerts")]


def test_callback_runs_on_a_pool_thread_not_the_callers(dispatcher_factory: Any) -> None:
    """The app's thread only enqueues; the callback runs on a ragtrail-alerts thread."""
    dispatcher = dispatcher_factory()
    recorder = dispatcher.register(Recorder())
    dispatcher.submit(event())
    recorder.wait_for(1)
    assert recorder.threads[0] != threading.get_ident()
    assert dispatcher.health()["delivered"] == 1


def test_min_severity_filters_per_callback(dispatcher_factory: Any) -> None:
    """A callback sees only events at or above its minimum severity."""
    dispatcher = dispatcher_factory()
    pager = dispatcher.register(Recorder(), min_severity="critical")
    chat = dispatcher.register(Recorder(), min_severity="medium")
    dispatcher.submit(event(source="a", severity="low"))
    dispatcher.submit(event(source="b", severity="medium"))
    dispatcher.submit(event(source="c", severity="critical"))
    assert dispatcher.flush(DEADLINE)
    assert [e.source for e in pager.events] == ["c"]
    assert sorted(e.source for e in chat.events) == ["b", "c"]


def test_default_min_severity_comes_from_the_callback_then_settings(
        dispatcher_factory: Any) -> None:
    """Without min_severity: the callback's own attribute, else alert_min_severity."""
    dispatcher = dispatcher_factory(settings=Settings(alert_min_severity="medium"))
    own = dispatcher.register(Recorder(min_severity="critical"))
    default = dispatcher.register(Recorder())
    dispatcher.submit(event(severity="medium"))
    assert dispatcher.flush(DEADLINE)
    assert (len(own.events), len(default.events)) == (0, 1)


def test_repeats_inside_the_window_are_coalesced_then_summarised(
        dispatcher_factory: Any) -> None:
    """One alert per (type, source) per window; the latest repeat is summarised after it."""
    clock = FakeClock()
    dispatcher = dispatcher_factory(clock=clock, supervise_interval=3600)
    recorder = dispatcher.register(Recorder())
    for i in range(5):
        dispatcher.submit(event(description=f"attempt {i}"))
        clock.advance(10)
    assert dispatcher.flush(DEADLINE)
    assert [e.description for e in recorder.events] == ["attempt 0"]
    assert dispatcher.health()["coalesced"] == 4

    clock.advance(300)
    assert dispatcher.flush(DEADLINE)
    summary = recorder.events[1]
    assert summary.description == "attempt 4"
    assert summary.metadata["suppressed_count"] == 3  # attempts 1-3; 4 is this alert


def test_next_event_after_the_window_carries_the_suppressed_count(
        dispatcher_factory: Any) -> None:
    """The first event after a window reports how many were held back before it."""
    clock = FakeClock()
    dispatcher = dispatcher_factory(clock=clock, supervise_interval=3600)
    recorder = dispatcher.register(Recorder())
    for _ in range(3):
        dispatcher.submit(event())
    clock.advance(301)
    dispatcher.submit(event(description="after"))
    assert dispatcher.flush(DEADLINE)
    assert [(e.description, e.metadata.get("suppressed_count")) for e in recorder.events] == [
        ("denied", None), ("after", 2)]


def test_a_more_severe_event_is_never_held_back_by_a_window(dispatcher_factory: Any) -> None:
    """A critical after a high of the same type and source: the critical-only pager gets it
    at once (it was suppressed in the high's window: a summary 300 s later, or, if another
    high followed, only a count in a high summary the pager never sees)."""
    clock = FakeClock()
    dispatcher = dispatcher_factory(clock=clock, supervise_interval=3600)
    pager = dispatcher.register(Recorder(), min_severity="critical")
    chat = dispatcher.register(Recorder(), min_severity="high")
    dispatcher.submit(event(severity="high", description="first"))
    clock.advance(5)
    dispatcher.submit(event(severity="critical", description="escalated"))
    clock.advance(5)
    dispatcher.submit(event(severity="high", description="after"))  # held: no worse
    assert dispatcher.flush(DEADLINE)
    assert [e.description for e in pager.events] == ["escalated"]
    assert [e.description for e in chat.events] == ["first", "escalated"]
    assert dispatcher.health()["coalesced"] == 1


def test_different_sources_and_types_are_not_coalesced(dispatcher_factory: Any) -> None:
    """Coalescing is per (event_type, source)."""
    dispatcher = dispatcher_factory(clock=FakeClock())
    recorder = dispatcher.register(Recorder())
    for event_type, source in [("authz_fail", "a"), ("authz_fail", "b"), ("server_error", "a")]:
        dispatcher.submit(event(event_type, source))
    assert dispatcher.flush(DEADLINE)
    assert len(recorder.events) == 3


def test_every_event_is_alerted_or_counted_in_a_later_alert(dispatcher_factory: Any) -> None:
    """Alerts plus their suppressed counts add up to the events submitted."""
    clock = FakeClock()
    dispatcher = dispatcher_factory(clock=clock, supervise_interval=3600)
    recorder = dispatcher.register(Recorder())
    submitted = 0
    for step in range(200):
        dispatcher.submit(event(source=f"10.0.0.{step % 3}"))
        submitted += 1
        clock.advance(7 if step % 11 else 120)
        if step % 50 == 0:
            dispatcher.flush(DEADLINE)
    dispatcher.shutdown(timeout=DEADLINE)
    represented = sum(1 + e.metadata.get("suppressed_count", 0) for e in recorder.events)
    assert represented == submitted
    assert len(recorder.events) < submitted / 3


def test_rotating_sources_fall_back_to_one_window_per_type(dispatcher_factory: Any) -> None:
    """An attacker changing source on every request cannot flood the pager."""
    dispatcher = dispatcher_factory(clock=FakeClock(), max_windows=3, supervise_interval=3600)
    recorder = dispatcher.register(Recorder())
    for i in range(10):
        dispatcher.submit(event(source=f"198.51.100.{i}"))
    assert dispatcher.flush(DEADLINE)
    assert len(recorder.events) == 4  # three windows, then one shared by every other source
    assert dispatcher.health()["coalesced"] == 6


def test_failing_callback_is_logged_redacted_counted_and_isolated(
        dispatcher_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A raising callback never reaches the app, others still run, the log has no secret."""
    failures: list[tuple[str, str, str]] = []
    dispatcher = dispatcher_factory(
        on_failure=lambda name, reason, e: failures.append((name, reason, e.event_type)))
    secrets = " ".join(c.text for c in CANARIES)

    def broken(event: SecurityEvent) -> None:
        raise RuntimeError(f"pager down: {secrets}")

    dispatcher.register(broken)
    recorder = dispatcher.register(Recorder())
    with caplog.at_level(logging.WARNING, logger="ragtrail.alerts"):
        dispatcher.submit(event())
        assert dispatcher.flush(DEADLINE)
    assert len(recorder.events) == 1
    health = dispatcher.health()
    assert (health["failed"], health["delivered"]) == (1, 1)
    assert failures == [(broken.__qualname__, "error", "authz_fail")]
    assert "pager down" in caplog.text
    assert leaked(caplog.text) == []


def test_hanging_callback_is_abandoned_and_does_not_block_others(
        dispatcher_factory: Any) -> None:
    """After its timeout a hung callback is counted, skipped while hung, and resumes after."""
    hangs = Hanging()
    release, calls = hangs.release, hangs.calls
    dispatcher = dispatcher_factory(callback_timeout=1.0, releases=[release])
    dispatcher.register(hangs)
    recorder = dispatcher.register(Recorder())  # after the hanging one, same event

    started = time.perf_counter()
    dispatcher.submit(event(source="first"))
    assert time.perf_counter() - started < 0.5  # waiting on the callback would take 1 s
    recorder.wait_for(1)  # delivered once the hung call was abandoned
    poll(lambda: dispatcher.health()["timed_out"] == 1, "the timeout to be counted")
    assert dispatcher.health()["hung_callbacks"] == 1

    dispatcher.submit(event(source="second"))
    recorder.wait_for(2)
    assert calls == ["first"]  # skipped while still hung
    assert dispatcher.health()["dropped"] == 1

    release.set()
    poll(lambda: dispatcher.health()["hung_callbacks"] == 0, "the hung call to return")
    dispatcher.submit(event(source="third"))
    recorder.wait_for(3)
    poll(lambda: calls == ["first", "third"], "the callback to be used again")


def test_a_hanging_callback_pins_one_worker_and_delays_no_other(
        dispatcher_factory: Any) -> None:
    """Well before the hung call's timeout, every alert reaches the other callbacks, in
    order: the hanging one's deliveries wait in its own backlog, not on another worker."""
    hangs = Hanging()
    release, calls = hangs.release, hangs.calls
    dispatcher = dispatcher_factory(callback_timeout=30.0, releases=[release])
    dispatcher.register(hangs)
    recorders = [dispatcher.register(Recorder()), dispatcher.register(Recorder())]
    for i in range(20):
        dispatcher.submit(event(source=f"s{i}"))
    for recorder in recorders:
        assert [e.source for e in recorder.wait_for(20)] == [f"s{i}" for i in range(20)]
    assert calls == ["s0"]
    assert dispatcher.health()["queued"] == 19  # the hung callback's backlog
    release.set()
    assert dispatcher.flush(DEADLINE)
    assert calls == [f"s{i}" for i in range(20)]


def test_submit_stays_fast_with_a_hung_pool_and_a_full_queue(dispatcher_factory: Any) -> None:
    """submit is O(1) and never blocks: microseconds even when nothing is being delivered."""
    release = threading.Event()
    dispatcher = dispatcher_factory(queue_size=8, callback_timeout=60, max_windows=10_000,
                                    releases=[release])
    dispatcher.register(lambda e: release.wait(DEADLINE))
    durations = []
    for i in range(2000):
        e = event(source=f"s{i}")
        started = time.perf_counter()
        dispatcher.submit(e)
        durations.append(time.perf_counter() - started)
    assert statistics.median(durations) < 50e-6
    assert max(durations) < 1.0  # a blocked submit would wait on the 60 s callback timeout
    assert dispatcher.health()["dropped"] >= 2000 - 8 - 2


def test_pool_threads_and_queue_are_bounded(dispatcher_factory: Any) -> None:
    """Blocked callbacks pin at most the pool; the queue overflows into the dropped count."""
    release = threading.Event()
    dispatcher = dispatcher_factory(workers=2, queue_size=4, callback_timeout=60,
                                    releases=[release])
    recorder = Recorder()

    def blocked(event: SecurityEvent) -> None:
        release.wait(DEADLINE)
        recorder(event)

    dispatcher.register(blocked)
    for i in range(50):
        dispatcher.submit(event(source=f"s{i}"))
    assert len(alert_threads()) <= 3  # two workers and the supervisor
    dropped = dispatcher.health()["dropped"]
    assert 50 - 4 - 2 <= dropped <= 50 - 4
    release.set()
    assert dispatcher.flush(DEADLINE)
    assert len(recorder.events) == 50 - dropped


def test_a_slow_callback_cannot_take_the_queue_from_the_others(
        dispatcher_factory: Any) -> None:
    """A slow webhook and a flood of probes from new addresses filled the shared queue, and a
    critical for an instant pager was dropped. Each callback has its share of the queue."""
    release = threading.Event()
    dispatcher = dispatcher_factory(queue_size=8, callback_timeout=60, releases=[release])
    dispatcher.register(lambda _: release.wait(DEADLINE), min_severity="high")  # stuck
    pager = dispatcher.register(Recorder(), min_severity="critical")
    for i in range(20):
        dispatcher.submit(event(source=f"10.0.0.{i}"))  # high: only the stuck one wants them
    dispatcher.submit(event("authn_login_fail", source="10.9.9.9", severity="critical"))
    pager.wait_for(1)
    assert [e.event_type for e in pager.events] == ["authn_login_fail"]
    # The stuck callback's share is 8 / 2: 16 highs dropped for it, and the critical too.
    assert dispatcher.health()["dropped"] == 20 - 4 + 1
    release.set()


def test_what_a_callback_records_is_not_alerted(dispatcher_factory: Any) -> None:
    """A callback noting that it paged someone (a high event, a new source each time) fed
    itself: 1,025 alerts per window from one real event. Events submitted while a callback
    runs are not alerted (the monitor still stores them)."""
    dispatcher = dispatcher_factory()
    seen: list[str] = []

    def pager(alert: SecurityEvent) -> None:
        seen.append(alert.source)
        dispatcher.submit(event("pager_notified", source=f"ticket-{len(seen)}"))

    dispatcher.register(pager)
    dispatcher.submit(event(source="10.0.0.1"))
    assert dispatcher.flush(DEADLINE)
    assert seen == ["10.0.0.1"]
    dispatcher.submit(event(source="10.0.0.2"))  # the app's own events still alert
    assert dispatcher.flush(DEADLINE)
    assert seen == ["10.0.0.1", "10.0.0.2"]


def test_alerts_left_at_shutdown_are_counted_and_logged(
        dispatcher_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A slow pager and a shutdown that cannot wait for it: the alerts it never got are
    counted as dropped and logged (they vanished: 2 of 10 criticals delivered, no trace)."""
    release = threading.Event()
    dispatcher = dispatcher_factory(workers=1, callback_timeout=60, releases=[release])
    dispatcher.register(lambda _: release.wait(DEADLINE), min_severity="critical")
    for i in range(5):
        dispatcher.submit(event(source=f"s{i}", severity="critical"))
    with caplog.at_level(logging.WARNING, logger="ragtrail"):
        dispatcher.shutdown(timeout=0.2)
    assert dispatcher.health()["dropped"] == 4  # the fifth is in the pager's hands
    assert "dropped 4 alert(s) still queued at shutdown" in caplog.text
    release.set()


def test_alert_callback_failure_events_are_never_alerted(dispatcher_factory: Any) -> None:
    """Events about failing callbacks are stored elsewhere, not alerted (no feedback loop)."""
    dispatcher = dispatcher_factory()
    recorder = dispatcher.register(Recorder(), min_severity="low")
    dispatcher.submit(event("alert_callback_failure", severity="critical"))
    dispatcher.submit(event("authz_fail"))
    assert dispatcher.flush(DEADLINE)
    assert [e.event_type for e in recorder.events] == ["authz_fail"]


def test_shutdown_summarises_open_windows_and_stops_threads(dispatcher_factory: Any) -> None:
    """Shutdown reports suppressed repeats, delivers, stops; later submits are ignored."""
    dispatcher = dispatcher_factory(clock=FakeClock(), supervise_interval=3600)
    recorder = dispatcher.register(Recorder())
    for _ in range(3):
        dispatcher.submit(event())
    dispatcher.shutdown(timeout=DEADLINE)
    assert [e.metadata.get("suppressed_count") for e in recorder.events] == [None, 1]
    poll(lambda: not alert_threads(), "alert threads to stop")
    dispatcher.submit(event(source="late"))
    assert len(recorder.events) == 2


def test_shutdown_wakes_idle_workers_at_once(dispatcher_factory: Any) -> None:
    """Idle workers looked at the stop flag every 0.25 s, so every shutdown (every test, every
    restart) waited for them; they are woken now and gone within a short join."""
    dispatcher = dispatcher_factory(workers=2)
    recorder = dispatcher.register(Recorder())
    dispatcher.submit(event())
    recorder.wait_for(1)
    assert dispatcher.flush(timeout=DEADLINE)  # both workers idle, waiting on the queue
    dispatcher.shutdown(timeout=0.1)
    assert not [t for t in alert_threads() if t.name == "ragtrail-alerts"]
    assert dispatcher.health()["queued"] == 0


def test_idle_workers_stop_when_a_hung_callback_outlasts_the_shutdown(
        dispatcher_factory: Any) -> None:
    """With the deadline gone to a hung callback, shutdown took back the idle workers'
    wake-ups before they were taken, and the idle workers lived 5 s longer."""
    release, started = threading.Event(), threading.Event()

    def hang(event: Any) -> None:
        started.set()
        release.wait(10)

    dispatcher = dispatcher_factory(workers=3, releases=[release])
    dispatcher.register(hang)
    dispatcher.submit(event())
    assert started.wait(DEADLINE)
    dispatcher.shutdown(timeout=0.2)
    poll(lambda: not [w for w in dispatcher._workers
                      if w.thread.is_alive() and w.current is None], "idle workers to stop",
         deadline=2.0)
    assert dispatcher.health()["queued"] == 0


def test_on_alert_decorator_registers_and_returns_the_function(dispatcher_factory: Any) -> None:
    """@dispatcher.on_alert("low") registers the function unchanged."""
    dispatcher = dispatcher_factory()
    seen: list[str] = []

    @dispatcher.on_alert("low")
    def page(event: SecurityEvent) -> None:
        seen.append(event.event_type)

    page(event("direct"))
    dispatcher.submit(event("slow_call", severity="low"))
    assert dispatcher.flush(DEADLINE)
    assert seen == ["direct", "slow_call"]


def test_unregister_stops_delivery(dispatcher_factory: Any) -> None:
    """An unregistered callback gets nothing more."""
    dispatcher = dispatcher_factory()
    recorder = dispatcher.register(Recorder())
    dispatcher.unregister(recorder)
    dispatcher.submit(event())
    assert dispatcher.flush(DEADLINE)
    assert recorder.events == []


def test_submit_never_raises(dispatcher_factory: Any) -> None:
    """Even a malformed event is counted as dropped, not raised into the app."""
    dispatcher = dispatcher_factory()
    dispatcher.register(Recorder())
    dispatcher.submit(None)  # type: ignore[arg-type]
    assert dispatcher.health()["dropped"] == 1


def test_no_threads_until_a_callback_is_registered(dispatcher_factory: Any) -> None:
    """A dispatcher nobody uses costs no threads, and submit is a no-op."""
    dispatcher = dispatcher_factory()
    before = len(alert_threads())
    dispatcher.submit(event())
    assert len(alert_threads()) == before
    assert dispatcher.flush(0.1)


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"queue_size": 0},
                                    {"callback_timeout": 0}, {"max_windows": 0}])
def test_invalid_pool_settings_are_rejected(kwargs: dict[str, Any]) -> None:
    """Nonsensical sizes fail at construction, not later."""
    with pytest.raises(ValueError, match="must be"):
        AlertDispatcher(SETTINGS, **kwargs)


def test_register_rejects_non_callables_and_bad_severities(dispatcher_factory: Any) -> None:
    """Mistakes in registration surface at once, with the accepted values."""
    dispatcher = dispatcher_factory()
    with pytest.raises(TypeError, match="callable"):
        dispatcher.register("not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="low, medium, high, critical"):
        dispatcher.register(Recorder(), min_severity="urgent")
