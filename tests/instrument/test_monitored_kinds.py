"""``@monitored`` on every kind of callable: one stored span per call, nesting, errors."""

from __future__ import annotations

import asyncio
import functools
import inspect
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from callable_kinds import BUILDERS, Built, nothing
from instrument_support import only_span, stored_events, stored_spans

from ragtrail import Severity
from ragtrail.instrument import Monitor, correlation_scope, monitored

KINDS = list(BUILDERS)
CORRELATION = "0af7651916cd43dd8448eb211c80319c"


class Boom(Exception):
    pass


def build(kind: str, body: Any = nothing, **options: Any) -> Built:
    return BUILDERS[kind](body, **options)


@pytest.mark.parametrize("kind", KINDS)
def test_call_returns_its_result_and_stores_one_span(kind: str, monitor: Monitor) -> None:
    """The result passes through and exactly one ok span with the correlation ID is stored."""
    _, run = build(kind)
    with correlation_scope(CORRELATION):
        assert run() == 42
    span = only_span(monitor, "step")
    assert (span.kind, span.status, span.correlation_id) == ("function", "ok", CORRELATION)
    assert span.parent_span_id is None
    assert len(span.trace_id) == 32
    assert len(span.span_id) == 16
    assert span.duration_us >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_calls_made_inside_nest_under_the_span(kind: str, monitor: Monitor) -> None:
    """A monitored call made inside the step is its child, in the same trace."""
    @monitored
    def child() -> None:
        pass

    _, run = build(kind, child)
    run()
    step, inner = only_span(monitor, "step"), only_span(monitor, child.__qualname__)
    assert inner.parent_span_id == step.span_id
    assert inner.trace_id == step.trace_id


@pytest.mark.parametrize("kind", KINDS)
def test_exception_is_reraised_unchanged_and_recorded(kind: str, monitor: Monitor) -> None:
    """The same exception object leaves the call, traceback intact; the span says error."""
    raised = Boom("index offline")

    def body() -> None:
        raise raised

    _, run = build(kind, body)
    with pytest.raises(Boom) as caught:
        run()
    assert caught.value is raised
    assert traceback.extract_tb(caught.value.__traceback__)[-1].name == "body"
    span = only_span(monitor, "step")
    assert span.status == "error"
    assert span.error_type == f"{__name__}.Boom"
    assert span.error_message == "index offline"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == f"{__name__}.Boom"
    assert event.attributes["exception.message"] == "index offline"
    assert "body" in event.attributes["exception.stacktrace"]
    # Inside the span, as backends draw it: at its end (to the rounding of microseconds), not
    # after the traceback was formatted.
    assert span.start_us <= event.time_us <= span.start_us + span.duration_us + 1


@pytest.mark.parametrize("kind", KINDS)
def test_record_errors_adds_a_function_error_event(kind: str, monitor: Monitor) -> None:
    """``record_errors=True``: a ``function_error`` event (medium), tied to the span's trace."""
    def body() -> None:
        raise Boom("bad input")

    _, run = build(kind, body, record_errors=True)
    with correlation_scope(CORRELATION), pytest.raises(Boom):
        run()
    span = only_span(monitor, "step")
    (event,) = stored_events(monitor)
    assert (event.event_type, event.severity, event.source) == (
        "function_error", Severity.MEDIUM, "step")
    assert (event.trace_id, event.span_id, event.correlation_id) == (
        span.trace_id, span.span_id, CORRELATION)
    assert "Boom: bad input" in event.description
    assert "function_error" in [e.name for e in span.events]


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str() for this one")


@pytest.mark.parametrize("kind", KINDS)
def test_an_exception_whose_str_raises_is_still_recorded_as_a_failure(
        kind: str, monitor: Monitor) -> None:
    """A lazy proxy in the arguments makes ``str(exception)`` raise: the span still says
    error, with Python's own placeholder for the message, and the event is recorded."""
    def body() -> None:
        raise Unprintable()

    _, run = build(kind, body, record_errors=True)
    with pytest.raises(Unprintable):
        run()
    span = only_span(monitor, "step")
    placeholder = "<exception str() failed>"
    assert (span.status, span.error_type, span.error_message) == (
        "error", f"{__name__}.Unprintable", placeholder)
    (event,) = stored_events(monitor)
    assert event.description.endswith(f"raised Unprintable: {placeholder}")


def test_a_failure_deep_in_a_monitored_recursion_keeps_only_the_innermost_frames(
        monitor: Monitor) -> None:
    """Each level formats the innermost 20 frames, not the whole stack (formatting all of it
    at every level of a recursion 100 deep took 0.4 s), and keeps the frame that raised."""
    @monitored(name="walk")
    def walk(depth: int) -> None:
        if depth == 0:
            raise KeyError("missing node")
        walk(depth - 1)

    with pytest.raises(KeyError):
        walk(100)
    outermost = max(stored_spans(monitor), key=lambda span: span.duration_us)
    (event,) = [e for e in outermost.events if e.name == "exception"]
    stack = event.attributes["exception.stacktrace"]
    assert stack.count('  File "') == 20
    assert stack.rstrip().endswith("KeyError: 'missing node'")
    assert 'raise KeyError("missing node")' in stack


def test_function_error_severity_comes_from_settings(monitor_factory: Any) -> None:
    """``function_error_severity`` sets the severity of ``function_error`` events."""
    monitor = monitor_factory(function_error_severity="high")
    _, run = build("sync", _raise_boom, record_errors=True)
    with pytest.raises(Boom):
        run()
    assert [e.severity for e in stored_events(monitor)] == [Severity.HIGH]


def test_errors_are_not_security_events_by_default(monitor: Monitor) -> None:
    """Without ``record_errors`` an exception marks the span only."""
    _, run = build("sync", _raise_boom)
    with pytest.raises(Boom):
        run()
    assert stored_events(monitor) == []
    assert only_span(monitor, "step").status == "error"


def test_cancellation_is_not_an_error(monitor: Monitor) -> None:
    """A cancelled coroutine ends its span ok, marked interrupted, and stays cancelled."""
    @monitored
    async def wait_forever() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.create_task(wait_forever())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    span = only_span(monitor, wait_forever.__qualname__)
    assert span.status == "ok"
    assert span.attributes["ragtrail.interrupted"] == "CancelledError"


@pytest.mark.parametrize("kind", ["sync", "coroutine", "generator", "async_generator"])
def test_slow_call_records_a_low_slow_call_event(kind: str, monitor: Monitor) -> None:
    """A call slower than ``slow_ms`` records a ``slow_call`` event (low) on its span."""
    _, run = build(kind, slow_ms=0)
    run()
    (event,) = stored_events(monitor)
    assert (event.event_type, event.severity, event.source) == ("slow_call", Severity.LOW, "step")
    assert event.span_id == only_span(monitor, "step").span_id


def test_fast_call_records_no_slow_call_event(monitor: Monitor) -> None:
    """Under the threshold nothing is recorded."""
    _, run = build("sync", slow_ms=60_000)
    run()
    assert stored_events(monitor) == []


def test_slow_ms_setting_is_the_default_threshold(monitor_factory: Any) -> None:
    """The ``slow_ms`` setting applies to decorators that did not set their own."""
    monitor = monitor_factory(slow_ms=0)
    _, run = build("sync")
    run()
    assert [e.event_type for e in stored_events(monitor)] == ["slow_call"]


def test_nested_pipeline_forms_one_trace(monitor: Monitor) -> None:
    """chain -> retriever and llm: one trace, the steps children of the chain."""
    @monitored(kind="retriever")
    def retrieve(query: str) -> list[str]:
        return []

    @monitored(kind="llm")
    async def generate(prompt: str) -> str:
        return "answer"

    @monitored(kind="chain", name="answer")
    async def answer(query: str) -> str:
        retrieve(query)
        return await generate(query)

    assert asyncio.run(answer("q")) == "answer"
    spans = {s.name: s for s in stored_spans(monitor)}
    root = spans["answer"]
    assert {s.trace_id for s in spans.values()} == {root.trace_id}
    assert spans[retrieve.__qualname__].parent_span_id == root.span_id
    assert spans[generate.__qualname__].parent_span_id == root.span_id
    assert (spans["answer"].kind, spans[retrieve.__qualname__].kind) == ("chain", "retriever")


def test_concurrent_tasks_keep_their_own_parents(monitor: Monitor) -> None:
    """Spans of concurrent asyncio tasks nest under their own task's span."""
    @monitored
    async def leaf(i: int) -> None:
        await asyncio.sleep(0)

    @monitored
    async def branch(i: int) -> None:
        await asyncio.sleep(0)
        await leaf(i)

    async def main() -> None:
        await asyncio.gather(*(branch(i) for i in range(5)))

    asyncio.run(main())
    spans = stored_spans(monitor)
    branches = {s.span_id: s for s in spans if s.name == branch.__qualname__}
    leaves = [s for s in spans if s.name == leaf.__qualname__]
    assert len(branches) == 5
    assert len(leaves) == 5
    assert {leaf_span.parent_span_id for leaf_span in leaves} == set(branches)
    assert len({s.trace_id for s in branches.values()}) == 5


# -- what decoration preserves ---------------------------------------------------------------

def test_metadata_and_signature_are_preserved() -> None:
    """Name, qualname, docstring, module and signature are the function's own."""
    def search(query: str, top_k: int = 5) -> list[str]:
        """Find documents."""
        return []

    decorated = monitored(kind="retriever")(search)
    assert decorated.__name__ == "search"
    assert decorated.__qualname__ == search.__qualname__
    assert decorated.__doc__ == "Find documents."
    assert decorated.__module__ == __name__
    assert inspect.signature(decorated) == inspect.signature(search)
    assert decorated.__wrapped__ is search


@pytest.mark.parametrize(("kind", "predicate"), [
    ("coroutine", inspect.iscoroutinefunction),
    ("generator", inspect.isgeneratorfunction),
    ("async_generator", inspect.isasyncgenfunction),
])
def test_inspect_sees_the_calling_convention(kind: str, predicate: Any) -> None:
    """``inspect`` answers for the decorated function as for the original."""
    decorated, _ = build(kind)
    assert predicate(decorated)


def test_generator_results_are_real_generators() -> None:
    """Calling a decorated generator function returns a generator (async: an async one)."""
    @monitored
    def numbers() -> Iterator[int]:
        yield 1

    @monitored
    async def async_numbers() -> AsyncIterator[int]:
        yield 1

    assert inspect.isgenerator(numbers())
    assert inspect.isasyncgen(async_numbers())


def test_bare_and_called_forms_are_equivalent(monitor: Monitor) -> None:
    """``@monitored`` and ``@monitored()`` record the same span."""
    @monitored
    def bare() -> int:
        return 1

    @monitored()
    def called() -> int:
        return 1

    bare(), called()
    names = [s.name for s in stored_spans(monitor)]
    assert names == [bare.__qualname__, called.__qualname__]
    assert {s.attributes["code.function.name"] for s in stored_spans(monitor)} == {
        f"{__name__}.{bare.__qualname__}", f"{__name__}.{called.__qualname__}"}


def test_static_attributes_are_on_every_span(monitor: Monitor) -> None:
    """``attributes=`` are recorded on each call's span."""
    @monitored(name="tagged", attributes={"rag.index": "faq", "rag.version": 3})
    def tagged() -> None:
        pass

    tagged()
    tagged()
    spans = stored_spans(monitor)
    assert [(s.attributes["rag.index"], s.attributes["rag.version"]) for s in spans] == [
        ("faq", 3), ("faq", 3)]


def test_attributes_set_inside_a_call_stay_on_that_call(monitor: Monitor) -> None:
    """``set_attribute`` on the current span changes that span only, not the next call's."""
    from opentelemetry import trace

    @monitored(name="step", attributes={"static": 1})
    def step(i: int) -> None:
        trace.get_current_span().set_attribute("call", i)

    step(1)
    step(2)
    assert [(s.attributes["static"], s.attributes["call"]) for s in stored_spans(monitor)] == [
        (1, 1), (1, 2)]


@pytest.mark.parametrize(("options", "message"), [
    ({"kind": "database"}, "kind must be one of chain, retriever"),
    ({"name": ""}, "name must be a non-empty string"),
    ({"capture_args": "query"}, "capture_args must be True/False or a list"),
    ({"slow_ms": -1}, "slow_ms must be a number of milliseconds >= 0"),
    ({"slow_ms": "5"}, "slow_ms must be a number of milliseconds >= 0"),
])
def test_bad_options_fail_at_decoration(options: dict[str, Any], message: str) -> None:
    """A wrong option raises ValueError when decorating, naming what is accepted."""
    with pytest.raises(ValueError, match=message):
        monitored(**options)


def test_unknown_capture_name_fails_at_decoration() -> None:
    """``capture_args`` naming a parameter the function lacks is caught at decoration."""
    def search(query: str) -> None:
        pass

    with pytest.raises(ValueError, match="querry"):
        monitored(capture_args=["querry"])(search)


@pytest.mark.parametrize("wrapper", [property, functools.cached_property])
def test_a_property_fails_at_decoration(wrapper: Any) -> None:
    """A property is no call: wrapped, it would record nothing, silently."""
    def value(self: object) -> int:
        return 1

    with pytest.raises(TypeError, match="put @property above @monitored"):
        monitored(wrapper(value))
    with pytest.raises(TypeError, match="put @property above @monitored"):
        monitored(enabled=False)(wrapper(value))


def _raise_boom() -> None:
    raise Boom("boom")


# -- instrumentation failures never reach the caller -----------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_a_failure_to_open_the_span_leaves_the_call_unrecorded(
        kind: str, monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    """If ragtrail itself breaks before the call, the call still runs and returns."""
    from ragtrail.instrument import _spans

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("ragtrail bug")

    monkeypatch.setattr(_spans.LiveSpan, "__init__", broken)
    _, run = build(kind)
    assert run() == 42
    assert monitor.health()["failures"]["monitored"] >= 1


def test_a_failing_store_never_breaks_the_call(monitor: Monitor,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A store whose ``record`` raises is counted; the decorated call returns normally."""
    def broken(record: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(monitor.store, "record", broken)
    _, run = build("sync")
    assert run() == 42
    assert monitor.health()["failures"]["record_span"] == 1
