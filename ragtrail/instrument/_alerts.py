"""Alert callbacks: run off the application's threads, coalesced, isolated from failure.

``submit`` runs on the caller's thread, so it only filters by severity, checks a coalescing
window and enqueues one delivery per callback (never blocks, never raises). A small pool of
daemon workers makes the deliveries. One callback runs on one worker at a time, in order: a
delivery for a callback that is busy waits in that callback's backlog for the worker already
calling it, so a slow or hanging pager pins one worker and the others keep serving the rest.
A supervisor thread abandons a worker stuck in a callback past its timeout and starts a fresh
one; the hung callback's backlog is dropped, and it is skipped (and counted) until it returns.

Coalescing: after an alert for one (event_type, source), further events for it inside
``alert_coalesce_seconds`` that are no more severe are not alerted but counted; the next alert
for that key (the next event after the window, or a summary of the latest suppressed one when
the window ends) carries the count in ``metadata["suppressed_count"]``. A more severe event is
alerted at once and opens a new window: a critical is never held back behind a high (a
critical-only pager would have missed it). Every event at or above a callback's minimum
severity is therefore either alerted or counted in a later alert.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ragtrail._records import SecurityEvent, Severity
from ragtrail._settings import Settings
from ragtrail._threads import start_quietly
from ragtrail.instrument._alert_workers import (
    WAKE_UP,
    AlertCallback,
    Subscription,
    Task,
    Worker,
    in_callback,
)
from ragtrail.instrument._event_types import ALERT_CALLBACK_FAILURE
from ragtrail.instrument._exception_text import describe
from ragtrail.instrument._redaction import Redactor, escape_controls

__all__ = ["AlertCallback", "AlertDispatcher"]

logger = logging.getLogger("ragtrail.alerts")

_F = TypeVar("_F", bound=AlertCallback)
FailureHook = Callable[[str, str, SecurityEvent], object]
"""Told (callback name, "error" or "timeout", the event) when a callback fails."""

_COUNTERS = ("delivered", "failed", "timed_out", "coalesced", "dropped")


@dataclasses.dataclass(eq=False)
class _Window:
    opened: float
    severity: Severity  # the most severe event delivered in it: a worse one is never held back
    suppressed: int = 0
    latest: SecurityEvent | None = None


class AlertDispatcher:
    """Delivers security events to registered callbacks; see the module docstring.

    ``clock`` (seconds, monotonic) drives coalescing windows and callback timeouts; tests pass
    a fake one. ``callback_timeout`` should exceed a webhook's worst case (its timeout times its
    attempts, plus back-off). The supervisor checks for hung callbacks and ended windows every
    ``supervise_interval`` seconds (default: a quarter of the timeout, at most 1 s).
    """

    def __init__(self, settings: Settings, *, redactor: Redactor | None = None,
                 clock: Callable[[], float] = time.monotonic, workers: int = 2,
                 queue_size: int = 256, callback_timeout: float = 30.0,
                 max_windows: int = 1024, on_failure: FailureHook | None = None,
                 supervise_interval: float | None = None) -> None:
        if workers < 1 or queue_size < 1 or callback_timeout <= 0 or max_windows < 1:
            raise ValueError("workers, queue_size and max_windows must be >= 1 and "
                             "callback_timeout > 0")
        self._default_severity = settings.alert_min_severity
        self._window_seconds = settings.alert_coalesce_seconds
        self._redactor = redactor or Redactor(settings)
        self._clock = clock
        self._pool_size = workers
        self._timeout = callback_timeout
        self._max_windows = max_windows
        self._on_failure = on_failure
        self._join_wait = min(0.5, callback_timeout / 2)  # per worker, at shutdown
        self._tick = supervise_interval or min(1.0, callback_timeout / 4)
        self._capacity = queue_size
        self._queue: queue.Queue[Task | None] = queue.Queue()  # bounded by _capacity, below
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._outstanding = 0  # deliveries queued, in backlogs or running: at most _capacity
        self._share = queue_size  # each callback's bound: the capacity over the callbacks
        self._subscriptions: tuple[Subscription, ...] = ()
        self._floor = int(Severity.CRITICAL) + 1  # no callback: nothing passes
        self._windows: dict[tuple[str, str], _Window] = {}
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._workers: list[Worker] = []
        self._stop = threading.Event()
        self._started = False
        self._dropped_reported = 0

    # -- registration -------------------------------------------------------------------

    def register(self, callback: _F, min_severity: Severity | str | int | None = None) -> _F:
        """Call ``callback(event)`` for events at or above ``min_severity`` (default: the
        callback's own ``min_severity`` attribute, else ``settings.alert_min_severity``)."""
        if not callable(callback):
            raise TypeError(f"alert callback must be callable; got {type(callback).__name__}")
        if min_severity is None:
            min_severity = getattr(callback, "min_severity", None) or self._default_severity
        subscription = Subscription(callback, Severity.parse(min_severity), _name(callback))
        with self._lock:
            self._subscribed_locked((*self._subscriptions, subscription))
            if not self._started and not self._stop.is_set():
                self._start()
        return callback

    def unregister(self, callback: AlertCallback) -> None:
        with self._lock:
            self._subscribed_locked(
                tuple(s for s in self._subscriptions if s.callback is not callback))

    def _subscribed_locked(self, subscriptions: tuple[Subscription, ...]) -> None:
        """The callbacks now, with what follows from them: the lowest severity any wants, and
        each one's equal share of the delivery queue."""
        self._subscriptions = subscriptions
        self._floor = min((int(s.min_severity) for s in subscriptions),
                          default=int(Severity.CRITICAL) + 1)
        self._share = max(1, self._capacity // max(1, len(subscriptions)))

    def on_alert(self, min_severity: Severity | str | int | None = None
                 ) -> Callable[[_F], _F]:
        """Decorator form of ``register``: ``@dispatcher.on_alert("critical")``."""
        return lambda callback: self.register(callback, min_severity)

    # -- the caller's side ----------------------------------------------------------------

    def submit(self, event: SecurityEvent) -> None:
        """Queue ``event`` for the callbacks that want it; O(1), never blocks, never raises."""
        try:
            # An alert about alerting is never alerted: a failing pager cannot feed itself,
            # nor a callback that records an event ("paged on-call", a new source each time:
            # 1,025 alerts per window from one real event). Such events are stored all the same.
            if event.severity < self._floor or event.event_type == ALERT_CALLBACK_FAILURE \
                    or getattr(in_callback, "active", False):
                return
            now = self._clock()
            key = (event.event_type, event.source)
            with self._lock:
                if self._stop.is_set():
                    return
                window = self._windows.get(key)
                if window is None and len(self._windows) >= self._max_windows:
                    # Too many distinct sources (an attacker rotating IPs): one window per type.
                    key = (event.event_type, "*")
                    window = self._windows.get(key)
                if window is not None and now - window.opened < self._window_seconds \
                        and event.severity <= window.severity:
                    window.suppressed += 1
                    window.latest = event
                    self._counts["coalesced"] += 1
                    return
                self._windows[key] = _Window(now, event.severity)
                suppressed = window.suppressed if window is not None else 0
                self._enqueue_locked(_with_suppressed(event, suppressed))
        except Exception:  # never into the application
            self._counts["dropped"] += 1

    def _enqueue_locked(self, event: SecurityEvent) -> None:
        """One delivery per callback that wants ``event``; a hung callback's are dropped."""
        for subscription in self._subscriptions:
            if event.severity < subscription.min_severity:
                continue
            # Its share of the queue, not all of it: a slow webhook under a flood must not
            # take the room a pager needs (a critical to an instant pager was dropped).
            if subscription.hung or self._outstanding >= self._capacity \
                    or subscription.outstanding >= self._share:
                self._counts["dropped"] += 1
                continue
            self._queue.put_nowait((event, subscription))
            self._outstanding += 1
            subscription.outstanding += 1

    # -- state ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Counters for the detailed health routes."""
        with self._lock:
            # After shutdown the queue holds only wake-ups workers have not taken (yet).
            waiting = 0 if self._stop.is_set() else self._queue.qsize()
            return {**self._counts, "queued": waiting + sum(
                        len(s.backlog) for s in self._subscriptions),
                    "callbacks": len(self._subscriptions),
                    "hung_callbacks": sum(s.hung for s in self._subscriptions),
                    "workers": sum(w.thread.is_alive() for w in self._workers)}

    def flush(self, timeout: float | None = None) -> bool:
        """Send summaries for windows that have ended, then wait until the queue is handled.

        True if everything queued was handled in time.
        """
        self._sweep(force=False)
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    def shutdown(self, timeout: float | None = 5.0) -> None:
        """Summarise every pending window, deliver what is queued, stop: all within
        ``timeout`` (workers stuck in a callback are left to it; they are daemons)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._sweep(force=True)
        with self._idle:
            self._idle.wait_for(lambda: self._outstanding == 0, timeout)
            self._stop.set()
        with self._lock:  # never delivered now: counted and said, not lost in silence
            left = 0
            with contextlib.suppress(queue.Empty):
                while (task := self._queue.get_nowait()) is not None:
                    self._task_done_locked(task[1])
                    left += 1
            for subscription in self._subscriptions:
                while subscription.backlog:
                    subscription.backlog.popleft()
                    self._task_done_locked(subscription)
                    left += 1
            self._counts["dropped"] += left
        if left:
            logger.warning("ragtrail dropped %d alert(s) still queued at shutdown", left)
        workers = list(self._workers)
        for _ in workers:
            self._queue.put_nowait(WAKE_UP)
        for worker in workers:
            worker.thread.join(self._join_wait if deadline is None
                               else min(self._join_wait, max(0.0, deadline - time.monotonic())))

    # -- worker side ----------------------------------------------------------------------

    def _start(self) -> None:
        self._started = True
        for _ in range(self._pool_size):
            self._add_worker()
        start_quietly(threading.Thread(target=self._supervise, name="ragtrail-alerts-supervisor",
                                       daemon=True))

    def _add_worker(self) -> None:
        worker = Worker(self)
        self._workers.append(worker)
        start_quietly(worker.thread)

    def _task_done_locked(self, subscription: Subscription) -> None:
        subscription.outstanding -= 1
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.notify_all()

    def _failed(self, subscription: Subscription, reason: str, event: SecurityEvent,
                error: BaseException | None) -> None:
        detail = "" if error is None else (
            f": {type(error).__name__}: "
            f"{escape_controls(self._redactor.redact_text(describe(error), limit=300))}")
        logger.warning("ragtrail alert callback %s %s for %s event%s", subscription.name,
                       "failed" if reason == "error" else "timed out", event.event_type, detail)
        if self._on_failure is not None:
            try:
                self._on_failure(subscription.name, reason, event)
            except Exception:
                logger.exception("ragtrail alert failure hook raised")

    def _supervise(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                self._abandon_hung_workers()
                self._sweep(force=False)
                self._report_drops()
            except Exception:  # keep supervising whatever happens
                logger.exception("ragtrail alert supervisor error")

    def _abandon_hung_workers(self) -> None:
        now = self._clock()
        for worker in list(self._workers):
            with worker.lock:
                started, subscription, event = worker.busy_since, worker.current, worker.event
                if (started is None or worker.abandoned or subscription is None
                        or event is None or now - started <= self._timeout):
                    continue
                worker.abandoned = True
                with self._lock:  # in the worker's lock: its return must find it hung
                    subscription.hung = True
            with self._lock:
                self._counts["timed_out"] += 1
                self._workers.remove(worker)
                if not self._stop.is_set():
                    self._add_worker()
                self._task_done_locked(subscription)  # the hung delivery
                while subscription.backlog:  # waiting behind it: dropped, as while it hangs
                    subscription.backlog.popleft()
                    self._counts["dropped"] += 1
                    self._task_done_locked(subscription)
            self._failed(subscription, "timeout", event, None)

    def _sweep(self, *, force: bool) -> None:
        """Summarise windows that ended with suppressed events; forget quiet ones."""
        now = self._clock()
        with self._lock:
            for key, window in list(self._windows.items()):
                if not force and now - window.opened < self._window_seconds:
                    continue
                if window.suppressed and window.latest is not None:
                    summary = _with_suppressed(window.latest, window.suppressed - 1)
                    self._windows[key] = _Window(now, window.severity)
                    self._enqueue_locked(summary)
                else:
                    del self._windows[key]

    def _report_drops(self) -> None:
        dropped = self._counts["dropped"]
        if dropped > self._dropped_reported:
            logger.warning("ragtrail dropped %d alert(s): queue full or callback hung",
                           dropped - self._dropped_reported)
            self._dropped_reported = dropped


def _with_suppressed(event: SecurityEvent, suppressed: int) -> SecurityEvent:
    if suppressed <= 0:
        return event
    return dataclasses.replace(event, metadata={**event.metadata, "suppressed_count": suppressed})


def _name(callback: AlertCallback) -> str:
    name = getattr(callback, "__qualname__", None)
    return name if isinstance(name, str) else repr(callback)[:100]
