"""Runs the checks in the background and keeps their latest results for the probes.

One daemon thread (an OS thread under gevent) owns an asyncio loop: async checks run on it
natively, sync checks each in a short-lived daemon thread (never a ThreadPoolExecutor, whose
workers are joined at interpreter exit, so one hung check could stop the process from
exiting). Every check has its own cadence, its own timeout and at most one run in flight; a run
still going when the next one is due reports "timed out" again instead of piling up threads.
Readers on other threads only ever see a complete results dict, replaced on each update (no
locks on the probe path).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from ragtrail._threads import OSThread, control_signals_unblocked, gevent_threads, start_quietly
from ragtrail.health._check import CheckResult, HealthCheck, normalise_outcome

__all__ = ["CheckRunner", "run_in_thread"]

log = logging.getLogger("ragtrail.health")
T = TypeVar("T")

_HEARTBEAT_SECONDS = 1.0
_OUTPUT_MAX_CHARS = 1024
_STALE_GRACE_S = 2.0  # beyond interval + timeout before a result counts as never renewed


@dataclass(eq=False)
class _Entry:
    """The loop thread's private bookkeeping for one check."""

    check: HealthCheck
    timeout: float
    inflight: asyncio.Task[CheckResult] | None = None
    # The check's own run (a task, or a worker thread's future): it may outlive a timeout.
    work: asyncio.Future[Any] | concurrent.futures.Future[Any] | None = None


class CheckRunner:
    """Background scheduler and cache of check results (an internal part of HealthService)."""

    def __init__(
        self,
        checks: Sequence[HealthCheck],
        *,
        interval: float,
        default_timeout: float,
        failure_interval: float,
        redact: Callable[[str], str],
        on_result: Callable[[HealthCheck, CheckResult | None, CheckResult], None],
    ) -> None:
        self._entries = {c.name: _Entry(c, c.timeout or default_timeout) for c in checks}
        self._interval = interval
        self._failure_interval = failure_interval
        self._redact = redact
        self._on_result = on_result
        # Each result with the monotonic time it was renewed: staleness is judged on that
        # clock, as an NTP step or a VM resume moves the wall clock (time_us) by any amount.
        self._results: Mapping[str, tuple[CheckResult, float]] = {}
        self.heartbeat = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | OSThread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        # Set (under the lock) once the loop winds down: refreshes are refused from then on,
        # so none is scheduled on a loop that is about to close.
        self._closing = False
        self._lock = threading.Lock()

    @property
    def checks(self) -> tuple[HealthCheck, ...]:
        return tuple(e.check for e in self._entries.values())

    @property
    def results(self) -> Mapping[str, CheckResult]:
        """The latest result of each check that has reported, by check name.

        A result older than its check's next run plus that run's timeout means the loop
        never got to report the run (a check blocked it, or the runner died): it reads as
        failed and timed out, so readiness cannot keep serving a pass nobody is renewing.
        """
        now = time.monotonic()
        results: dict[str, CheckResult] = {}
        for name, (result, renewed) in self._results.items():
            entry = self._entries[name]
            due = self._interval if result.status != "fail" else self._failure_interval
            age_s = now - renewed
            if age_s > due + entry.timeout + _STALE_GRACE_S:
                result = replace(result, status="fail", timed_out=True, output=(
                    f"timed out: no result for {age_s:.0f} s (the health check loop is "
                    "blocked, or stopped)"))
            results[name] = result
        return results

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        # asyncio keeps the running loop per OS thread: on a gevent greenlet this loop was the
        # running loop of every request (asyncio.run() in a view raised "cannot be called from
        # a running event loop").
        self._thread = (OSThread(self._main, "ragtrail-health") if gevent_threads()
                        else threading.Thread(target=self._main, name="ragtrail-health",
                                              daemon=True))
        start_quietly(self._thread)
        self._ready.wait(5.0)

    def stop(self, timeout: float = 5.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed since the check above
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def refresh(self, name: str) -> concurrent.futures.Future[CheckResult]:
        """Run one check now (joining a run already in flight); thread-safe."""
        entry = self._entries[name]
        with self._lock:
            loop = self._loop
            if loop is not None and not self._closing and self.alive:
                return asyncio.run_coroutine_threadsafe(self._run_once(entry), loop)
        failed: concurrent.futures.Future[CheckResult] = concurrent.futures.Future()
        failed.set_exception(RuntimeError("the health check runner is not running"))
        return failed

    # -- the loop thread ------------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except Exception:
            log.exception("ragtrail health check loop stopped unexpectedly")
        finally:
            with self._lock:
                self._closing = True
            loop.run_until_complete(_cancel_everything())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        # Held here while the loop serves: the loop itself keeps only weak references.
        schedules = [asyncio.create_task(self._heartbeat())]
        schedules += [asyncio.create_task(self._schedule(e)) for e in self._entries.values()]
        self._ready.set()
        await self._stopping.wait()

    async def _heartbeat(self) -> None:
        # Liveness reads this: if the loop is blocked or dead, the heartbeat goes stale.
        while True:
            self.heartbeat = time.monotonic()
            await asyncio.sleep(_HEARTBEAT_SECONDS)

    async def _schedule(self, entry: _Entry) -> None:
        while True:
            try:
                result = await self._run_once(entry)
                delay = self._interval if result.status != "fail" else self._failure_interval
            except Exception:  # failsafe: one broken check never stops the others
                log.exception("ragtrail health check %s could not be scheduled", entry.check.name)
                delay = self._failure_interval
            await asyncio.sleep(delay)

    async def _run_once(self, entry: _Entry) -> CheckResult:
        # Single flight: a refresh that arrives during a scheduled run shares its result.
        if entry.inflight is None:
            task = asyncio.get_running_loop().create_task(self._execute(entry))
            entry.inflight = task
            task.add_done_callback(lambda _: setattr(entry, "inflight", None))
        return await asyncio.shield(entry.inflight)

    async def _execute(self, entry: _Entry) -> CheckResult:
        started = time.perf_counter()
        if entry.work is not None and not entry.work.done():
            result = CheckResult("fail", f"timed out after {entry.timeout:g} s "
                                 "(the previous run has still not returned)", timed_out=True)
        else:
            result = await self._attempt(entry)
        result = replace(
            result,
            output=self._redact(result.output)[:_OUTPUT_MAX_CHARS] if result.output else "",
            time_us=time.time_ns() // 1000,
            duration_ms=(time.perf_counter() - started) * 1000.0,
        )
        stamped = self._results.get(entry.check.name)
        previous = stamped[0] if stamped is not None else None
        self._results = {**self._results, entry.check.name: (result, time.monotonic())}
        try:
            self._on_result(entry.check, previous, result)
        except Exception:
            log.exception("ragtrail health result hook failed for %s", entry.check.name)
        return result

    async def _attempt(self, entry: _Entry) -> CheckResult:
        check = entry.check
        work: asyncio.Future[Any]
        try:
            if check.is_async:
                work = asyncio.ensure_future(_contained(check.check()))  # type: ignore[arg-type]
                entry.work = work
            else:
                entry.work = run_in_thread(partial(_called, check.check))
                work = asyncio.wrap_future(entry.work)
        except Exception as exc:  # building the coroutine itself raised
            return _failure(exc)
        done, _ = await asyncio.wait({work}, timeout=entry.timeout)
        if not done:
            work.cancel()  # stops an async check; a sync one's thread is left to finish
            return CheckResult("fail", f"timed out after {entry.timeout:g} s", timed_out=True)
        if work.cancelled():
            return CheckResult("fail", "cancelled")
        return normalise_outcome(work.result())


async def _cancel_everything() -> None:
    """Cancel and await every other task on the loop: schedules, runs in flight, the checks'
    own tasks (which outlive their runs' timeouts), and refreshes, including one scheduled
    just before refreshes were refused (it becomes a task at the first yield)."""
    current = asyncio.current_task()
    while True:
        await asyncio.sleep(0)
        others = asyncio.all_tasks() - {current}
        if not others:
            return
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


def run_in_thread(function: Callable[[], T]) -> concurrent.futures.Future[T]:
    """Run a blocking function in a daemon thread of its own; thread-safe."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            with control_signals_unblocked():  # a child process the check starts gets them
                result = function()
            future.set_result(result)
        except BaseException as exc:  # handed to whoever waits on the future
            future.set_exception(exc)

    start_quietly(threading.Thread(target=work, name="ragtrail-health-work", daemon=True))
    return future


# Both kinds of run hand back what a check raised as its failure, never as an exception:
# asyncio re-raises SystemExit and KeyboardInterrupt out of the loop (which would stop every
# check and fail liveness), and cannot carry a StopIteration through a future at all.

async def _contained(run: Awaitable[Any]) -> Any:
    """An async check's run (cancellation, on a timeout, still cancels it)."""
    try:
        return await run
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return _failure(exc)


def _called(function: Callable[[], Any]) -> Any:
    """A sync check's run, in its worker thread."""
    try:
        return function()
    except BaseException as exc:
        return _failure(exc)


def _failure(exc: BaseException) -> CheckResult:
    try:
        message = str(exc).strip()
    except Exception:  # an exception whose __str__ raises must still be reported
        message = "(its message could not be read)"
    return CheckResult("fail", f"{type(exc).__name__}: {message}" if message
                       else type(exc).__name__)
