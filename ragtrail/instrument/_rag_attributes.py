"""RAG step kinds and the attributes a step's result obviously carries.

Attribute names follow OpenInference (``openinference.span.kind``, ``retrieval.documents.*``,
``reranker.output_documents.*``, ``llm.token_count.*``) and the OpenTelemetry GenAI semantic
conventions (``gen_ai.usage.*``); ragtrail's own additions live under ``ragtrail.*``.
Extraction only looks at shapes documented in docs/decorator.md and never raises: a result
it does not recognise adds nothing. The text it takes (document ids, model names) is the app's
data, recorded without any capture opt-in, so it passes the redactor it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeGuard

__all__ = ["KINDS", "MAX_DOCUMENTS", "SpanKindName", "kind_attributes", "result_extractor"]

SpanKindName = Literal["chain", "retriever", "embedding", "reranker", "llm", "tool", "function"]

# "function" is a plain step: it claims no OpenInference kind rather than pretend to be a
# CHAIN, so Phoenix and similar tools do not treat every helper as a pipeline stage.
_OPENINFERENCE_KINDS: dict[str, str | None] = {
    "chain": "CHAIN",
    "retriever": "RETRIEVER",
    "embedding": "EMBEDDING",
    "reranker": "RERANKER",
    "llm": "LLM",
    "tool": "TOOL",
    "function": None,
}
KINDS = tuple(_OPENINFERENCE_KINDS)

MAX_DOCUMENTS = 10
"""Documents described per span (ids and scores); the count attribute has the real total."""

_DOCUMENTS_COUNT = "ragtrail.documents.count"
_EMBEDDING_COUNT = "ragtrail.embedding.vector_count"
_EMBEDDING_DIMENSION = "ragtrail.embedding.dimension"

Redact = Callable[[str], Any]
Extractor = Callable[[Any, Redact], dict[str, Any]]


def kind_attributes(kind: str) -> dict[str, Any]:
    """The static attributes of a kind (validated: an unknown kind raises ValueError)."""
    if kind not in _OPENINFERENCE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    openinference = _OPENINFERENCE_KINDS[kind]
    return {} if openinference is None else {"openinference.span.kind": openinference}


def result_extractor(kind: str) -> Extractor | None:
    """The function that reads RAG attributes off a result of ``kind``, if the kind has one."""
    return _EXTRACTORS.get(kind)


def _document_keys(prefix: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}.{i}.document.id", f"{prefix}.{i}.document.score")
                 for i in range(MAX_DOCUMENTS))


_RETRIEVAL_KEYS = _document_keys("retrieval.documents")
_RERANKER_KEYS = _document_keys("reranker.output_documents")


def _retrieval(result: Any, redact: Redact) -> dict[str, Any]:
    return _documents(result, _RETRIEVAL_KEYS, redact)


def _reranking(result: Any, redact: Redact) -> dict[str, Any]:
    return _documents(result, _RERANKER_KEYS, redact)


def _documents(result: Any, keys: tuple[tuple[str, str], ...], redact: Redact,
               ) -> dict[str, Any]:
    """A list of documents: mappings or objects with ``id``/``score``, or (document, score)."""
    if not _is_list(result):
        return {}
    attributes: dict[str, Any] = {_DOCUMENTS_COUNT: len(result)}
    for (id_key, score_key), item in zip(keys, result[:MAX_DOCUMENTS], strict=False):
        if type(item) is dict:
            doc_id, score = item.get("id"), item.get("score")
        elif isinstance(item, tuple) and len(item) == 2 and _is_number(item[1]):
            doc_id, score = _field(item[0], "id"), item[1]  # similarity_search_with_score
        else:
            doc_id, score = _field(item, "id"), _field(item, "score")
        if type(doc_id) is str:
            attributes[id_key] = redact(doc_id)
        elif isinstance(doc_id, (str, int)) and not isinstance(doc_id, bool):
            attributes[id_key] = redact(str(doc_id))
        if _is_number(score):
            attributes[score_key] = float(score)
    return attributes


def _llm(result: Any, redact: Redact) -> dict[str, Any]:
    """Token usage from a ``usage`` mapping or attribute (OpenAI and Anthropic spellings)."""
    usage = _field(result, "usage")
    if usage is None:
        return {}
    input_tokens = _first_int(usage, "input_tokens", "prompt_tokens")
    output_tokens = _first_int(usage, "output_tokens", "completion_tokens")
    attributes: dict[str, Any] = {}
    if input_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = input_tokens
        attributes["llm.token_count.prompt"] = input_tokens
    if output_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = output_tokens
        attributes["llm.token_count.completion"] = output_tokens
    if input_tokens is not None and output_tokens is not None:
        attributes["llm.token_count.total"] = input_tokens + output_tokens
    model = _field(result, "model")
    if isinstance(model, str):
        attributes["gen_ai.response.model"] = redact(model)
    return attributes


def _embedding(result: Any, redact: Redact) -> dict[str, Any]:
    """One vector (numbers) or a batch (a list of vectors), or anything with a 1-D/2-D shape."""
    shape = getattr(result, "shape", None)  # numpy arrays and tensors
    if isinstance(shape, tuple) and 1 <= len(shape) <= 2:
        count, dimension = (1, shape[0]) if len(shape) == 1 else shape
    elif _is_list(result) and result:
        first = result[0]
        if _is_number(first):
            count, dimension = 1, len(result)
        elif _is_list(first):
            count, dimension = len(result), len(first)
        else:
            return {}
    else:
        return {}
    return {_EMBEDDING_COUNT: int(count), _EMBEDDING_DIMENSION: int(dimension)}


_EXTRACTORS: dict[str, Extractor] = {
    "retriever": _retrieval,
    "reranker": _reranking,
    "llm": _llm,
    "embedding": _embedding,
}


# Exact-type checks first: results are nearly always plain lists, dicts and floats, and the
# ABC isinstance checks behind them cost a microsecond per document.

def _is_list(value: Any) -> bool:
    kind = type(value)
    return kind is list or kind is tuple or (
        isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)))


def _is_number(value: Any) -> TypeGuard[float]:
    kind = type(value)
    return kind is float or kind is int or (
        isinstance(value, (int, float)) and not isinstance(value, bool))


def _field(obj: Any, name: str) -> Any:
    if type(obj) is dict or isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _first_int(obj: Any, *names: str) -> int | None:
    for name in names:
        value = _field(obj, name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
