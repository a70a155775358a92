"""The four per-call wrappers of ``@monitored``: sync, coroutine, generator, async generator.

Each is a wrapt wrapper ``(wrapped, instance, args, kwargs)`` closed over a ``CallPlan``. The
shape is the same in all four: read the monitor (a module attribute), pass straight through
when it is disabled, open a span, run the call with the span current, finish or fail the span,
and return or re-raise exactly what the call did. Instrumentation errors before the call make
it run unrecorded; they never reach the caller.
"""

from __future__ import annotations

import types
from collections.abc import AsyncGenerator, Callable, Generator
from contextvars import Token
from time import time_ns
from typing import Any

from opentelemetry.context import Context

from ragtrail.instrument import _monitor
from ragtrail.instrument._call_plan import CLOSED_EARLY, ITEMS, TIME_TO_FIRST_ITEM, CallPlan
from ragtrail.instrument._correlation import _correlation_id
from ragtrail.instrument._otel_context import attach, detach, get_current
from ragtrail.instrument._spans import LiveSpan, open_span

__all__ = ["wrapper_for"]

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


def sync_wrapper(plan: CallPlan) -> Wrapper:
    def monitored_call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> Any:
        monitor = _monitor._active or _monitor.monitor_for_calls()
        if monitor is None or not monitor.enabled:
            return wrapped(*args, **kwargs)
        try:
            span = plan.begin(monitor, instance, args, kwargs)
        except Exception:
            monitor.report_failure("monitored")
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            plan.fail(monitor, span, error)
            raise
        plan.finish(monitor, span, result)
        return result

    return monitored_call


def coroutine_wrapper(plan: CallPlan) -> Wrapper:
    async def monitored_call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                             kwargs: dict[str, Any]) -> Any:
        monitor = _monitor._active or _monitor.monitor_for_calls()
        if monitor is None or not monitor.enabled:
            return await wrapped(*args, **kwargs)
        try:
            span = plan.begin(monitor, instance, args, kwargs)
        except Exception:
            monitor.report_failure("monitored")
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as error:
            plan.fail(monitor, span, error)
            raise
        plan.finish(monitor, span, result)
        return result

    return monitored_call


def _stream_wrapper(traced: Callable[[CallPlan, _StreamStart, Any], Any],
                    ) -> Callable[[CallPlan, str], Wrapper]:
    """The wrapper factory for generator functions, sync or async (``traced`` decides)."""
    def factory(plan: CallPlan, qualname: str) -> Wrapper:
        traced_here = _named(types.FunctionType(
            traced.__code__, traced.__globals__, traced.__name__), qualname)
        def monitored_call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                           kwargs: dict[str, Any]) -> Any:
            monitor = _monitor._active or _monitor.monitor_for_calls()
            if monitor is None or not monitor.enabled:
                return wrapped(*args, **kwargs)
            inner = wrapped(*args, **kwargs)
            try:
                start = _StreamStart(plan, monitor, instance, args, kwargs)
            except Exception:
                monitor.report_failure("monitored")
                return inner
            return traced_here(plan, start, inner)

        return monitored_call

    return factory


class _StreamStart:
    """What a generator's span needs from the call site: its parent context and the inputs.

    The span itself opens when iteration starts, so a generator that is created but never
    iterated records nothing (it ran no code) and cannot leave a span open forever.
    """

    __slots__ = ("captured", "correlation_id", "monitor", "parent")

    def __init__(self, plan: CallPlan, monitor: _monitor.Monitor, instance: Any,
                 args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.monitor = monitor
        self.parent = get_current()
        self.correlation_id = _correlation_id.get()
        self.captured = plan.captured_arguments(monitor, instance, args, kwargs)

    def open(self, plan: CallPlan) -> LiveSpan:
        span = open_span(self.monitor, plan.name, plan.kind, plan.attributes, self.parent,
                         self.correlation_id)
        if self.captured:
            span._update(self.captured)
        return span


_Tokens = tuple[Token[Context], Token[str | None]]


def _enter(context: Context, correlation_id: str | None) -> _Tokens:
    """Make the generator's span and correlation ID current for one step of its body: the
    consumer may iterate from another task, thread or ``correlation_scope``."""
    return attach(context), _correlation_id.set(correlation_id)


def _leave(tokens: _Tokens) -> None:
    _correlation_id.reset(tokens[1])
    detach(tokens[0])


def _first_item(span: LiveSpan) -> None:
    span._set(TIME_TO_FIRST_ITEM, (time_ns() - span.start_ns) / 1e6)


def _traced_generator(plan: CallPlan, start: _StreamStart,
                      inner: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Delegates to ``inner`` like ``yield from``, with the span current only inside it."""
    monitor = start.monitor
    try:
        span = start.open(plan)
    except Exception:
        monitor.report_failure("monitored")
        return (yield from inner)
    context, correlation_id = span.context, start.correlation_id
    items = 0
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        token = _enter(context, correlation_id)
        try:
            item = inner.send(sent) if thrown is None else inner.throw(thrown)
        except StopIteration as stop:
            span._set(ITEMS, items)
            plan.finish_stream(monitor, span)  # still current: a slow_call event attaches
            _leave(token)
            return stop.value
        except BaseException as error:
            span._set(ITEMS, items)
            plan.fail(monitor, span, error)
            _leave(token)
            raise
        _leave(token)
        if items == 0:
            _first_item(span)
        items += 1
        thrown = None
        try:
            sent = yield item
        except GeneratorExit:
            # close(), or the consumer dropped the generator and it is being collected.
            token = _enter(context, correlation_id)
            try:
                inner.close()
            except Exception as error:
                span.fail(error)
                raise
            finally:
                _closed_early(plan, monitor, span, items)
                _leave(token)
            raise
        except BaseException as error:
            thrown, sent = error, None


def _closed_early(plan: CallPlan, monitor: _monitor.Monitor, span: LiveSpan, items: int) -> None:
    span._update({ITEMS: items, CLOSED_EARLY: True})
    plan.finish_stream(monitor, span)


async def _traced_async_generator(plan: CallPlan, start: _StreamStart,
                                  inner: AsyncGenerator[Any, Any]) -> AsyncGenerator[Any, Any]:
    """The async twin of ``_traced_generator`` (``asend``/``athrow``/``aclose``)."""
    monitor = start.monitor
    try:
        span = start.open(plan)
    except Exception:
        monitor.report_failure("monitored")
        async for item in inner:  # unrecorded, and without asend/athrow: a last resort
            yield item
        return
    context, correlation_id = span.context, start.correlation_id
    items = 0
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        token = _enter(context, correlation_id)
        try:
            item = await (inner.asend(sent) if thrown is None else inner.athrow(thrown))
        except StopAsyncIteration:
            span._set(ITEMS, items)
            plan.finish_stream(monitor, span)  # still current: a slow_call event attaches
            _leave(token)
            return
        except BaseException as error:
            span._set(ITEMS, items)
            plan.fail(monitor, span, error)
            _leave(token)
            raise
        _leave(token)
        if items == 0:
            _first_item(span)
        items += 1
        thrown = None
        try:
            sent = yield item
        except GeneratorExit:
            token = _enter(context, correlation_id)
            try:
                await inner.aclose()
            except Exception as error:
                span.fail(error)
                raise
            finally:
                _closed_early(plan, monitor, span, items)
                _leave(token)
            raise
        except BaseException as error:
            thrown, sent = error, None


def _named(function: Any, qualname: str) -> Any:
    """``function`` renamed: the coroutines and generators it makes take its names."""
    function.__name__ = qualname.rpartition(".")[2]
    function.__qualname__ = qualname
    return function


_WRAPPERS: dict[str, Callable[[CallPlan, str], Wrapper]] = {
    "sync": lambda plan, _qualname: sync_wrapper(plan),
    "coroutine": lambda plan, qualname: _named(coroutine_wrapper(plan), qualname),
    "generator": _stream_wrapper(_traced_generator),
    "async_generator": _stream_wrapper(_traced_async_generator),
}


def wrapper_for(calling_convention: str, plan: CallPlan, qualname: str) -> Wrapper:
    """The wrapt wrapper for a callable of that convention (a ``CallableKind`` value).

    The coroutines and generators it returns are named ``qualname``, as the decorated
    function's own are, wherever they are shown (asyncio task reprs, "never awaited"
    warnings, debuggers), instead of after ragtrail's wrappers.
    """
    return _WRAPPERS[calling_convention](plan, qualname)
