"""How a failure is told on a span: its type's qualified name, its message and the innermost
part of its stack trace, each bounded in what it costs to make."""

from __future__ import annotations

import collections
import traceback
import types

__all__ = ["describe", "qualified_name", "stack_trace"]

# Tracebacks keep their innermost (last) lines: that is where the error is. Only the innermost
# frames are formatted (Python 3.11 computes each frame's positions and carets: 50-150 us), or
# a failure rising through nested monitored calls formats the whole stack at every level: 0.4
# s for a monitored recursion 100 deep.
_STACKTRACE_MAX_CHARS = 4096
_STACKTRACE_FRAMES = 20  # about 4,096 characters


def stack_trace(exception: BaseException) -> str:
    """The exception's traceback as Python prints it, its innermost frames only, cut to its last
    ``_STACKTRACE_MAX_CHARS`` characters (not yet redacted)."""
    formatted = traceback.format_exception(
        type(exception), exception, _innermost(exception.__traceback__),
        limit=-_STACKTRACE_FRAMES)
    return "".join(formatted)[-_STACKTRACE_MAX_CHARS:]


def _innermost(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback from its ``_STACKTRACE_FRAMES``-th innermost entry on (``limit=`` alone
    still computes every frame's positions)."""
    entries: collections.deque[types.TracebackType] = collections.deque(
        maxlen=_STACKTRACE_FRAMES)
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    return entries[0] if entries else None


def describe(exception: BaseException) -> str:
    """``str(exception)``, or what Python's own traceback prints when that raises (a lazy
    proxy in the arguments): a failure must still be recorded as one."""
    try:
        return str(exception)
    except Exception:
        return "<exception str() failed>"


def qualified_name(cls: type) -> str:
    """What ``error.type`` and ``exception.type`` hold: a builtin's bare name, else the class
    with its module (OTel semantic conventions: the fully qualified class name)."""
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"
