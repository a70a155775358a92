"""Correlation IDs: scopes, tokens, task isolation, and the spans that carry them."""

from __future__ import annotations

import asyncio
import os
import re

import pytest
from instrument_support import drawn_in_forked_child, stored_spans

from ragtrail.instrument import (
    Monitor,
    correlation_id,
    correlation_scope,
    monitored,
    new_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)

UUID4_HEX = re.compile(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}")


def test_no_id_outside_a_scope() -> None:
    """Outside any scope there is no correlation ID."""
    assert correlation_id() is None


def test_scope_generates_a_uuid4_hex_id_and_restores() -> None:
    """``correlation_scope()`` makes a 32-hex uuid4 ID current and removes it on exit."""
    with correlation_scope() as generated:
        assert UUID4_HEX.fullmatch(generated)
        assert correlation_id() == generated
    assert correlation_id() is None


def test_scopes_nest_and_unwind() -> None:
    """An inner scope shadows the outer one until it exits, even when it raises."""
    seen: list[str | None] = []

    def fail_inside() -> None:
        with correlation_scope("inner"):
            seen.append(correlation_id())
            raise RuntimeError

    with correlation_scope("outer"):
        with pytest.raises(RuntimeError):
            fail_inside()
        assert correlation_id() == "outer"
    assert seen == ["inner"]


def test_set_and_reset_with_a_token() -> None:
    """``set_correlation_id`` returns a token that restores the previous ID."""
    outer = set_correlation_id("a")
    inner = set_correlation_id("b")
    assert correlation_id() == "b"
    reset_correlation_id(inner)
    assert correlation_id() == "a"
    reset_correlation_id(outer)
    assert correlation_id() is None


def test_new_ids_are_unique_uuid4_hex() -> None:
    """Fresh IDs are distinct uuid4 hex strings."""
    ids = {new_correlation_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(UUID4_HEX.fullmatch(i) for i in ids)


def test_concurrent_tasks_keep_their_own_ids(monitor: Monitor) -> None:
    """Each asyncio task's spans carry its own correlation ID."""
    @monitored(name="work")
    async def work() -> str | None:
        await asyncio.sleep(0)
        return correlation_id()

    async def request(i: int) -> str | None:
        with correlation_scope(f"request-{i}"):
            await asyncio.sleep(0)
            return await work()

    async def main() -> list[str | None]:
        return await asyncio.gather(*(request(i) for i in range(20)))

    assert asyncio.run(main()) == [f"request-{i}" for i in range(20)]
    assert sorted(s.correlation_id or "" for s in stored_spans(monitor)) == sorted(
        f"request-{i}" for i in range(20))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_workers_do_not_repeat_the_parents_ids() -> None:
    """A forked child (a gunicorn worker after ``--preload``) never hands out the parent's
    sequence of IDs: no generator state is shared across fork."""
    child = drawn_in_forked_child(new_correlation_id)
    parent = [new_correlation_id() for _ in range(5)]
    assert len(child) == 5
    assert not set(child) & set(parent)
    assert all(UUID4_HEX.fullmatch(i) for i in child)


def test_threads_drawing_ids_at_once_never_share_one() -> None:
    """IDs come from a pool of random bytes refilled every 256 IDs: threads drawing from it
    at the same time, across many refills, still get distinct IDs."""
    from concurrent.futures import ThreadPoolExecutor

    def draw(_: int) -> list[str]:
        return [new_correlation_id() for _ in range(2000)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = [i for batch in pool.map(draw, range(8)) for i in batch]
    assert len(set(ids)) == len(ids) == 16_000
    assert all(UUID4_HEX.fullmatch(i) for i in ids)
