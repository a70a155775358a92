"""Checked by mypy (``test_typing.py``), never run: ``@monitored`` keeps static types.

Each ``assert_type`` fails the check if decoration changed a type; each ``type: ignore`` fails
it (``warn_unused_ignores``) if decoration stopped catching a wrong call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from typing_extensions import assert_type

from ragtrail.instrument import monitored, propagate


@monitored
def search(query: str, top_k: int = 5) -> list[str]:
    return [query] * top_k


@monitored(kind="retriever", capture_args=["query"], slow_ms=50)
async def search_async(query: str) -> list[str]:
    return [query]


@monitored
def stream(n: int) -> Iterator[int]:
    yield n


@monitored(kind="llm")
async def stream_async(prompt: str) -> AsyncIterator[str]:
    yield prompt


class Service:
    @monitored
    def method(self, x: int) -> str:
        return str(x)

    @classmethod
    @monitored
    def class_method(cls, x: int) -> str:
        return str(x)

    @staticmethod
    @monitored(name="static")
    def static_method(x: int) -> str:
        return str(x)


assert_type(search("q"), list[str])
assert_type(search("q", top_k=2), list[str])
assert_type(stream(1), Iterator[int])
assert_type(stream_async("p"), AsyncIterator[str])
assert_type(Service().method(1), str)
assert_type(Service.class_method(1), str)
assert_type(Service.static_method(1), str)
assert_type(propagate(search)("q"), list[str])
assert_type(propagate(search, trace_only=True)("q", top_k=2), list[str])



async def awaited() -> None:
    assert_type(await search_async("q"), list[str])
    async for chunk in stream_async("p"):
        assert_type(chunk, str)


search(1)  # type: ignore[arg-type]
search("q", top_n=2)  # type: ignore[call-arg]
Service().method("x")  # type: ignore[arg-type]
monitored(kind="database")  # type: ignore[call-overload]
