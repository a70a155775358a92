"""The example RAG service as a Flask (WSGI) app, instrumented with ragtrail.

What ragtrail adds here: ``WSGIMiddleware`` (correlation IDs, one span per request, security
events, the health routes), ``@monitored`` pipeline steps (retrieve, rerank, generate, a
streamed answer, indexing uploads), health checks (uploads volume, audit store, Ollama when
``OLLAMA_URL`` is set), upload validation with quarantine, and draining on SIGTERM.

Run it (see README.md next to this file)::

    python examples/flask_app/app.py --port 8000
    waitress-serve --port 8000 --call app:create_app           # from examples/flask_app
    gunicorn --bind 127.0.0.1:8000 --threads 8 'app:create_app()'  # from examples/flask_app

Configuration: every ``RAGTRAIL_*``/``OTEL_*`` variable (docs/configuration.md), plus this
app's own ``OLLAMA_URL``, ``OLLAMA_MODEL`` and ``UPLOAD_DIR``. ``RAGTRAIL_API_TOKEN`` guards
``/admin/stats`` as well as ragtrail's detailed health routes.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import requests
from flask import Flask, Response, abort, jsonify, make_response, request

import ragtrail
from ragtrail import (
    FilesystemCheck,
    FileValidator,
    HTTPCheck,
    StoreCheck,
    WSGIMiddleware,
    monitored,
)
from ragtrail.demo._corpus import Document
from ragtrail.demo.pipeline import Pipeline
from ragtrail.health import HealthCheck, HealthService, install_sigterm_handler
from ragtrail.security import save_upload_wsgi

MAX_QUESTION_CHARS = 2000
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# Accepted uploads of these types join the index; others (PDF, DOCX, ...) are only kept.
INDEXED_TYPES = frozenset(("text", "markdown"))


@monitored(kind="llm", name="generate_stream")
def stream_answer(pipeline: Pipeline, question: str,
                  passages: list[dict[str, Any]]) -> Iterator[str]:
    """The answer in pieces: from Ollama's streaming API when configured, else word by word.

    A generator: its span covers the whole iteration, i.e. until the last piece went out.
    As in ``Pipeline.generate``, an Ollama that cannot be reached means the template answers.
    """
    if pipeline.ollama_url:
        context = "\n".join(f"- {p['content']}" for p in passages)
        try:
            reply = requests.post(
                f"{pipeline.ollama_url.rstrip('/')}/api/generate", stream=True,
                timeout=pipeline.ollama_timeout,
                json={"model": pipeline.ollama_model, "stream": True,
                      "prompt": f"Context:\n{context}\nQuestion: {question}\nAnswer:"})
        except requests.ConnectionError:
            pass
        else:
            with reply:
                reply.raise_for_status()
                for line in reply.iter_lines():
                    if line:  # one JSON object per line
                        yield str(json.loads(line).get("response", ""))
                return
    text = passages[0]["content"] if passages else "I found nothing about that."
    for word in text.split(" "):
        yield word + " "


def create_app(**settings: Any) -> Flask:
    """Configure ragtrail (``settings`` win over the environment) and build the app."""
    settings.setdefault("service_name", os.environ.get("RAGTRAIL_SERVICE_NAME")
                        or os.environ.get("OTEL_SERVICE_NAME") or "flask-rag")
    monitor = ragtrail.configure(**settings)
    ollama_url = os.environ.get("OLLAMA_URL") or None
    pipeline = Pipeline(ollama_url=ollama_url,
                        ollama_model=os.environ.get("OLLAMA_MODEL", "llama3.2"))
    upload_dir = Path(os.environ.get("UPLOAD_DIR", "uploads"))
    upload_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    validator = FileValidator(max_bytes=MAX_UPLOAD_BYTES,
                              allowed_extensions=[".txt", ".md", ".pdf", ".docx", ".csv", ".json"])
    token = monitor.settings.api_token
    # Digests are compared, so the time taken says nothing about the token's length either.
    admin_digest = hashlib.sha256(token.encode()).digest() if token else None

    app = Flask(__name__)

    def question() -> str:
        """From a JSON body ``{"question": ...}`` (POST) or ``?q=`` (GET); else a 400."""
        if request.method == "GET":
            text: object = request.args.get("q")
        else:
            body = request.get_json(silent=True)
            text = body.get("question") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_QUESTION_CHARS:
            abort(make_response(jsonify(
                error=f"expected a question of 1 to {MAX_QUESTION_CHARS} characters"), 400))
        return text

    @app.route("/ask", methods=["GET", "POST"])
    def ask() -> Response | tuple[Response, int]:
        try:
            reply = pipeline.answer(question())
        except requests.RequestException as exc:
            # The generate span and its function_error event hold the details.
            return jsonify(error=f"the model server failed: {type(exc).__name__}",
                           correlation_id=ragtrail.correlation_id()), 502
        return jsonify({**reply, "correlation_id": ragtrail.correlation_id()})

    @app.route("/ask/stream", methods=["GET", "POST"])
    def ask_stream() -> Response:
        text = question()
        passages = pipeline.rerank(text, pipeline.retrieve(text))
        # The middleware keeps the request's correlation ID and span current while the server
        # iterates this body, after the view has returned.
        return Response(stream_answer(pipeline, text, passages), mimetype="text/plain")

    @app.post("/documents")  # the name from Content-Disposition: attachment; filename=...
    @app.put("/documents/<name>")
    def upload(name: str | None = None) -> tuple[Response, int]:
        # The raw body goes to disk in chunks and is validated there; the name is sanitised.
        saved = save_upload_wsgi(request.environ, validator, upload_dir, filename=name)
        result = saved.result
        if not saved.accepted or saved.path is None:
            status = 413 if result.size > validator.max_bytes else 422
            return jsonify({"accepted": False, "reason": result.reason,
                            "event": result.event_type}), status
        indexed = result.detected_type in INDEXED_TYPES
        if indexed:  # the validator has checked that it is UTF-8
            text = saved.path.read_text(encoding="utf-8")
            pipeline.index_document(Document(saved.path.name, result.sanitised_name, text))
        return jsonify({"accepted": True, "name": saved.path.name, "sha256": result.sha256,
                        "type": result.detected_type, "indexed": indexed}), 201

    @app.get("/admin/stats")
    def admin_stats() -> Response:
        # A 401 here is recorded by the middleware as an authn_login_fail event (high when
        # one client fails 10 times in a minute); the app only has to answer it.
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if admin_digest is None or scheme.lower() != "bearer" or not hmac.compare_digest(
                hashlib.sha256(sent.strip().encode()).digest(), admin_digest):
            return Response("Unauthorized\n", 401, {"WWW-Authenticate": 'Bearer realm="admin"'})
        stats = monitor.store.stats()
        return jsonify({"events_by_severity": stats.events_by_severity,
                        "events_by_type": stats.events_by_type, "spans": stats.spans,
                        "span_latency": {k: asdict(v) for k, v in stats.span_latency.items()}})

    checks: list[HealthCheck] = [FilesystemCheck(upload_dir, min_free_percent=5, name="uploads"),
                                 StoreCheck(monitor.store)]
    if ollama_url:
        # Critical: without the model there is no answer, so take the pod out of rotation.
        checks.append(HTTPCheck(f"{ollama_url.rstrip('/')}/api/tags", name="ollama",
                                warn_after_ms=2000))
    health = HealthService(monitor, checks)
    # Wrap wsgi_app, not app, so that `app` stays the Flask object for servers and tests.
    app.wsgi_app = WSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, monitor=monitor, health=health)
    app.extensions["ragtrail.health"] = health
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--drain-seconds", type=float, default=0.0,
                        help="after SIGTERM, fail readiness and keep serving this long")
    args = parser.parse_args()

    from waitress.server import create_server  # type: ignore[import-untyped]

    app = create_app()
    health: HealthService = app.extensions["ragtrail.health"]
    server = create_server(app, host=args.host, port=args.port, threads=args.threads)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)  # waitress's loop stops on it, then its threads finish

    # SIGTERM: readiness fails at once; after the drain, stop() ends the server.
    signal.signal(signal.SIGTERM, stop)
    install_sigterm_handler(health, drain_seconds=args.drain_seconds)
    print(f"serving on http://{args.host}:{server.effective_port}", flush=True)
    try:
        server.run()
    finally:
        ragtrail.shutdown()  # flush spans and events to the store
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
