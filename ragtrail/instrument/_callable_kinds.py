"""What a decorated callable is, decided once at decoration time.

The calling convention (sync, coroutine, generator, async generator) picks the wrapper; the
per-call path never asks again.
"""

from __future__ import annotations

import enum
import functools
import inspect
from typing import Any

__all__ = ["CallableKind", "callable_kind", "display_name", "underlying_function"]


class CallableKind(enum.Enum):
    SYNC = "sync"
    COROUTINE = "coroutine"
    GENERATOR = "generator"
    ASYNC_GENERATOR = "async_generator"


def underlying_function(obj: Any) -> Any:
    """The function whose code runs: inside static/class methods, or a callable's ``__call__``."""
    if isinstance(obj, (staticmethod, classmethod)):
        return obj.__func__
    if inspect.isroutine(obj) or isinstance(obj, (type, functools.partial)) or not callable(obj):
        return obj
    return type(obj).__call__


def callable_kind(obj: Any) -> CallableKind:
    """The calling convention of ``obj``; a sync callable returning an awaitable stays SYNC."""
    func = underlying_function(obj)
    if inspect.isasyncgenfunction(func):
        return CallableKind.ASYNC_GENERATOR
    if inspect.iscoroutinefunction(func):
        return CallableKind.COROUTINE
    if inspect.isgeneratorfunction(func):
        return CallableKind.GENERATOR
    return CallableKind.SYNC


def display_name(obj: Any) -> tuple[str, str]:
    """(qualified name, module) for span names and ``code.*`` attributes."""
    if isinstance(obj, (staticmethod, classmethod)):
        func = obj.__func__
    elif isinstance(obj, functools.partial):
        func = obj.func
    elif underlying_function(obj) is not obj:  # a callable object: named after its class
        func = type(obj)
    else:
        func = obj
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return str(name or type(func).__qualname__), str(getattr(func, "__module__", "") or "")
