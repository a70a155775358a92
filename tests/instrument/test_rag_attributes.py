"""RAG step kinds: the OpenInference kind, and attributes read off obvious result shapes."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from instrument_support import only_span

from ragtrail.instrument import Monitor, monitored


def record(monitor: Monitor, kind: str, result: Any) -> dict[str, Any]:
    """The stored attributes of one ``kind`` step that returned ``result``."""
    @monitored(name="step", kind=kind)  # type: ignore[arg-type]
    def step() -> Any:
        return result

    step()
    return only_span(monitor, "step").attributes


@pytest.mark.parametrize(("kind", "expected"), [
    ("chain", "CHAIN"), ("retriever", "RETRIEVER"), ("embedding", "EMBEDDING"),
    ("reranker", "RERANKER"), ("llm", "LLM"), ("tool", "TOOL"),
])
def test_kind_sets_the_openinference_span_kind(kind: str, expected: str,
                                               monitor: Monitor) -> None:
    """Each RAG kind is stored as ragtrail's kind and as ``openinference.span.kind``."""
    attributes = record(monitor, kind, None)
    assert attributes["openinference.span.kind"] == expected
    assert only_span(monitor, "step").kind == kind


def test_function_kind_claims_no_openinference_kind(monitor: Monitor) -> None:
    """The default kind ``function`` sets no OpenInference kind."""
    assert "openinference.span.kind" not in record(monitor, "function", None)


@dataclass
class Doc:
    id: str
    score: float
    content: str = ""


@pytest.mark.parametrize("documents", [
    [{"id": "a", "score": 0.9}, {"id": "b", "score": 0.5}],
    [Doc("a", 0.9), Doc("b", 0.5)],
    [(SimpleNamespace(id="a", page_content="x"), 0.9), (SimpleNamespace(id="b"), 0.5)],
], ids=["dicts", "objects", "document-score-pairs"])
def test_retriever_records_document_ids_and_scores(documents: list[Any],
                                                   monitor: Monitor) -> None:
    """Dicts, objects and (document, score) pairs give ids, scores and the count."""
    attributes = record(monitor, "retriever", documents)
    assert attributes["ragtrail.documents.count"] == 2
    assert attributes["retrieval.documents.0.document.id"] == "a"
    assert attributes["retrieval.documents.0.document.score"] == 0.9
    assert attributes["retrieval.documents.1.document.id"] == "b"
    assert attributes["retrieval.documents.1.document.score"] == 0.5


def test_document_ids_are_redacted(monitor: Monitor) -> None:
    """Read off results without any capture opt-in, so they pass the redactor too."""
    documents = [{"id": "tickets/ana.canary@example.org/42", "score": 0.9},
                 {"id": "s3://b/k?X-Amz-Credential=AKIAIOSFODNN7CANARY9", "score": 0.5}]
    attributes = record(monitor, "retriever", documents)
    assert attributes["retrieval.documents.0.document.id"] == "tickets/[REDACTED]/42"
    assert "AKIA" not in attributes["retrieval.documents.1.document.id"]
    assert attributes["retrieval.documents.1.document.score"] == 0.5


def test_model_names_are_redacted(monitor: Monitor) -> None:
    llm = {"model": "m-ana.canary@example.org", "usage": {"input_tokens": 3}}
    assert "canary" not in record(monitor, "llm", llm)["gen_ai.response.model"]


def test_documents_are_bounded_but_counted(monitor: Monitor) -> None:
    """Only the first 10 documents are described; the count says how many there were."""
    attributes = record(monitor, "retriever", [{"id": i, "score": 1.0} for i in range(25)])
    assert attributes["ragtrail.documents.count"] == 25
    assert attributes["retrieval.documents.9.document.id"] == "9"
    assert "retrieval.documents.10.document.id" not in attributes


def test_reranker_records_output_documents(monitor: Monitor) -> None:
    """A reranker's result is described as ``reranker.output_documents``."""
    attributes = record(monitor, "reranker", [{"id": "b", "score": 3.2}])
    assert attributes["reranker.output_documents.0.document.id"] == "b"
    assert attributes["reranker.output_documents.0.document.score"] == 3.2
    assert not any(key.startswith("retrieval.") for key in attributes)


@pytest.mark.parametrize("result", [
    {"text": "hi", "usage": {"input_tokens": 12, "output_tokens": 5}, "model": "m-1"},
    SimpleNamespace(usage=SimpleNamespace(prompt_tokens=12, completion_tokens=5), model="m-1"),
], ids=["anthropic-style-dict", "openai-style-object"])
def test_llm_records_token_usage(result: Any, monitor: Monitor) -> None:
    """``usage`` in either spelling gives GenAI and OpenInference token counts."""
    attributes = record(monitor, "llm", result)
    assert attributes["gen_ai.usage.input_tokens"] == 12
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["llm.token_count.total"] == 17
    assert attributes["gen_ai.response.model"] == "m-1"


@pytest.mark.parametrize(("result", "count", "dimension"), [
    ([0.1, 0.2, 0.3], 1, 3),
    ([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], 3, 2),
    (SimpleNamespace(shape=(4, 768)), 4, 768),
], ids=["one-vector", "batch", "array-shape"])
def test_embedding_records_vector_count_and_dimension(result: Any, count: int, dimension: int,
                                                      monitor: Monitor) -> None:
    """A vector, a batch of vectors or an array shape give count and dimension."""
    attributes = record(monitor, "embedding", result)
    assert attributes["ragtrail.embedding.vector_count"] == count
    assert attributes["ragtrail.embedding.dimension"] == dimension


@pytest.mark.parametrize(("kind", "result"), [
    ("retriever", "not a list"), ("retriever", [object()]), ("llm", {"usage": "many"}),
    ("embedding", ["a", "b"]), ("embedding", None), ("reranker", 42),
])
def test_unrecognised_results_add_nothing(kind: str, result: Any, monitor: Monitor) -> None:
    """A result of another shape adds no RAG attributes (and never fails the call)."""
    attributes = record(monitor, kind, result)
    rag_keys = [k for k in attributes if k.startswith(
        ("retrieval.documents.", "gen_ai.", "llm.", "ragtrail.embedding.", "reranker."))]
    assert rag_keys == []


def test_result_attributes_failing_never_break_the_call(monitor: Monitor) -> None:
    """A result whose attribute access raises is returned untouched; the span is ok."""
    class Exploding:
        @property
        def usage(self) -> Any:
            raise RuntimeError("lazy field failed")

    result = Exploding()

    @monitored(name="step", kind="llm")
    def step() -> Any:
        return result

    assert step() is result
    assert only_span(monitor, "step").status == "ok"
