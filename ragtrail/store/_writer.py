"""The background writer: one thread, a bounded queue, batches, and retries with backoff.

Callers only append to a ``deque`` (atomic under the GIL) and set an ``Event`` when the writer
sleeps; measured cheaper than ``queue.Queue.put_nowait``, which takes a lock and notifies a
condition on every call (benchmarks/bench_store.py). Once woken, the writer lingers until
``batch_size`` records are queued, ``linger_s`` has passed, or someone flushes: a writer that
woke for every few records ran a transaction each time, taking the GIL from the application
(paced requests recording 2 spans each: 370 us of CPU and 11.6 us of request time per request
without lingering, 33 us and 4 us with 50 ms; benchmarks/bench_store.py). It writes up to
``batch_size`` records per transaction, or 20 times that to work off a backlog. When the
database cannot be written it keeps the failed batch, retries with capped exponential
backoff, and lets the queue fill; beyond the bound records are dropped and counted. Each
attempt goes through a ``Committer`` (``_commit``). Nothing here ever raises into the
application.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from typing import Any

from ragtrail._rng import uniform
from ragtrail._threads import OSThread, gevent_threads, start_quietly
from ragtrail.store._batch import Batch, Flush
from ragtrail.store._commit import Committer
from ragtrail.store._reports import HealthStatus

__all__ = ["Writer"]

log = logging.getLogger("ragtrail.store")

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 5.0
_IDLE_WAKE_S = 1.0  # apply coalesced repeats this often when idle; close expired windows
_REVIVE_EVERY_S = 1.0
_JOIN_GRACE_S = 1.0  # close() waits this long past its timeout for a writer mid-call
_RECENT_S = 60.0  # a drop or error this recent makes health() "degraded"
# A database call in progress this long makes health() "failing": a hung server (or a stopped
# process holding it) raises nothing, so only the time spent waiting shows it.
STALLED_S = 10.0
_DEGRADED_FILL = 0.8
# A backlog (more than ``batch_size`` records waiting) is written in transactions of up to this
# many batches: a writer starved of the GIL by a busy thread waits for it at every SQLite
# statement, so fewer, larger transactions are what lets it catch up. In-process Starlette,
# 40,000 request spans: 4,600-6,100 dropped with 10,000-record transactions, 9,600-33,000
# with 4,000 (spans as multi-row statements; 15,808 of 80,000 with 500 before those).
_BACKLOG_BATCHES = 20


class Writer:
    """Owns the queue and the thread; ``AuditStore`` appends, this drains into ``committer``."""

    def __init__(self, committer: Committer, *, queue_size: int, linger_s: float) -> None:
        self.queue: deque[Any] = deque()
        self.wake = threading.Event()  # set by record() when the writer sleeps
        self.hurry = threading.Event()  # set: write now (a full batch, a flush, stop)
        self.queue_size = queue_size
        self.batch_size = committer.batch_size
        self.linger_s = linger_s
        self._flushes = 0  # flush markers queued and not taken yet: no lingering meanwhile
        self._flush_lock = threading.Lock()
        self.committer = committer
        self.batches = committer.batches
        self.coalescer = committer.coalescer
        self.counters = committer.counters
        self.stalled_after_s = STALLED_S
        self._stop = threading.Event()
        self._deadline = float("inf")
        self.thread = self._new_thread()
        self._last_revival = 0.0
        self._windows_closed_at = time.monotonic()
        self._revival = threading.Lock()

    def _new_thread(self) -> threading.Thread | OSThread:
        if gevent_threads():
            # Not a greenlet: SQLite's calls never yield to gevent's hub, so every request
            # waited for each commit, and for the whole busy wait (up to 5 s) while another
            # process held the file's lock.
            return OSThread(self._run, "ragtrail-store-writer")
        return threading.Thread(target=self._run, name="ragtrail-store-writer", daemon=True)

    def start(self, *, schema_ready: bool) -> None:
        self.committer.schema_ready = schema_ready
        start_quietly(self.thread)

    @property
    def alive(self) -> bool:
        """The thread runs, or was stopped on purpose (close(), a read-only store); after it
        died unexpectedly, one attempt a second to start it again (from health() and flush())."""
        if self.thread.is_alive() or self._stop.is_set():
            return True
        if not self._revival.acquire(blocking=False):
            return False  # another thread is starting it right now
        try:
            now = time.monotonic()
            if self.thread.is_alive() or now - self._last_revival < _REVIVE_EVERY_S:
                return self.thread.is_alive()
            self._last_revival = now
            log.error("ragtrail audit store writer thread has died; starting a new one")
            thread = self._new_thread()
            start_quietly(thread)
            self.thread = thread
            return True
        except Exception:  # RuntimeError: can't start new thread
            log.exception("ragtrail audit store writer cannot be restarted")
            return False
        finally:
            self._revival.release()

    # -- any thread ------------------------------------------------------------------------

    def flush(self, timeout: float | None) -> bool:
        if not self.alive:
            return False  # died, and no new thread could be started
        if not self.thread.is_alive():
            return not self.queue  # stopped on purpose: nothing will be written any more
        marker = Flush()
        with self._flush_lock:
            self._flushes += 1
        self.queue.append(marker)
        self.wake.set()
        self.hurry.set()
        return marker.done.wait(timeout) and marker.ok

    def stop(self, timeout: float) -> None:
        """Stop after draining; if still failing at ``timeout``, drop what is left.

        Bounded even when the writer is stuck inside a database call (a server that stopped
        answering): what is still queued after ``timeout`` plus a second is dropped and
        counted here; the batch in the stuck writer's hands is counted when its call ends.
        """
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self.wake.set()
        self.hurry.set()
        if self.thread is threading.current_thread():
            return
        if self.thread.is_alive():
            self.thread.join(timeout + _JOIN_GRACE_S)
        if self.queue:  # the writer is stuck, or died: what it never took is lost
            self._abandon(Batch())

    def status(self) -> HealthStatus:
        now = time.monotonic()
        counters = self.counters
        committer = self.committer
        if committer.failing or committer.floor.refused is not None or not self.alive or \
                self.stalled(now) is not None:
            return "failing"
        recent_drop = counters.last_drop is not None and now - counters.last_drop < _RECENT_S
        recent_error = (counters.last_error_at is not None
                        and now - counters.last_error_at < _RECENT_S)
        if recent_drop or recent_error or len(self.queue) >= _DEGRADED_FILL * self.queue_size:
            return "degraded"
        return "ok"

    def stalled(self, now: float) -> float | None:
        """Seconds the commit in progress has waited on the database, once that is more than
        ``stalled_after_s``; else None."""
        started = self.committer.call_started
        if started is None or now - started < self.stalled_after_s:
            return None
        return now - started

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._loop()
                return
            except Exception:  # a bug here must not end the audit trail for good
                log.exception("ragtrail audit store writer failed; it restarts in a second")
                self.committer.failing = True
                if self._stop.wait(1.0):
                    self._abandon(Batch())
                    return

    def _loop(self) -> None:
        committer = self.committer
        batch: Batch | None = None
        delay = 0.0
        while True:
            if batch is None:
                batch = self._next_batch()
                if batch is None:
                    return
            try:
                committer.commit(batch)
            except Exception as exc:
                if not committer.retryable(exc):
                    batch = committer.isolate(batch)
                    if not batch.records:
                        continue
                delay = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, delay * 2))
                committer.fault(exc)
                if self._stop.is_set() and time.monotonic() >= self._deadline:
                    self._abandon(batch)
                    return
                # Jitter spreads retries of several processes sharing one database.
                pause = min(delay * uniform(0.75, 1.0),
                            max(0.0, self._deadline - time.monotonic()))
                if self._stop.is_set():
                    time.sleep(pause)  # closing: keep trying until the deadline
                else:
                    self._stop.wait(pause)  # close() interrupts the pause
                continue
            delay = 0.0
            batch = None

    def _close_expired_windows(self) -> None:
        """At most once a second, busy or idle: windows closed only after an idle second never
        closed on a pod with steady traffic, the open-window table filled up (max_keys) and
        every new kind of event was stored alone from then on, repeats and all."""
        now = time.monotonic()
        if now - self._windows_closed_at >= _IDLE_WAKE_S:
            self._windows_closed_at = now
            self.coalescer.close_expired(time.time_ns() // 1000)

    def _next_batch(self) -> Batch | None:
        """Up to ``batch_size`` records; waits while idle; None once stopped and drained."""
        queue = self.queue
        while not queue:
            self.wake.clear()  # before the checks: a record() or stop() after them wakes us
            if queue:
                break
            if self._stop.is_set():
                return None
            if not self.wake.wait(_IDLE_WAKE_S):
                self._close_expired_windows()
                if self.coalescer.has_dirty or self.counters.has_unsaved:
                    return Batch()  # commits pending repeats and drop totals
        if len(queue) < self.batch_size and self.linger_s > 0 and not self._flushes:
            self.hurry.clear()  # before the checks, as above
            if len(queue) < self.batch_size and not self._flushes and \
                    not self._stop.is_set():
                self.hurry.wait(self.linger_s)
        self._close_expired_windows()
        items: list[Any] = []
        records = 0
        limit = self.batch_size
        if len(queue) > limit:  # a backlog: fewer, larger transactions catch up
            limit = min(len(queue), limit * _BACKLOG_BATCHES)
        while records < limit:
            try:
                item = queue.popleft()
            except IndexError:  # empty (close() may drain it too, from its own thread)
                break
            items.append(item)
            if isinstance(item, Flush):
                with self._flush_lock:
                    self._flushes -= 1
            else:
                records += 1
        batch = self.batches.sort(items)
        if batch.others:
            self.counters.drop("other", batch.others)
        return batch

    def _abandon(self, batch: Batch) -> None:
        """Stopping while the database is still failing: count everything left as dropped,
        except what a COMMIT left in doubt (the server may have stored it)."""
        left: list[Any] = []
        with contextlib.suppress(IndexError):  # close() and a stuck writer may both drain
            while self.queue:
                left.append(self.queue.popleft())
        doubt = self.batches.doubt
        if doubt is not None:  # a part of ``batch`` (of the writer's; close() passes none)
            self.counters.unknown(batch.take(doubt.batch).records)
        for part in (batch, self.batches.sort(left)):
            for ring, n in (("events", len(part.events)), ("spans", len(part.spans)),
                            ("metrics", len(part.metrics))):
                if n:
                    self.counters.drop(ring, n)
            for marker in part.flushes:
                marker.finish(False)

