"""The demo RAG service: a Starlette app wired up the way ragtrail recommends.

``/ask`` and ``/ask/stream`` run the ``@monitored`` pipeline; ``/documents`` takes uploads
through ``FileValidator`` (rejects are quarantined); ``/admin/status`` needs the bearer token;
``ASGIMiddleware`` adds correlation IDs, request spans, security events and the health routes,
with an Ollama ``HTTPCheck`` (critical), a ``FilesystemCheck`` and the audit store's check.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import requests
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import ragtrail
from ragtrail import ASGIMiddleware, FilesystemCheck, FileValidator, HTTPCheck, correlation_id
from ragtrail.demo._corpus import Document
from ragtrail.demo.pipeline import Pipeline
from ragtrail.health import HealthCheck, HealthService, install_sigterm_handler
from ragtrail.security import Quarantine, save_upload_starlette

__all__ = ["MAX_QUESTION_CHARS", "create_app"]

MAX_QUESTION_CHARS = 2000
_DEFAULT_UPLOAD_BYTES = 1024 * 1024
_INDEXED_TYPES = frozenset(("text", "markdown"))
_BEARER = "bearer "


def create_app(
    *,
    store_url: str | None = None,
    ollama_url: str | None = None,
    data_dir: str | os.PathLike[str] = "ragtrail-demo",
    api_token: str | None = None,
    max_upload_bytes: int = _DEFAULT_UPLOAD_BYTES,
    ollama_model: str = "llama3.2",
    ollama_timeout: float = 10.0,
    drain_seconds: float | None = None,
    **settings: Any,
) -> Starlette:
    """Configure ragtrail for this process and return the service.

    ``store_url``, ``api_token`` and ``settings`` go to ``ragtrail.configure()`` (None: the
    ``RAGTRAIL_*`` environment, then the defaults). Uploads are kept in ``data_dir/uploads``,
    rejects in ``data_dir/quarantine``. Without ``ollama_url`` answers come from a template and
    there is no Ollama check. ``drain_seconds`` (main thread only) installs the SIGTERM drain.

    >>> app = create_app(ollama_url="http://127.0.0.1:11434")  # doctest: +SKIP
    """
    data = Path(data_dir)
    uploads, quarantine = data / "uploads", data / "quarantine"
    for directory in (uploads, quarantine):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.setdefault("service_name", "ragtrail-demo")
    monitor = ragtrail.configure(store_url=store_url, api_token=api_token,
                                 quarantine_dir=str(quarantine), **settings)
    pipeline = Pipeline(ollama_url=ollama_url, ollama_model=ollama_model,
                        ollama_timeout=ollama_timeout)
    validator = FileValidator(max_bytes=max_upload_bytes,
                              allowed_extensions=[".md", ".txt", ".pdf", ".json"])
    checks: list[HealthCheck] = [FilesystemCheck(data, min_free_percent=1)]
    if ollama_url:
        checks.insert(0, HTTPCheck(f"{ollama_url.rstrip('/')}/api/tags", name="ollama",
                                   critical=True, warn_after_ms=250))
    # The store check (non-critical) and the system-metrics sampler join by default.
    health = HealthService(monitor, checks)
    routes = _Routes(pipeline, validator, uploads, quarantine, monitor.settings.api_token)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # After the server's own handlers, so the drain chains into its graceful shutdown.
        uninstall = (install_sigterm_handler(health, drain_seconds=drain_seconds)
                     if drain_seconds is not None else None)
        try:
            yield
        finally:
            if uninstall is not None:
                uninstall()

    app = Starlette(lifespan=lifespan, routes=[
        Route("/", routes.index),
        Route("/ask", routes.ask, methods=["GET", "POST"]),
        Route("/ask/stream", routes.ask_stream, methods=["GET", "POST"]),
        Route("/documents", routes.upload, methods=["POST"]),
        Route("/admin/status", routes.admin_status),
    ])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=health)
    app.state.monitor = monitor
    app.state.health = health
    app.state.pipeline = pipeline
    return app


class _Routes:
    """The endpoints, sharing one pipeline, validator and token."""

    def __init__(self, pipeline: Pipeline, validator: FileValidator, uploads: Path,
                 quarantine: Path, api_token: str | None) -> None:
        self.pipeline = pipeline
        self.validator = validator
        self.uploads = uploads
        self.quarantine = quarantine
        # Compared as digests, so the comparison time says nothing about the token's length.
        self._token_digest = (hashlib.sha256(api_token.encode()).digest()
                              if api_token else None)

    async def index(self, request: Request) -> Response:
        return JSONResponse({
            "service": "ragtrail demo RAG service",
            "endpoints": {
                "POST /ask": '{"question": "..."} -> answer and sources',
                "POST /ask/stream": '{"question": "..."} -> the answer as a text stream',
                "POST /documents": "raw body, Content-Disposition: attachment; filename=...",
                "GET /admin/status": "Authorization: Bearer <token>",
                "GET /health, /ready": "liveness and readiness probes",
            },
            "documents": self.pipeline.size,
        })

    async def ask(self, request: Request) -> Response:
        question = await _question(request)
        if isinstance(question, Response):
            return question
        try:
            result = await run_in_threadpool(self.pipeline.answer, question)
        except requests.RequestException as exc:
            # The generator span and its function_error event hold the details.
            return JSONResponse({"error": f"the model server failed: {type(exc).__name__}",
                                 "correlation_id": correlation_id()}, status_code=502)
        return JSONResponse({**result, "correlation_id": correlation_id()})

    async def ask_stream(self, request: Request) -> Response:
        question = await _question(request)
        if isinstance(question, Response):
            return question
        pipeline = self.pipeline
        passages = await run_in_threadpool(
            lambda: pipeline.rerank(question, pipeline.retrieve(question)))
        return StreamingResponse(pipeline.stream(question, passages),
                                 media_type="text/plain; charset=utf-8")

    async def upload(self, request: Request) -> Response:
        saved = await save_upload_starlette(request, self.validator, self.uploads)
        result = saved.result
        if not saved.accepted:
            status = 413 if result.size > self.validator.max_bytes else 422
            return JSONResponse({"accepted": False, "reason": result.reason,
                                 "event": result.event_type,
                                 "quarantined": result.quarantine_path is not None},
                                status_code=status)
        indexed = saved.path is not None and result.detected_type in _INDEXED_TYPES
        if indexed and saved.path is not None:  # (mypy cannot see through ``indexed``)
            text = await run_in_threadpool(saved.path.read_text, "utf-8")
            document = Document(f"upload-{result.sha256[:12]}", result.sanitised_name, text)
            await run_in_threadpool(self.pipeline.index_document, document)
        return JSONResponse({"accepted": True, "name": result.sanitised_name,
                             "type": result.detected_type, "sha256": result.sha256,
                             "indexed": indexed}, status_code=201)

    async def admin_status(self, request: Request) -> Response:
        if not self._authorized(request.headers.get("authorization", "")):
            # The middleware records each 401 as authn_login_fail, escalating in a burst.
            return JSONResponse({"error": "a valid bearer token is required"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="ragtrail-demo"'})
        entries = await run_in_threadpool(Quarantine(self.quarantine).entries)
        return JSONResponse({
            "documents": self.pipeline.size,
            "quarantined": [{"sha256": e.sha256, "size": e.size, "reason": e.reason}
                            for e in entries],
            "monitor": ragtrail.get_monitor().health(),
        })

    def _authorized(self, header: str) -> bool:
        if self._token_digest is None or header[:len(_BEARER)].lower() != _BEARER:
            return False
        given = hashlib.sha256(header[len(_BEARER):].strip().encode()).digest()
        return hmac.compare_digest(given, self._token_digest)


async def _question(request: Request) -> str | Response:
    """The question from a JSON body (POST) or ``?q=`` (GET), or a 400 saying what is wrong."""
    if request.method == "GET":
        value: object = request.query_params.get("q")
    else:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "expected a JSON body"}, status_code=400)
        value = body.get("question") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value.strip():
        return JSONResponse({"error": "expected a non-empty question"}, status_code=400)
    if len(value) > MAX_QUESTION_CHARS:
        return JSONResponse({"error": f"questions are limited to {MAX_QUESTION_CHARS} "
                                      "characters"}, status_code=400)
    return value
