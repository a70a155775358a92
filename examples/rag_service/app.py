"""The example RAG service, configured from the environment.

    uvicorn examples.rag_service.app:app          # from the repository root
    python examples/rag_service/app.py            # the same, on $HOST:$PORT

Environment: ``OLLAMA_URL`` (unset: template answers and no Ollama check), ``OLLAMA_MODEL``,
``RAG_DATA_DIR`` (uploads and quarantine, default ``./rag-data``), ``DRAIN_SECONDS`` (how long
readiness fails before SIGTERM stops the server, default 0), and every ``RAGTRAIL_*`` /
``OTEL_*`` setting (docs/configuration.md), e.g. ``RAGTRAIL_STORE_URL``, ``RAGTRAIL_API_TOKEN``.
"""

from __future__ import annotations

import os

from ragtrail.demo import create_app

app = create_app(
    ollama_url=os.environ.get("OLLAMA_URL") or None,
    ollama_model=os.environ.get("OLLAMA_MODEL", "llama3.2"),
    data_dir=os.environ.get("RAG_DATA_DIR", "rag-data"),
    drain_seconds=float(os.environ.get("DRAIN_SECONDS", "0")),
    service_name=os.environ.get("RAGTRAIL_SERVICE_NAME", "rag-service"),
)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"),
                port=int(os.environ.get("PORT", "8000")))
