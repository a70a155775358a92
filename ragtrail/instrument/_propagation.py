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

__all__ = ["propagate"]

P = ParamSpec("P")
R = TypeVar("R")


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to the context current *now* (span, correlation ID, other ContextVars).

    Call it where the work is handed off, not at import time::

        executor.submit(ragtrail.propagate(embed), chunk)
        await loop.run_in_executor(None, ragtrail.propagate(embed), chunk)

    Each call runs in its own copy of that context, so the wrapped function can run in many
    threads at once and what one call sets does not leak into another.
    """
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return run_in_context
