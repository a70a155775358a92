"""The pool threads that call alert callbacks, and what they deliver.

A worker takes one delivery (an event for one callback) from the dispatcher's queue and calls
the callback; deliveries for a callback another worker is calling wait in that callback's
backlog and are delivered by that worker next, so one callback runs on one worker at a time,
in order. A worker the supervisor abandoned (its callback hung) stops when the callback
returns. See ``_alerts`` for the dispatcher that owns the queue, the lock and the counters.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ragtrail._records import SecurityEvent, Severity
from ragtrail._threads import control_signals_unblocked

if TYPE_CHECKING:
    from ragtrail.instrument._alerts import AlertDispatcher

__all__ = ["WAKE_UP", "AlertCallback", "Subscription", "Task", "Worker", "in_callback"]

AlertCallback = Callable[[SecurityEvent], object]


@dataclasses.dataclass(eq=False)
class Subscription:
    """A registered callback, and its deliveries in flight."""

    callback: AlertCallback
    min_severity: Severity
    name: str
    # Under the dispatcher's lock:
    hung: bool = False  # a call timed out and has not returned yet
    running: bool = False  # a worker is calling it, and delivers its backlog next
    outstanding: int = 0  # its deliveries queued, in its backlog or running
    backlog: collections.deque[SecurityEvent] = dataclasses.field(
        default_factory=collections.deque)


WAKE_UP = None  # put once per worker at shutdown: an idle worker stops at once
_IDLE_CHECK_S = 5.0  # an idle worker looks at the stop flag anyway (a wake-up it missed)
# Set on a worker's thread while it runs a callback: what the callback records is not alerted.
in_callback = threading.local()
Task = tuple[SecurityEvent, Subscription]  # one delivery


class Worker:
    """One pool thread; abandoned (and replaced) by the supervisor when a callback hangs."""

    def __init__(self, dispatcher: AlertDispatcher) -> None:
        self.dispatcher = dispatcher
        self.lock = threading.Lock()
        self.abandoned = False
        self.busy_since: float | None = None
        self.current: Subscription | None = None
        self.event: SecurityEvent | None = None
        self.thread = threading.Thread(target=self.run, name="ragtrail-alerts", daemon=True)

    def run(self) -> None:
        d = self.dispatcher
        while not d._stop.is_set():
            try:
                task = d._queue.get(timeout=_IDLE_CHECK_S)
            except queue.Empty:
                continue
            if task is WAKE_UP:
                return
            event, subscription = task
            with d._lock:
                if subscription.hung:  # hung since this was queued
                    d._counts["dropped"] += 1
                    d._task_done_locked(subscription)
                    continue
                if subscription.running:  # the worker calling it delivers this next
                    subscription.backlog.append(event)
                    continue
                subscription.running = True
            if not self._serve(subscription, event):
                return  # abandoned: the supervisor finished this delivery and replaced us

    def _serve(self, subscription: Subscription, event: SecurityEvent) -> bool:
        """Deliver ``event``, then the callback's backlog; False once abandoned."""
        d = self.dispatcher
        while True:
            with self.lock:
                self.current, self.event, self.busy_since = subscription, event, d._clock()
            error: BaseException | None = None
            in_callback.active = True
            try:
                with control_signals_unblocked():  # a child process it starts gets them too
                    subscription.callback(event)
            except BaseException as exc:  # a callback's failure, even SystemExit, stays here
                error = exc
            finally:
                in_callback.active = False
            with self.lock:
                if self.abandoned:  # came back after its timeout: counted already
                    with d._lock:
                        subscription.hung = subscription.running = False
                    return False
                self.current = self.event = self.busy_since = None
            if error is not None:  # recorded before the delivery counts as done: flush()
                d._failed(subscription, "error", event, error)  # then covers the event
            with d._lock:
                d._counts["failed" if error is not None else "delivered"] += 1
                d._task_done_locked(subscription)
                following = subscription.backlog.popleft() if subscription.backlog else None
                if following is None:
                    subscription.running = False
            if following is None:
                return True
            event = following
