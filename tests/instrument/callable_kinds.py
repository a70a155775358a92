"""Every kind of callable ``@monitored`` supports, built the same way for parametrized tests.

Each builder decorates a callable named ``step`` that runs ``body()`` and returns (or, for
generators, yields in two halves) ``2 * x``; it returns the decorated object and a ``run``
function that calls it synchronously (driving event loops and iterations) with ``x = 21``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ragtrail.instrument import monitored

Body = Callable[[], None]
Built = tuple[Any, Callable[[], int]]


def sync_function(body: Body, **options: Any) -> Built:
    @monitored(name="step", **options)
    def step(x: int) -> int:
        body()
        return x * 2

    return step, lambda: step(21)


def coroutine_function(body: Body, **options: Any) -> Built:
    @monitored(name="step", **options)
    async def step(x: int) -> int:
        await asyncio.sleep(0)
        body()
        return x * 2

    return step, lambda: asyncio.run(step(21))


def generator_function(body: Body, **options: Any) -> Built:
    @monitored(name="step", **options)
    def step(x: int) -> Iterator[int]:
        body()
        yield x
        yield x

    return step, lambda: sum(step(21))


def async_generator_function(body: Body, **options: Any) -> Built:
    @monitored(name="step", **options)
    async def step(x: int) -> AsyncIterator[int]:
        body()
        yield x
        await asyncio.sleep(0)
        yield x

    async def total() -> int:
        return sum([item async for item in step(21)])

    return step, lambda: asyncio.run(total())


def method(body: Body, **options: Any) -> Built:
    class Service:
        factor = 2

        @monitored(name="step", **options)
        def step(self, x: int) -> int:
            body()
            return x * self.factor

    return Service.step, lambda: Service().step(21)


def async_method(body: Body, **options: Any) -> Built:
    class Service:
        @monitored(name="step", **options)
        async def step(self, x: int) -> int:
            body()
            return x * 2

    return Service.step, lambda: asyncio.run(Service().step(21))


def class_method(body: Body, **options: Any) -> Built:
    class Service:
        factor = 2

        @classmethod
        @monitored(name="step", **options)
        def step(cls, x: int) -> int:
            body()
            return x * cls.factor

    return Service.step, lambda: Service.step(21)


def static_method(body: Body, **options: Any) -> Built:
    class Service:
        @staticmethod
        @monitored(name="step", **options)
        def step(x: int) -> int:
            body()
            return x * 2

    return Service.step, lambda: Service().step(21)


def callable_object(body: Body, **options: Any) -> Built:
    class Doubler:
        def __call__(self, x: int) -> int:
            body()
            return x * 2

    step = monitored(name="step", **options)(Doubler())
    return step, lambda: step(21)


BUILDERS: dict[str, Callable[..., Built]] = {
    "sync": sync_function,
    "coroutine": coroutine_function,
    "generator": generator_function,
    "async_generator": async_generator_function,
    "method": method,
    "async_method": async_method,
    "classmethod": class_method,
    "staticmethod": static_method,
    "callable_object": callable_object,
}


def nothing() -> None:
    """A body that does nothing."""
