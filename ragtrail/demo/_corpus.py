"""The little knowledge base the demo service answers from: shipped, so the demo runs offline."""

from __future__ import annotations

from typing import NamedTuple


class Document(NamedTuple):
    id: str
    title: str
    text: str


CORPUS: tuple[Document, ...] = (
    Document("k8s-liveness", "Liveness probes",
             "A liveness probe tells the kubelet whether to restart a container. It should only "
             "check the process itself: a liveness probe that checks a database restarts every "
             "pod during someone else's outage."),
    Document("k8s-readiness", "Readiness probes",
             "A readiness probe decides whether a pod receives traffic from its Service. It "
             "should fail while dependencies the pod cannot serve without are down, while the "
             "pod is starting, and while it drains after SIGTERM."),
    Document("k8s-startup", "Startup probes",
             "A startup probe holds off liveness and readiness checks until a slow-starting "
             "container is up, so the kubelet does not kill it while it loads models."),
    Document("otel-traces", "Traces and spans",
             "A trace is a tree of spans. Each span has a trace ID shared by the whole request, "
             "its own span ID, the ID of its parent, a start time, a duration and attributes."),
    Document("otel-context", "Context propagation",
             "W3C Trace Context carries the trace across services in the traceparent header: "
             "version, trace ID, parent span ID and flags such as sampled."),
    Document("otel-sampling", "Sampling",
             "Head sampling decides at the root span whether a trace is kept. A ratio sampler "
             "keeps a fixed share of traces; errors are worth keeping whatever the ratio."),
    Document("rag-retrieval", "Retrieval",
             "Retrieval finds the passages most similar to the question, usually by comparing "
             "embedding vectors with cosine similarity, and returns the top k with scores."),
    Document("rag-rerank", "Reranking",
             "A reranker rescores retrieved passages against the question with a slower but "
             "more precise model and keeps the best few for the prompt."),
    Document("rag-generation", "Generation",
             "The generator writes the answer from the question and the reranked passages. "
             "Streaming the answer token by token makes time to first token the latency users "
             "feel."),
    Document("rag-embedding", "Embeddings",
             "An embedder maps text to a vector so that similar texts get nearby vectors. A "
             "hashing embedder needs no model download and is deterministic."),
    Document("sec-correlation", "Correlation IDs",
             "A correlation ID ties together every log line, span and event of one request. "
             "Incoming IDs are untrusted input: validate them and generate a new one if needed."),
    Document("sec-traversal", "Path traversal",
             "Path traversal uses ../ sequences, often percent-encoded or double-encoded, to "
             "reach files outside the web root. Decode before matching and record the attempt."),
    Document("sec-redaction", "Redaction",
             "Secrets and personal data must never reach logs or traces: redact keys such as "
             "password and token, and values that look like bearer tokens or card numbers."),
    Document("sec-uploads", "Document uploads",
             "Uploaded documents are checked before indexing: size, extension, magic bytes that "
             "match the claimed type, and ZIP bombs. Rejected files go to quarantine."),
    Document("ops-ring-buffer", "Audit ring buffer",
             "An audit store kept as a ring buffer holds a bounded number of rows, dropping the "
             "oldest first, so it never fills the disk however long the service runs."),
    Document("ops-alerts", "Alerts",
             "High and critical security events page a human through alert callbacks and "
             "webhooks; repeats are coalesced so an attack cannot flood the pager."),
)
