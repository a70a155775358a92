"""Threads and executors: ``propagate`` carries the span and correlation ID across."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar

import pytest
from instrument_support import only_span, stored_spans

from ragtrail.instrument import Monitor, correlation_id, correlation_scope, monitored, propagate

CORRELATION = "feedfacefeedfacefeedfacefeedface"


@monitored(name="embed")
def embed(chunk: str) -> tuple[str, str | None]:
    return chunk, correlation_id()


def test_without_propagate_a_thread_starts_a_new_trace(monitor: Monitor) -> None:
    """The reason ``propagate`` exists: a plain thread does not see the caller's context."""
    @monitored(name="parent")
    def parent() -> None:
        thread = threading.Thread(target=embed, args=("a",))
        thread.start()
        thread.join()

    with correlation_scope(CORRELATION):
        parent()
    child = only_span(monitor, "embed")
    assert child.parent_span_id is None
    assert child.correlation_id is None


def test_propagate_carries_span_and_correlation_into_a_thread(monitor: Monitor) -> None:
    """``threading.Thread(target=propagate(fn))``: child span, same correlation ID."""
    results: list[tuple[str, str | None]] = []

    @monitored(name="parent")
    def parent() -> None:
        task = propagate(embed)
        thread = threading.Thread(target=lambda: results.append(task("a")))
        thread.start()
        thread.join()

    with correlation_scope(CORRELATION):
        parent()
    assert results == [("a", CORRELATION)]
    child, root = only_span(monitor, "embed"), only_span(monitor, "parent")
    assert (child.parent_span_id, child.trace_id) == (root.span_id, root.trace_id)
    assert child.correlation_id == CORRELATION


def test_one_propagated_function_runs_in_many_threads_at_once(monitor: Monitor) -> None:
    """``executor.map(propagate(fn), ...)``: every call is a child; no shared-context error."""
    @monitored(name="parent")
    def parent() -> list[tuple[str, str | None]]:
        task = propagate(embed)
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(task, [str(i) for i in range(16)]))

    with correlation_scope(CORRELATION):
        results = parent()
    assert results == [(str(i), CORRELATION) for i in range(16)]
    root = only_span(monitor, "parent")
    children = [s for s in stored_spans(monitor) if s.name == "embed"]
    assert len(children) == 16
    assert {c.parent_span_id for c in children} == {root.span_id}


def test_run_in_executor_with_propagate(monitor: Monitor) -> None:
    """``loop.run_in_executor(None, propagate(fn), arg)`` keeps the coroutine's context."""
    @monitored(name="parent")
    async def parent() -> tuple[str, str | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, propagate(embed), "a")

    async def main() -> tuple[str, str | None]:
        with correlation_scope(CORRELATION):
            return await parent()

    assert asyncio.run(main()) == ("a", CORRELATION)
    assert only_span(monitor, "embed").parent_span_id == only_span(monitor, "parent").span_id


@pytest.mark.parametrize("trace_only", [False, True])
def test_propagate_keeps_metadata(trace_only: bool) -> None:
    """The propagated function keeps the original's name and docstring."""
    def work() -> None:
        """Do work."""

    propagated = propagate(work, trace_only=trace_only)
    assert (propagated.__name__, propagated.__doc__) == ("work", "Do work.")


# A pool that gives each worker call a setting of its own before calling the function, as
# dspy.Parallel does with its settings and usage tracker (DSPy itself is not a test dependency).
_worker_setting: ContextVar[str] = ContextVar("worker_setting", default="unset")


def _run_in_settings_pool(task: Callable[[str], tuple[str, str | None, str]],
                          items: list[str]) -> list[tuple[str, str | None, str]]:
    def worker(item: str) -> tuple[str, str | None, str]:
        token = _worker_setting.set(f"worker copy for {item}")
        try:
            return task(item)
        finally:
            _worker_setting.reset(token)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(worker, items))


@monitored(name="embed")
def embed_with_setting(chunk: str) -> tuple[str, str | None, str]:
    return chunk, correlation_id(), _worker_setting.get()


@pytest.mark.parametrize(("trace_only", "setting_seen"), [
    (False, "caller's"),  # the whole context replaces the worker's
    (True, "worker copy for {}"),
])
def test_trace_only_keeps_the_worker_s_own_context_variables(
        monitor: Monitor, trace_only: bool, setting_seen: str) -> None:
    """``propagate(fn, trace_only=True)``: the caller's span and ID, the worker's own settings."""
    @monitored(name="parent")
    def parent() -> list[tuple[str, str | None, str]]:
        _worker_setting.set("caller's")
        return _run_in_settings_pool(
            propagate(embed_with_setting, trace_only=trace_only), [str(i) for i in range(8)])

    with correlation_scope(CORRELATION):
        results = parent()
    assert results == [(str(i), CORRELATION, setting_seen.format(i)) for i in range(8)]
    root = only_span(monitor, "parent")
    children = [s for s in stored_spans(monitor) if s.name == "embed"]
    assert {(c.parent_span_id, c.trace_id, c.correlation_id) for c in children} == {
        (root.span_id, root.trace_id, CORRELATION)}
    assert len(children) == 8


def test_trace_only_leaves_nothing_behind_in_the_worker(monitor: Monitor) -> None:
    """After a trace-only call the worker thread has neither the caller's span nor its ID."""
    after: list[tuple[str | None, str | None]] = []

    def worker(task: Callable[[str], tuple[str, str | None]]) -> None:
        task("a")
        after.append((correlation_id(), embed("b")[1]))

    @monitored(name="parent")
    def parent() -> None:
        thread = threading.Thread(target=worker, args=(propagate(embed, trace_only=True),))
        thread.start()
        thread.join()

    with correlation_scope(CORRELATION):
        parent()
    assert after == [(None, None)]
    root = only_span(monitor, "parent")
    parents = sorted((s.parent_span_id or "") for s in stored_spans(monitor) if s.name == "embed")
    assert parents == ["", root.span_id]
