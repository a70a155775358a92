"""Decorated callables copied, pickled and named as what they decorate is, still monitored.

wrapt's proxies refuse copy, deepcopy and pickle: ``ProcessPoolExecutor.map(embed, ...)``
raised, and so did ``copy.deepcopy`` of anything holding a decorated function (an app's
config, a DSPy program whose optimizer copies it with its tools).
"""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import AsyncIterator, Iterator

import pytest
from instrument_support import stored_spans

from ragtrail.instrument import Monitor, monitored


@monitored(kind="embedding")
def embed(text: str) -> list[float]:
    return [float(len(text))]


class Retriever:
    def __init__(self, documents: list[str]) -> None:
        self.documents = documents

    @monitored(kind="retriever")
    def search(self, query: str) -> list[str]:
        return [d for d in self.documents if query in d]

    @monitored
    @staticmethod
    def split(text: str) -> list[str]:
        return text.split()

    @monitored
    @classmethod
    def named(cls, text: str) -> str:
        return f"{cls.__name__}:{text}"


class Tool:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, query: str) -> str:
        self.calls += 1
        return query.upper()


def span_names(monitor: Monitor) -> list[str]:
    return sorted(span.name for span in stored_spans(monitor))


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_a_function_pickles_by_name_as_a_plain_one(protocol: int, monitor: Monitor) -> None:
    """What a process pool does with the function it maps."""
    assert pickle.loads(pickle.dumps(embed, protocol)) is embed


def test_a_function_is_its_own_copy(monitor: Monitor) -> None:
    config = {"steps": [embed], "name": "rag"}
    assert copy.copy(embed) is embed
    assert copy.deepcopy(config)["steps"][0] is embed


def test_a_bound_method_pickles_and_deep_copies_with_its_instance(monitor: Monitor) -> None:
    """As a plain bound method: the instance copied, the copy's method still monitored."""
    retriever = Retriever(["alpha", "beta"])
    unpickled = pickle.loads(pickle.dumps(retriever.search))
    copied = copy.deepcopy(retriever.search)
    retriever.documents.append("alphabet")
    assert unpickled("alpha") == copied("alpha") == ["alpha"]
    assert copied.__self__ is not retriever
    assert copy.copy(retriever.search)("alpha") == ["alpha", "alphabet"]
    assert span_names(monitor) == ["Retriever.search"] * 3


def test_a_wrapped_callable_object_copies_the_object(monitor: Monitor) -> None:
    """The copy wraps a copy of the object (its state apart), and records spans too."""
    tool = monitored(kind="tool")(Tool())
    for copied in (copy.copy(tool), copy.deepcopy(tool)):
        assert copied("q") == "Q"
        assert copied.__wrapped__ is not tool.__wrapped__
    assert tool.calls == 0
    assert span_names(monitor) == ["Tool", "Tool"]


def test_methods_taken_off_their_class_pickle_as_plain_ones(monitor: Monitor) -> None:
    """``pool.map(Retriever.split, texts)``: static, class and plain methods off the class are
    found there again by name."""
    for method in (Retriever.split, Retriever.named):
        assert pickle.loads(pickle.dumps(method))("a b") == method("a b")
    unbound = pickle.loads(pickle.dumps(Retriever.search))
    assert unbound(Retriever(["alpha"]), "al") == ["alpha"]


def test_what_cannot_be_pickled_says_what_to_do(monitor: Monitor) -> None:
    """A clear TypeError, not wrapt's NotImplementedError about proxies."""
    with pytest.raises(TypeError, match="decorate its class's __call__"):
        pickle.dumps(monitored(Tool()))


class Pipeline:
    @monitored(kind="llm")
    async def generate(self, prompt: str) -> str:
        return prompt

    @monitored(kind="llm")
    def stream(self, prompt: str) -> Iterator[str]:
        yield prompt

    @monitored(kind="llm")
    async def astream(self, prompt: str) -> AsyncIterator[str]:
        yield prompt


def test_coroutines_and_generators_carry_the_functions_names(monitor: Monitor) -> None:
    """They were named ``coroutine_wrapper.<locals>.monitored_call`` and
    ``_traced_generator`` in asyncio's task reprs and "never awaited" warnings."""
    pipeline = Pipeline()
    made = [pipeline.generate("p"), pipeline.stream("p"), pipeline.astream("p")]
    assert [(m.__name__, m.__qualname__) for m in made] == [
        ("generate", "Pipeline.generate"), ("stream", "Pipeline.stream"),
        ("astream", "Pipeline.astream")]
    assert asyncio.run(made[0]) == "p"
    assert list(made[1]) == ["p"]
    assert span_names(monitor) == ["Pipeline.generate", "Pipeline.stream"]
