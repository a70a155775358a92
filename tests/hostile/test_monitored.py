"""Hostile arguments and results through ``@monitored(capture_args=True, capture_result=True)``:
the call is transparent (same result, same exception object), capture never breaks it, and
what is stored or exported is redacted and escaped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from hypothesis import given

from ragtrail import monitored

from ._apps import event_loop
from ._campaign import CASES, CASES_PER_SURFACE, GENERATED, Campaign, Recipe
from ._values import hostile_value


class NotFound(LookupError):
    pass


def _outcome(result: Any, fail: bool, query: Any) -> Any:
    # The message names the query's type only: the query itself, as str() or repr(), meets
    # the defects pinned at the end of this module.
    if fail:
        raise NotFound(f"no document for a {type(query).__name__}")
    return result


@monitored(kind="retriever", capture_args=True, capture_result=True, record_errors=True)
def retrieve(query: Any, *args: Any, top_k: int = 5, result: Any = None, fail: bool = False,
             **filters: Any) -> Any:
    return _outcome(result, fail, query)


@monitored(kind="llm", capture_args=["prompt", "options"], capture_result=True,
           record_errors=True)
async def generate(prompt: Any, options: Any, *, result: Any = None, fail: bool = False) -> Any:
    return _outcome(result, fail, prompt)


@monitored(kind="retriever", capture_args=True)
def stream(query: Any, items: list[Any], fail: bool = False) -> Iterator[Any]:
    yield from items
    _outcome(None, fail, query)


@monitored(kind="chain", capture_args=True)
async def astream(query: Any, items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


class Pipeline:
    @monitored(kind="reranker", capture_args=True, capture_result=True)
    def rerank(self, documents: Any, *, result: Any = None) -> Any:
        return result


def _call(loop: asyncio.AbstractEventLoop, piece: str, recipe: Recipe) -> None:
    """One call of one kind with hostile arguments; checks it behaved as if undecorated."""
    query = hostile_value(piece, recipe)
    result = hostile_value(piece[::-1], recipe)
    fail = recipe.below(4) == 0
    kind = recipe.below(5)
    try:
        if kind == 0:
            extra = {f"f{i}": hostile_value(piece, recipe) for i in range(recipe.below(3))}
            returned = retrieve(query, hostile_value(piece, recipe), result=result, fail=fail,
                                **extra)
        elif kind == 1:
            returned = loop.run_until_complete(
                generate(query, hostile_value(piece, recipe), result=result, fail=fail))
        elif kind == 2:
            items = [result, query]
            assert list(stream(query, items, fail)) == items
            returned = result
        elif kind == 3:
            items = [result, query]
            assert loop.run_until_complete(_collect(astream(query, items))) == items
            returned = result
            fail = False
        else:
            returned = Pipeline().rerank(query, result=result)
            fail = False
    except NotFound as error:
        raised: NotFound | None = error
    else:
        raised = None
    if raised is not None:
        assert fail, raised
        assert raised.args == (f"no document for a {type(query).__name__}",)
        return
    assert not fail
    assert returned is result


async def _collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


def test_generated_captured_arguments(campaign: Callable[..., Campaign]) -> None:
    """10,000 generated calls of five callable kinds with hostile arguments and results."""
    surface = campaign("monitored")
    with event_loop() as loop, surface.generated():

        @GENERATED
        @given(CASES)
        def batch(cases: list[tuple[str, Recipe]]) -> None:
            for piece, recipe in cases:
                _call(loop, piece, recipe)
                surface.cases += 1

        batch()
    assert surface.cases >= CASES_PER_SURFACE


def test_curated_captured_arguments(campaign: Callable[..., Campaign]) -> None:
    """The canaries by name and by value, in every position, exported over OTLP."""
    from instrument.redaction_canaries import CANARIES

    surface = campaign("monitored")
    with event_loop() as loop, surface.curated():
        for canary in CANARIES:
            text = canary.text
            assert retrieve(text, text, password=text, api_key="plain-7f3a", result=text) == text
            assert retrieve({"Authorization": text, "nested": [{"token": text}]},
                            result={"secret": text}) == {"secret": text}
            assert loop.run_until_complete(generate(text, {"cookie": text}, result=[text])) == [
                text]
            with pytest.raises(NotFound):
                retrieve(text + "\r\n\x1b[31m", fail=True)
            assert list(stream(text, [text])) == [text]


# -- known defects --------------------------------------------------------------------------

@monitored(kind="llm", record_errors=True)
def _echoing_step(query: str) -> str:
    raise ValueError(f"upstream refused: {query}")  # the query itself, not its repr


def test_exception_message_is_stored_escaped(campaign: Callable[..., Campaign]) -> None:
    """An exception message carrying CR/LF/ESC is stored escaped in ragtrail_spans."""
    surface = campaign("defect-message")
    with surface.generated(), pytest.raises(ValueError, match="upstream refused"):
        _echoing_step("ok\r\n2026-01-01 INFO forged line\x1b[2J")


def test_span_with_lone_surrogate_is_kept(campaign: Callable[..., Campaign]) -> None:
    """An exception message holding a lone surrogate (os.fsdecode of bad bytes gives one)
    still leaves its span, and its function_error event, in the store."""
    surface = campaign("defect-surrogate")
    with surface.generated(), pytest.raises(ValueError, match="upstream refused"):
        _echoing_step("report-\udcff.pdf")


@monitored(kind="retriever", record_errors=True)
def _reporting_step(query: str) -> str:
    raise LookupError(f"no document for {query!r}")


def test_secret_after_an_escape_sequence_is_redacted(campaign: Callable[..., Campaign]) -> None:
    """A secret shown with !r after a newline (\\nsk_live_...) is still redacted."""
    surface = campaign("defect-repr")
    with surface.generated(), pytest.raises(LookupError):
        _reporting_step("two lines\nsk_live_STRIPEcanary0123456789ab")
