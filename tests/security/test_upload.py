"""Upload helpers through a real Starlette app (in-process ASGI) and real WSGI apps."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
from middleware._support import waitress_server
from security_corpus import ELF, PDF
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ragtrail.instrument import Monitor
from ragtrail.security import FileValidator, UploadResult, save_upload_starlette, save_upload_wsgi

MB = 1024 * 1024


def _outcome(saved: UploadResult) -> dict[str, Any]:
    return {"accepted": saved.accepted, "reason": saved.result.reason,
            "path": None if saved.path is None else str(saved.path),
            "sha256": saved.result.sha256}


class _CountingApp:
    """Wraps an ASGI app and counts the body bytes it pulled from the server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def _starlette_app(validator: FileValidator, dest: Path) -> _CountingApp:
    async def put_document(request: Request) -> JSONResponse:
        saved = await save_upload_starlette(request, validator, dest,
                                            filename=request.path_params["name"])
        return JSONResponse(_outcome(saved), status_code=201 if saved.accepted else 422)

    async def post_document(request: Request) -> JSONResponse:
        saved = await save_upload_starlette(request, validator, dest)
        return JSONResponse(_outcome(saved), status_code=201 if saved.accepted else 422)

    return _CountingApp(Starlette(routes=[
        Route("/docs/{name}", put_document, methods=["PUT"]),
        Route("/docs", post_document, methods=["POST"]),
    ]))


def _send(app: Any, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(run())


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "documents"


@pytest.fixture
def validator(monitor: Monitor) -> FileValidator:
    return FileValidator(monitor=monitor, max_bytes=MB)


# -- Starlette --------------------------------------------------------------------------------

def test_starlette_accepts_and_stores_a_document(validator: FileValidator, dest: Path) -> None:
    """A PUT body is saved under its sanitised name, mode 0600, with no temporary left over."""
    response = _send(_starlette_app(validator, dest), "PUT", "/docs/report.pdf", content=PDF)
    assert response.status_code == 201
    saved = Path(response.json()["path"])
    assert saved == dest / "report.pdf"
    assert saved.read_bytes() == PDF
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert os.listdir(dest) == ["report.pdf"]


def test_starlette_takes_the_name_from_content_disposition(validator: FileValidator,
                                                           dest: Path) -> None:
    """RFC 6266 ``filename*`` (UTF-8, percent-encoded) names the file, sanitised."""
    headers = {"Content-Disposition": "attachment; filename*=UTF-8''..%2F%C3%BCber%0A.md"}
    response = _send(_starlette_app(validator, dest), "POST", "/docs", content=b"# Hi\n",
                     headers=headers)
    assert response.status_code == 201
    assert os.listdir(dest) == ["über_.md"]


def test_starlette_raw_utf8_disposition_name(validator: FileValidator, dest: Path) -> None:
    """A raw UTF-8 filename (sent as bytes, seen as latin-1) is decoded back to UTF-8."""
    headers = [(b"content-disposition", 'attachment; filename="résumé.txt"'.encode())]
    response = _send(_starlette_app(validator, dest), "POST", "/docs", content=b"cv\n",
                     headers=headers)
    assert response.status_code == 201
    assert os.listdir(dest) == ["résumé.txt"]


def test_starlette_never_overwrites_an_earlier_upload(validator: FileValidator,
                                                      dest: Path) -> None:
    """A second file under the same name gets the sha256 prefix; the first is untouched."""
    app = _starlette_app(validator, dest)
    first = _send(app, "PUT", "/docs/notes.txt", content=b"first\n").json()
    second = _send(app, "PUT", "/docs/notes.txt", content=b"second\n").json()
    assert Path(first["path"]).read_bytes() == b"first\n"
    assert Path(second["path"]) == dest / f"notes-{second['sha256'][:12]}.txt"
    assert Path(second["path"]).read_bytes() == b"second\n"


def test_starlette_quarantines_a_disguised_executable(validator: FileValidator, dest: Path,
                                                      quarantine_dir: Path) -> None:
    """An ELF named invoice.pdf is rejected, quarantined, and nothing stays in dest."""
    response = _send(_starlette_app(validator, dest), "PUT", "/docs/invoice.pdf", content=ELF)
    assert response.status_code == 422
    body = response.json()
    assert body["reason"] == "executable content (elf-executable) disguised as pdf"
    assert os.listdir(dest) == []
    assert (quarantine_dir / body["sha256"]).read_bytes() == ELF


def test_starlette_refuses_declared_oversize_without_reading(validator: FileValidator,
                                                             dest: Path) -> None:
    """Content-Length over the limit: refused before one body byte is read."""
    app = _starlette_app(validator, dest)
    response = _send(app, "PUT", "/docs/big.pdf", content=b"x" * (MB + 1))
    assert response.status_code == 422
    assert response.json()["reason"] == f"file is larger than the limit of {MB} bytes"
    assert app.received == 0
    assert not dest.exists()


def test_starlette_stops_a_streamed_body_at_the_limit(validator: FileValidator, dest: Path,
                                                      quarantine_dir: Path) -> None:
    """A chunked body without Content-Length is cut off once it passes the limit."""
    app = _starlette_app(validator, dest)
    body = PDF + b"x" * (5 * MB)
    response = _send(app, "PUT", "/docs/big.pdf", content=_chunks(body))
    assert response.status_code == 422
    assert "larger than the limit" in response.json()["reason"]
    assert app.received <= MB + 64 * 1024
    assert os.listdir(dest) == []  # the partial file is gone
    assert not quarantine_dir.exists()  # a partial body is not evidence of the file as sent


def test_starlette_refuses_a_bad_extension_before_reading(validator: FileValidator,
                                                          dest: Path) -> None:
    """A name with a disallowed extension is refused without reading the body."""
    app = _starlette_app(validator, dest)
    response = _send(app, "PUT", "/docs/setup.exe", content=_chunks(ELF))
    assert response.json()["reason"] == "extension '.exe' is not allowed"
    assert app.received == 0


def test_starlette_without_a_name_is_refused(validator: FileValidator, dest: Path) -> None:
    """No filename argument and no Content-Disposition: there is no claimed type."""
    response = _send(_starlette_app(validator, dest), "POST", "/docs", content=PDF)
    assert response.json()["reason"] == "extension '(none)' is not allowed"


def test_starlette_client_disconnect_removes_the_partial_file(validator: FileValidator,
                                                              dest: Path) -> None:
    """A client that goes away mid-body leaves no temporary file; the error propagates."""
    messages: list[Message] = [
        {"type": "http.request", "body": PDF[:10], "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def run() -> None:
        scope: Scope = {"type": "http", "method": "PUT", "path": "/", "headers": [],
                        "query_string": b""}
        await save_upload_starlette(Request(scope, receive), validator, dest,
                                    filename="report.pdf")

    with pytest.raises(ClientDisconnect):
        asyncio.run(run())
    assert os.listdir(dest) == []


def test_starlette_upload_never_holds_the_file_in_memory(monitor: Monitor, dest: Path) -> None:
    """50 MB streamed through the app: Python's peak allocation stays a few megabytes."""
    validator = FileValidator(monitor=monitor, max_bytes=60 * MB)
    app = _starlette_app(validator, dest)
    size = 50 * MB

    async def body() -> AsyncIterator[bytes]:
        yield PDF[:-6]
        filler = b"0" * (64 * 1024)
        for _ in range(size // len(filler)):
            yield filler
        yield b"\n%%EOF\n"

    tracemalloc.start()
    try:
        response = _send(app, "PUT", "/docs/large.pdf", content=body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.text
    assert (dest / "large.pdf").stat().st_size > size
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB"


# -- WSGI -------------------------------------------------------------------------------------

class _CountingStream:
    """A wsgi.input that makes its bytes on demand and records the largest read."""

    def __init__(self, data: Iterator[bytes]) -> None:
        self._data = data
        self._pending = b""
        self.largest_read = 0
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise AssertionError("the helper must never read without a size")
        self.largest_read = max(self.largest_read, size)
        while len(self._pending) < size:
            more = next(self._data, b"")
            if not more:
                break
            self._pending += more
        out, self._pending = self._pending[:size], self._pending[size:]
        self.total += len(out)
        return out


def _environ(stream: Any, length: int | None, **extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": "PUT", "wsgi.input": stream, **extra}
    if length is not None:
        environ["CONTENT_LENGTH"] = str(length)
    return environ


def test_wsgi_reads_in_chunks_and_never_holds_the_file(monitor: Monitor, dest: Path) -> None:
    """50 MB through wsgi.input: no read larger than chunk_size, small peak memory."""
    validator = FileValidator(monitor=monitor, max_bytes=60 * MB)
    size = 50 * MB
    filler = b"0" * MB

    def produce() -> Iterator[bytes]:
        yield PDF[:-6]
        for _ in range(size // MB):
            yield filler
        yield b"\n%%EOF\n"

    stream = _CountingStream(produce())
    length = len(PDF) - 6 + size + 7
    tracemalloc.start()
    try:
        saved = save_upload_wsgi(_environ(stream, length), validator, dest,
                                 filename="large.pdf", chunk_size=32 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert saved.accepted, saved.result.reason
    assert stream.largest_read == 32 * 1024
    assert stream.total == length
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB"


def test_wsgi_stops_reading_past_the_limit(validator: FileValidator, dest: Path) -> None:
    """A chunked (terminated) body over the limit is read only to just past the limit."""
    stream = _CountingStream(iter([b"x" * (64 * 1024)] * 100))
    saved = save_upload_wsgi(_environ(stream, None, **{"wsgi.input_terminated": True}),
                             validator, dest, filename="big.txt")
    assert not saved.accepted
    assert "larger than the limit" in (saved.result.reason or "")
    assert MB < stream.total <= MB + 64 * 1024
    assert os.listdir(dest) == []


def test_wsgi_truncated_body_is_refused(validator: FileValidator, dest: Path) -> None:
    """A body shorter than its Content-Length is refused, and nothing is kept."""
    saved = save_upload_wsgi(_environ(io.BytesIO(PDF), len(PDF) + 100), validator, dest,
                             filename="report.pdf")
    assert saved.result.reason == f"body ended after {len(PDF)} of {len(PDF) + 100} declared bytes"
    assert os.listdir(dest) == []


def test_wsgi_never_reads_past_content_length(validator: FileValidator, dest: Path) -> None:
    """Only CONTENT_LENGTH bytes are read (PEP 3333), even if more are on the socket."""
    stream = io.BytesIO(PDF + b"NEXT REQUEST")
    saved = save_upload_wsgi(_environ(stream, len(PDF)), validator, dest, filename="a.pdf")
    assert saved.accepted
    assert stream.read() == b"NEXT REQUEST"


def test_wsgi_without_length_or_termination_reads_nothing(validator: FileValidator,
                                                          dest: Path) -> None:
    """No Content-Length and no wsgi.input_terminated means no body (PEP 3333)."""
    stream = io.BytesIO(PDF)
    saved = save_upload_wsgi(_environ(stream, None), validator, dest, filename="a.pdf")
    assert saved.result.reason == "empty file"
    assert stream.tell() == 0


def test_wsgi_rejects_a_bad_chunk_size(validator: FileValidator, dest: Path) -> None:
    """chunk_size must be positive."""
    with pytest.raises(ValueError, match="chunk_size"):
        save_upload_wsgi(_environ(io.BytesIO(b""), 0), validator, dest, chunk_size=0)


def _flask_app(validator: FileValidator, dest: Path) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.put("/docs/<name>")
    def put_document(name: str) -> tuple[dict[str, Any], int]:
        saved = save_upload_wsgi(flask.request.environ, validator, dest, filename=name)
        return _outcome(saved), 201 if saved.accepted else 422

    @app.post("/docs")
    def post_document() -> tuple[dict[str, Any], int]:
        saved = save_upload_wsgi(flask.request.environ, validator, dest)
        return _outcome(saved), 201 if saved.accepted else 422

    return app


def test_flask_accepts_and_quarantines(validator: FileValidator, dest: Path,
                                       quarantine_dir: Path) -> None:
    """Through Flask: a document is stored, a disguised executable quarantined."""
    client = _flask_app(validator, dest).test_client()
    good = client.put("/docs/report.pdf", data=PDF)
    assert good.status_code == 201
    assert Path(good.json["path"]).read_bytes() == PDF
    bad = client.post("/docs", data=ELF,
                      headers={"Content-Disposition": 'attachment; filename="invoice.pdf"'})
    assert bad.status_code == 422
    assert (quarantine_dir / bad.json["sha256"]).read_bytes() == ELF


@pytest.mark.network
def test_chunked_upload_through_waitress(validator: FileValidator, dest: Path) -> None:
    """A real WSGI server on 127.0.0.1 and a chunked request (wsgi.input_terminated)."""
    def body() -> Iterator[bytes]:
        yield PDF[:20]
        yield PDF[20:]

    # The helper stops waitress without racing its select() (server.close() from this
    # thread could close a socket under it: EBADF in the server's thread).
    with waitress_server(_flask_app(validator, dest)) as base:
        response = httpx.put(f"{base}/docs/streamed.pdf", content=body(), timeout=10)
    assert response.status_code == 201, response.text
    assert (dest / "streamed.pdf").read_bytes() == PDF
