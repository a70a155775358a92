"""A small but real RAG pipeline: embed, retrieve, rerank, generate, each step ``@monitored``.

Everything is deterministic and offline: a hashing embedder instead of a model download, an
in-memory corpus, and a template answer unless an Ollama server answers at ``ollama_url``.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

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
    _vectors: list[list[float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._vectors = embed([f"{doc.title}. {doc.text}" for doc in self.corpus])

    @monitored(kind="retriever", capture_args=["question", "k"])
    def retrieve(self, question: str, k: int = 5) -> list[dict[str, Any]]:
        """The k passages nearest to the question by cosine similarity."""
        (query,) = embed([question])
        scored = sorted(
            ((sum(q * d for q, d in zip(query, vector, strict=True)), doc)
             for vector, doc in zip(self._vectors, self.corpus, strict=True)),
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

    @monitored(kind="llm")
    def generate(self, question: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
        """Ask Ollama when one is configured; otherwise answer from a template."""
        prompt = _prompt(question, documents)
        if self.ollama_url:
            reply = requests.post(f"{self.ollama_url.rstrip('/')}/api/generate", timeout=10,
                                  json={"model": self.ollama_model, "prompt": prompt,
                                        "stream": False})
            reply.raise_for_status()
            body = reply.json()
            return {"text": body.get("response", ""),
                    "usage": {"input_tokens": body.get("prompt_eval_count", 0),
                              "output_tokens": body.get("eval_count", 0)}}
        text = _template_answer(documents)
        return {"text": text, "usage": {"input_tokens": len(_tokens(prompt)),
                                        "output_tokens": len(_tokens(text))}}

    @monitored(kind="llm", name="generate_stream")
    async def stream(self, question: str, documents: list[dict[str, Any]]) -> AsyncIterator[str]:
        """The template answer, word by word, as a streaming LLM would send it."""
        for word in _template_answer(documents).split(" "):
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
