"""Decorated methods held by ``weakref.WeakMethod``, as signal libraries hold their receivers.

WeakMethod rebuilds a method as ``type(method)(method.__func__, method.__self__)``; wrapt's
bound wrapper could not be built that way, so dereferencing raised ``TypeError`` and a
decorated receiver broke ``blinker``'s ``send()``. Now a decorated method behaves as a plain
one there: the reference gives a method that still records its span, and dies with its
instance.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import blinker
import pytest
from instrument_support import stored_spans

from ragtrail.instrument import Monitor, monitored


class Receiver:
    @monitored(capture_args=True)
    def sync(self, x: int) -> int:
        return x * 2

    @monitored
    async def coroutine(self, x: int) -> int:
        return x * 2

    @monitored
    def generator(self, x: int) -> Iterator[int]:
        yield x * 2

    @monitored
    async def async_generator(self, x: int) -> AsyncIterator[int]:
        yield x * 2

    @monitored
    @classmethod
    def class_method(cls, x: int) -> int:
        return x * 2

    @monitored
    @staticmethod
    def static_method(x: int) -> int:
        return x * 2

    @monitored
    @classmethod
    def __mangled(cls, x: int) -> int:
        return x * 2


async def _total(items: AsyncIterator[int]) -> int:
    return sum([item async for item in items])


RUN: dict[str, Callable[[Any], int]] = {
    "sync": lambda method: method(21),
    "coroutine": lambda method: asyncio.run(method(21)),
    "generator": lambda method: sum(method(21)),
    "async_generator": lambda method: asyncio.run(_total(method(21))),
}


@pytest.mark.parametrize("name", list(RUN))
def test_a_weak_method_gives_a_monitored_method_and_dies_with_its_instance(
        name: str, monitor: Monitor) -> None:
    """Sync, coroutine, generator and async generator methods alike."""
    receiver = Receiver()
    died: list[weakref.WeakMethod[Any]] = []
    reference = weakref.WeakMethod(getattr(receiver, name), died.append)
    method = reference()
    assert method is not None
    assert method.__self__ is receiver
    assert RUN[name](method) == 42
    assert [span.name for span in stored_spans(monitor)] == [f"Receiver.{name}"]
    del receiver, method
    gc.collect()
    assert (reference(), died) == (None, [reference])


def test_a_weakly_held_method_captures_its_arguments_without_self(monitor: Monitor) -> None:
    """The rebuilt method is bound as ``receiver.sync`` is: ``self`` is no argument."""
    receiver = Receiver()
    method = weakref.WeakMethod(receiver.sync)()
    assert method is not None
    method(21)
    (span,) = stored_spans(monitor)
    assert span.attributes["input.value"] == {"x": 21}


def test_a_weakly_held_classmethod_lives_as_long_as_its_class(monitor: Monitor) -> None:
    """As a plain classmethod: ``__self__`` is the class, so the reference outlives instances."""
    reference = weakref.WeakMethod(Receiver().class_method)
    gc.collect()
    method = reference()
    assert method is not None
    assert (method.__self__, method(21)) == (Receiver, 42)
    assert [span.name for span in stored_spans(monitor)] == ["Receiver.class_method"]


def test_methods_introspect_as_before(monitor: Monitor) -> None:
    """A class method's ``__func__`` stays its plain function, where ``inspect`` reads the
    source; a rebuilt instance method has the signature of the method it was built from."""
    assert "def class_method(cls" in inspect.getsource(Receiver.class_method)
    receiver = Receiver()
    method = weakref.WeakMethod(receiver.sync)()
    assert inspect.signature(method) == inspect.signature(receiver.sync)
    assert str(inspect.signature(method)) == "(x: 'int') -> 'int'"


def test_a_class_method_the_class_cannot_name_still_runs(monitor: Monitor) -> None:
    """A name-mangled class method is not found on its class under its own name: the
    reference still gives a working method (unrecorded) rather than raising."""
    method = weakref.WeakMethod(Receiver._Receiver__mangled)()  # type: ignore[attr-defined]
    assert method is not None
    assert method(21) == 42


def test_a_staticmethod_is_refused_as_a_plain_one_is(monitor: Monitor) -> None:
    """A static method is no bound method, decorated or not."""
    with pytest.raises(TypeError, match="argument should be a bound method"):
        weakref.WeakMethod(Receiver().static_method)


def test_a_blinker_signal_calls_a_decorated_receiver_and_drops_it_with_its_instance(
        monitor: Monitor) -> None:
    """blinker connects bound methods weakly (``weakref.WeakMethod``) by default."""
    signal = blinker.Signal()
    receiver = Receiver()
    signal.connect(receiver.sync)
    assert [result for _receiver, result in signal.send(21)] == [42]
    assert [span.name for span in stored_spans(monitor)] == ["Receiver.sync"]
    del receiver
    gc.collect()
    assert (signal.send(21), signal.receivers) == ([], {})


_PURE_PYTHON_WRAPT = """
import weakref
from ragtrail.instrument import monitored

class Receiver:
    @monitored
    def sync(self, x):
        return x * 2

receiver = Receiver()
print(weakref.WeakMethod(receiver.sync)()(21))
"""


def test_wrapt_without_its_c_extension_works_too(tmp_path: Path) -> None:
    """wrapt's pure-Python proxies (``WRAPT_DISABLE_EXTENSIONS``, or no compiler at install)
    have a metaclass of their own, which the rebinding one must extend."""
    environment = {**os.environ, "WRAPT_DISABLE_EXTENSIONS": "1",
                   "RAGTRAIL_STORE_URL": f"sqlite:///{tmp_path / 'audit.db'}"}
    result = subprocess.run([sys.executable, "-c", _PURE_PYTHON_WRAPT], env=environment,
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "42\n", "")
