"""A small but real RAG pipeline: embed, retrieve, rerank, generate, each step ``@monitored``.

Everything is deterministic and offline: a hashing embedder instead of a model download, an
in-memory corpus, and a template answer unless an Ollama server answers at ``ollama_url``.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from opentelemetry import trace

from ragtrail import monitored
from ragtrail.demo._corpus import CORPUS, Document

_DIMENSIONS = 256
_WORD = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _hash_vector(text: str) -> list[float]:
    """Feature hashing: crc32 is stable across processes, unlike ``hash()``."""
    vector = [0.0] * _DIMENSIONS
    for token in _tokens(text):
        digest = zlib.crc32(token.encode())
        vector[digest % _DIMENSIONS] += 1.0 if digest & 0x8000_0000 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


@monitored(kind="embedding")
def embed(texts: Sequence[str]) -> list[list[float]]:
    """One unit vector per text."""
    return [_hash_vector(text) for text in texts]


@dataclass
class Pipeline:
    """The demo service's question-answering pipeline over a fixed corpus."""

    corpus: Sequence[Document] = CORPUS
    ollama_url: str | None = None
    ollama_model: str = "llama3.2"
    ollama_timeout: float = 10.0
    _index: list[tuple[list[float], Document]] = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        vectors = embed([f"{doc.title}. {doc.text}" for doc in self.corpus])
        self._index = list(zip(vectors, self.corpus, strict=True))

    @property
    def size(self) -> int:
        """How many documents the index holds."""
        return len(self._index)

    @monitored(kind="function")  # no capture: document text does not belong in the audit log
    def index_document(self, document: Document) -> None:
        """Embed an accepted upload and make it retrievable."""
        (vector,) = embed([f"{document.title}. {document.text}"])
        with self._lock:  # copy-on-write: readers iterate the list they started with
            self._index = [*self._index, (vector, document)]

    @monitored(kind="retriever", capture_args=["question", "k"])
    def retrieve(self, question: str, k: int = 5) -> list[dict[str, Any]]:
        """The k passages nearest to the question by cosine similarity."""
        (query,) = embed([question])
        scored = sorted(
            ((sum(q * d for q, d in zip(query, vector, strict=True)), doc)
             for vector, doc in self._index),
            key=lambda pair: pair[0], reverse=True)
        return [{"id": doc.id, "score": round(score, 4), "content": doc.text}
                for score, doc in scored[:k]]

    @monitored(kind="reranker")
    def rerank(self, question: str, documents: list[dict[str, Any]],
               top_n: int = 3) -> list[dict[str, Any]]:
        """Rescore by word overlap with the question (a stand-in for a cross-encoder)."""
        words = set(_tokens(question))
        rescored = [
            {**doc, "score": round(len(words & set(_tokens(doc["content"]))) / (len(words) or 1)
                                   + doc["score"], 4)}
            for doc in documents]
        return sorted(rescored, key=lambda doc: doc["score"], reverse=True)[:top_n]

    # slow_ms and record_errors: a degrading model server shows up as slow_call and
    # function_error events, not only as long or failed spans.
    @monitored(kind="llm", slow_ms=250, record_errors=True)
    def generate(self, question: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
        """Ask Ollama when one answers at ``ollama_url``; otherwise answer from a template.

        An Ollama that cannot be reached at all means "no model server": the template answers.
        One that answers with an error or times out raises ``requests.RequestException``.
        """
        prompt = _prompt(question, documents)
        if self.ollama_url:
            try:
                reply = requests.post(
                    f"{self.ollama_url.rstrip('/')}/api/generate", timeout=self.ollama_timeout,
                    json={"model": self.ollama_model, "prompt": prompt, "stream": False})
            except requests.ConnectionError:
                trace.get_current_span().set_attribute("ragtrail.demo.generator", "template")
            else:
                reply.raise_for_status()
                body = reply.json()
                return {"text": str(body.get("response", "")),
                        "usage": {"input_tokens": body.get("prompt_eval_count", 0),
                                  "output_tokens": body.get("eval_count", 0)}}
        text = _template_answer(documents)
        return {"text": text, "usage": {"input_tokens": len(_tokens(prompt)),
                                        "output_tokens": len(_tokens(text))}}

    @monitored(kind="llm", name="generate_stream")
    async def stream(self, question: str, documents: list[dict[str, Any]]) -> AsyncIterator[str]:
        """The template answer, word by word, as a streaming LLM would send it."""
        for word in _template_answer(documents).split(" "):
            await asyncio.sleep(0.002)  # a token's worth of work: the client sees chunks
            yield word + " "

    @monitored(kind="chain", capture_args=["question"])
    def answer(self, question: str) -> dict[str, Any]:
        """The whole pipeline: retrieve, rerank, generate."""
        passages = self.rerank(question, self.retrieve(question))
        reply = self.generate(question, passages)
        return {"answer": reply["text"], "sources": [doc["id"] for doc in passages]}


def _prompt(question: str, documents: list[dict[str, Any]]) -> str:
    context = "\n".join(f"- {doc['content']}" for doc in documents)
    return f"Answer from the context only.\nContext:\n{context}\nQuestion: {question}\nAnswer:"


def _template_answer(documents: list[dict[str, Any]]) -> str:
    if not documents:
        return "I found nothing about that in the knowledge base."
    return str(documents[0]["content"])
