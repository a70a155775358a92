"""Carrying the current span and correlation ID into threads.

asyncio tasks copy the context by themselves, and so does ``asyncio.to_thread``; threads,
``concurrent.futures`` executors and ``loop.run_in_executor`` do not: a function run there
starts from an empty context, so its spans would start new traces.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from opentelemetry.context import Context

from ragtrail.instrument._correlation import correlation_id, set_correlation_id
from ragtrail.instrument._otel_context import attach, detach, get_current

__all__ = ["propagate"]

P = ParamSpec("P")
R = TypeVar("R")


def propagate(fn: Callable[P, R], *, trace_only: bool = False) -> Callable[P, R]:
    """``fn`` bound to the context current *now* (span, correlation ID, other ContextVars).

    Call it where the work is handed off, not at import time::

        executor.submit(ragtrail.propagate(embed), chunk)
        await loop.run_in_executor(None, ragtrail.propagate(embed), chunk)

    Each call runs in its own copy of that context, so the wrapped function can run in many
    threads at once and what one call sets does not leak into another.

    ``trace_only=True`` carries only the trace (the OpenTelemetry context, with its span and
    baggage) and the correlation ID, on top of the context the worker already has: for pools
    whose workers set ContextVars of their own before calling you, such as ``dspy.Parallel``
    (each worker's copy of DSPy's settings and usage tracker).
    """
    if trace_only:
        return _with_trace(fn, get_current(), correlation_id())
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return run_in_context


def _with_trace(fn: Callable[P, R], trace: Context, correlation: str | None) -> Callable[P, R]:
    def call_in_trace(*args: P.args, **kwargs: P.kwargs) -> R:
        set_correlation_id(correlation)  # in the per-call copy: gone when the call returns
        token = attach(trace)
        try:
            return fn(*args, **kwargs)
        finally:
            detach(token)  # an OTEL_PYTHON_CONTEXT runtime keeps its own state, not the copy's

    @functools.wraps(fn)
    def run_in_trace(*args: P.args, **kwargs: P.kwargs) -> R:
        return contextvars.copy_context().run(call_in_trace, *args, **kwargs)

    return run_in_trace
