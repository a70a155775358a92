"""ragtrail in a FastAPI app: the three lines marked (1), (2) and (3) are the whole integration.

Run it::

    pip install . fastapi uvicorn                        # from the repository root
    uvicorn fastapi_app:app --app-dir examples --port 8000
    curl -H 'X-Request-ID: my-request-0001' 'http://127.0.0.1:8000/search?q=readiness'
    curl http://127.0.0.1:8000/readyz
    ragtrail spans --correlation-id my-request-0001     # what the audit store recorded

Settings come from ``RAGTRAIL_*``/``OTEL_*`` variables (docs/configuration.md); the audit
store is ``sqlite:///ragtrail.db`` in the working directory unless ``RAGTRAIL_STORE_URL`` says
otherwise.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

import ragtrail

ragtrail.configure(service_name="fastapi-rag")  # (1) settings: arguments, then RAGTRAIL_*

app = FastAPI(title="ragtrail FastAPI example")
app.add_middleware(ragtrail.ASGIMiddleware)  # (2) IDs, request spans, events, /livez, /readyz

DOCUMENTS = {
    "k8s-readiness": "A readiness probe decides whether a pod receives traffic.",
    "k8s-liveness": "A liveness probe tells the kubelet whether to restart a container.",
    "otel-traces": "A trace is a tree of spans sharing one trace ID.",
}


@ragtrail.monitored(kind="retriever", capture_args=["query"])  # (3) one span per call
async def retrieve(query: str, k: int = 2) -> list[dict[str, object]]:
    """Documents sharing the most words with the query (a stand-in for a vector search)."""
    words = set(query.lower().split())
    scored = sorted(((len(words & set(text.lower().split())) / (len(words) or 1), doc_id)
                     for doc_id, text in DOCUMENTS.items()), reverse=True)
    return [{"id": doc_id, "score": score} for score, doc_id in scored[:k]]


@app.get("/search")
async def search(q: str) -> dict[str, object]:
    return {"documents": await retrieve(q), "correlation_id": ragtrail.correlation_id()}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
