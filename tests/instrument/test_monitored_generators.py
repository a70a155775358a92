"""Generators and async generators: one span over the whole iteration, however it ends."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from instrument_support import only_span, stored_spans
from opentelemetry import trace

from ragtrail.instrument import (
    Monitor,
    correlation_id,
    correlation_scope,
    monitored,
    start_span,
)

SYNC_AND_ASYNC = ["sync", "async"]


@monitored
def child() -> None:
    pass


@monitored(name="stream")
def stream(n: int) -> Iterator[int]:
    for i in range(n):
        child()
        yield i


@monitored(name="stream")
async def async_stream(n: int) -> AsyncIterator[int]:
    for i in range(n):
        child()
        await asyncio.sleep(0)
        yield i


def consume(flavour: str, n: int, take: int | None = None,
            between: Callable[[], None] = lambda: None) -> list[int]:
    """Iterate ``stream(n)`` (or its async twin), stopping after ``take`` items if given."""
    if flavour == "sync":
        out: list[int] = []
        gen = stream(n)
        for item in gen:
            out.append(item)
            between()
            if take is not None and len(out) == take:
                gen.close()
                break
        return out

    async def run() -> list[int]:
        out: list[int] = []
        agen = async_stream(n)
        async for item in agen:
            out.append(item)
            between()
            if take is not None and len(out) == take:
                await agen.aclose()
                break
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("flavour", SYNC_AND_ASYNC)
def test_span_covers_the_whole_iteration(flavour: str, monitor: Monitor) -> None:
    """Exhausting the generator ends one span; every item's child call nests under it."""
    assert consume(flavour, 3) == [0, 1, 2]
    span = only_span(monitor, "stream")
    children = [s for s in stored_spans(monitor) if s.name == child.__qualname__]
    assert len(children) == 3
    assert {c.parent_span_id for c in children} == {span.span_id}
    assert all(span.start_us <= c.start_us for c in children)
    assert all(c.start_us + c.duration_us <= span.start_us + span.duration_us for c in children)
    assert span.attributes["ragtrail.items"] == 3
    assert "ragtrail.closed_early" not in span.attributes
    assert span.status == "ok"


@pytest.mark.parametrize("flavour", SYNC_AND_ASYNC)
def test_time_to_first_item_is_recorded(flavour: str, monitor: Monitor) -> None:
    """``ragtrail.time_to_first_item_ms`` is between zero and the span's duration."""
    consume(flavour, 2)
    span = only_span(monitor, "stream")
    first = span.attributes["ragtrail.time_to_first_item_ms"]
    assert 0 <= first <= span.duration_us / 1000 + 0.001


@pytest.mark.parametrize("flavour", SYNC_AND_ASYNC)
def test_callers_context_is_untouched_between_items(flavour: str, monitor: Monitor) -> None:
    """Between items the consumer sees its own current span, not the generator's."""
    seen: list[trace.Span] = []
    outer = start_span("consumer", "function")
    consume(flavour, 3, between=lambda: seen.append(trace.get_current_span()))
    outer.end()
    assert seen == [outer, outer, outer]
    assert only_span(monitor, "stream").parent_span_id == only_span(monitor, "consumer").span_id


@pytest.mark.parametrize("flavour", SYNC_AND_ASYNC)
def test_early_close_ends_the_span(flavour: str, monitor: Monitor) -> None:
    """``close()``/``aclose()`` after one item ends the span, marked closed early."""
    assert consume(flavour, 5, take=1) == [0]
    span = only_span(monitor, "stream")
    assert span.attributes["ragtrail.closed_early"] is True
    assert span.attributes["ragtrail.items"] == 1
    assert span.status == "ok"


@pytest.mark.parametrize("flavour", SYNC_AND_ASYNC)
def test_exception_inside_ends_the_span_with_an_error(flavour: str, monitor: Monitor) -> None:
    """An exception raised by the generator body reaches the consumer and fails the span."""
    @monitored(name="broken")
    def broken() -> Iterator[int]:
        yield 1
        raise KeyError("missing shard")

    @monitored(name="broken")
    async def async_broken() -> AsyncIterator[int]:
        yield 1
        raise KeyError("missing shard")

    async def drain() -> list[int]:
        return [i async for i in async_broken()]

    with pytest.raises(KeyError, match="missing shard"):
        list(broken()) if flavour == "sync" else asyncio.run(drain())
    span = only_span(monitor, "broken")
    assert (span.status, span.error_type) == ("error", "KeyError")
    assert span.attributes["ragtrail.items"] == 1


def test_abandoned_generator_ends_its_span_when_collected(monitor: Monitor) -> None:
    """A generator dropped half-way ends its span when garbage collected."""
    gen = stream(10)
    assert next(gen) == 0
    del gen
    gc.collect()
    span = only_span(monitor, "stream")
    assert span.attributes["ragtrail.closed_early"] is True
    assert span.attributes["ragtrail.items"] == 1


def test_abandoned_async_generator_ends_its_span(monitor: Monitor) -> None:
    """An async generator dropped half-way is closed by the event loop; its span ends."""
    async def main() -> None:
        agen = async_stream(10)
        assert await agen.__anext__() == 0
        del agen
        gc.collect()
        for _ in range(10):  # the loop runs the aclose() scheduled by its finalizer hook
            await asyncio.sleep(0)

    asyncio.run(main())
    span = only_span(monitor, "stream")
    assert span.attributes["ragtrail.closed_early"] is True


def test_never_started_generator_records_nothing(monitor: Monitor) -> None:
    """A generator created but never iterated ran no code and leaves no span."""
    gen = stream(3)
    del gen
    gc.collect()
    assert stored_spans(monitor) == []


def test_send_and_throw_reach_the_inner_generator(monitor: Monitor) -> None:
    """``send()`` values and ``throw()`` exceptions are delegated like ``yield from``."""
    @monitored(name="echo")
    def echo() -> Iterator[Any]:
        received = None
        while True:
            try:
                received = yield received
            except ValueError as error:
                received = f"caught {error}"

    gen = echo()
    assert next(gen) is None
    assert gen.send("hello") == "hello"
    assert gen.throw(ValueError("x")) == "caught x"
    gen.close()
    assert only_span(monitor, "echo").attributes["ragtrail.items"] == 3


def test_return_value_of_generator_is_preserved() -> None:
    """``StopIteration.value`` (a ``yield from`` result) comes through."""
    @monitored
    def produce() -> Iterator[int]:
        yield 1
        return 42

    def delegate() -> Iterator[int]:
        result = yield from produce()
        yield result

    assert list(delegate()) == [1, 42]


@pytest.mark.parametrize("flavour", SYNC_AND_ASYNC)
def test_generator_span_parent_is_where_it_was_created(flavour: str, monitor: Monitor) -> None:
    """The span's parent is the span current when the generator was called."""
    creator = start_span("creator", "function")
    if flavour == "sync":
        gen = stream(2)
        creator.end()
        assert list(gen) == [0, 1]
    else:
        agen = async_stream(2)
        creator.end()

        async def drain() -> list[int]:
            return [i async for i in agen]

        assert asyncio.run(drain()) == [0, 1]
    assert only_span(monitor, "stream").parent_span_id == only_span(monitor, "creator").span_id


@pytest.mark.parametrize("flavour", SYNC_AND_ASYNC)
def test_body_keeps_the_correlation_id_it_was_created_with(flavour: str,
                                                           monitor: Monitor) -> None:
    """Consumed outside its ``correlation_scope`` (another thread, a later task), each step
    of the body still sees the creator's ID, and so do the spans it makes."""
    seen: list[str | None] = []

    @monitored(name="stream")
    def ids(n: int) -> Iterator[int]:
        for i in range(n):
            seen.append(correlation_id())
            child()
            yield i

    @monitored(name="stream")
    async def async_ids(n: int) -> AsyncIterator[int]:
        for i in range(n):
            seen.append(correlation_id())
            child()
            yield i

    with correlation_scope("c" * 32):
        made: Any = ids(2) if flavour == "sync" else async_ids(2)
    assert correlation_id() is None
    if flavour == "sync":
        assert list(made) == [0, 1]
    else:
        async def drain() -> list[int]:
            return [i async for i in made]

        assert asyncio.run(drain()) == [0, 1]
    assert correlation_id() is None
    assert seen == ["c" * 32] * 2
    spans = stored_spans(monitor)
    assert [s.correlation_id for s in spans] == ["c" * 32] * 3, spans
