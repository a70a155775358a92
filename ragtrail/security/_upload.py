"""Receive an upload body straight to disk, validate it, and keep it or quarantine it.

The body arrives in chunks and goes to a temporary file in the destination directory (so the
final rename never crosses filesystems); at most one chunk is in memory, and reading stops the
moment the size limit is passed. A body declared too large, or with a disallowed extension,
is refused before a byte is read. Raw bodies only (``PUT /docs/report.pdf``, or a ``POST``
with ``Content-Disposition: attachment; filename=...``); for multipart forms, save the part
with the framework's parser and call ``FileValidator.validate`` on it.
"""

from __future__ import annotations

import email.message
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ragtrail.security._files import move_file
from ragtrail.security._names import MAX_NAME_BYTES, split_extension
from ragtrail.security._validator import FileValidator, ValidationResult

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["DEFAULT_CHUNK_SIZE", "UploadResult", "save_upload_starlette", "save_upload_wsgi"]

DEFAULT_CHUNK_SIZE = 64 * 1024
_MAX_DISPOSITION = 4096


@dataclass(frozen=True)
class UploadResult:
    """The validator's verdict and, when accepted, where the file now is."""

    result: ValidationResult
    path: Path | None = None

    @property
    def accepted(self) -> bool:
        return self.result.accepted


async def save_upload_starlette(
    request: Request,
    validator: FileValidator,
    dest_dir: str | os.PathLike[str],
    *,
    filename: str | None = None,
) -> UploadResult:
    """Stream ``request``'s body into ``dest_dir`` and validate it.

    ``filename`` defaults to the ``Content-Disposition`` header's. File work runs in the
    thread pool, so the event loop never waits on the disk.

    >>> async def upload(request):
    ...     saved = await save_upload_starlette(request, validator, "/srv/docs")
    ...     return JSONResponse({"ok": saved.accepted}, status_code=201 if saved.accepted else 422)
    """
    from starlette.concurrency import run_in_threadpool

    name = filename if filename is not None else _disposition_name(request.headers)
    refused = validator.precheck(name, size=_length(request.headers.get("content-length")))
    if refused is not None:
        return UploadResult(refused)
    sink = await run_in_threadpool(_Sink, validator, Path(dest_dir), name)
    try:
        async for chunk in request.stream():
            if not await run_in_threadpool(sink.write, chunk):
                return UploadResult(sink.too_large())
    except BaseException:
        sink.discard()  # also on cancellation: quick, and must not wait for the thread pool
        raise
    return await run_in_threadpool(sink.finish)


def save_upload_wsgi(
    environ: Mapping[str, Any],
    validator: FileValidator,
    dest_dir: str | os.PathLike[str],
    *,
    filename: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> UploadResult:
    """Stream a WSGI request's body (``environ['wsgi.input']``) into ``dest_dir`` and validate it.

    In Flask pass ``request.environ`` before anything has read the body (``request.data``,
    ``request.form``). Reads at most ``chunk_size`` bytes at a time and never past
    ``CONTENT_LENGTH`` (PEP 3333); without one, reads to the end only when the server says the
    input is terminated (``wsgi.input_terminated``, chunked requests), else takes no body.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    name = filename if filename is not None else _disposition_name(
        {"content-disposition": environ.get("HTTP_CONTENT_DISPOSITION", "")})
    declared = _length(environ.get("CONTENT_LENGTH"))
    refused = validator.precheck(name, size=declared)
    if refused is not None:
        return UploadResult(refused)
    remaining = declared if declared is not None or environ.get("wsgi.input_terminated") else 0
    stream: BinaryIO = environ["wsgi.input"]
    sink = _Sink(validator, Path(dest_dir), name)
    try:
        while remaining is None or remaining > 0:
            chunk = stream.read(chunk_size if remaining is None else min(chunk_size, remaining))
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            if not sink.write(chunk):
                return UploadResult(sink.too_large())
    except BaseException:
        sink.discard()
        raise
    if remaining:
        sink.discard()
        return UploadResult(validator.refuse(
            name, f"body ended after {sink.received} of {declared} declared bytes",
            size=sink.received))
    return sink.finish()


class _Sink:
    """One upload's temporary file; every method runs off the event loop."""

    def __init__(self, validator: FileValidator, dest_dir: Path, name: str) -> None:
        self._validator = validator
        self._dest_dir = dest_dir
        self._name = name
        dest_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".ragtrail-upload-", suffix=".part", dir=dest_dir)
        self._path = Path(temp)
        self._file = os.fdopen(fd, "wb")
        self.received = 0

    def write(self, chunk: bytes) -> bool:
        """Append ``chunk``; False (and the file discarded) once the limit is passed."""
        self.received += len(chunk)
        if self.received > self._validator.max_bytes:
            self.discard()
            return False
        self._file.write(chunk)
        return True

    def too_large(self) -> ValidationResult:
        # Not quarantined: only the first max_bytes arrived, so it is not the file as sent.
        return self._validator.refuse(
            self._name, f"file is larger than the limit of {self._validator.max_bytes} bytes",
            size=self.received)

    def discard(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)

    def finish(self) -> UploadResult:
        self._file.close()
        try:
            result = self._validator.validate(self._path, filename=self._name)
        except BaseException:
            self.discard()
            raise
        if not result.accepted:
            # Quarantined (moved) already; without a quarantine, a rejected upload just goes.
            self._path.unlink(missing_ok=True)
            return UploadResult(result)
        return UploadResult(result, _keep(self._path, self._dest_dir, result))


def _keep(temp: Path, dest_dir: Path, result: ValidationResult) -> Path:
    """Give the accepted file its sanitised name, never overwriting another upload."""
    stem, extension = split_extension(result.sanitised_name)
    # Leave room for the suffix inside the 255-byte name limit.
    budget = MAX_NAME_BYTES - len(extension.encode()) - len("-123456789abc-999")
    stem = stem.encode()[:budget].decode("utf-8", "ignore").rstrip(". ") or "upload"
    candidates = [result.sanitised_name, f"{stem}-{result.sha256[:12]}{extension}"]
    candidates += (f"{stem}-{result.sha256[:12]}-{n}{extension}" for n in range(1, 1000))
    for candidate in candidates:
        try:
            move_file(temp, dest_dir / candidate)
        except FileExistsError:
            continue
        return dest_dir / candidate
    raise FileExistsError(f"no free name for {result.sanitised_name} in {dest_dir}")


def _disposition_name(headers: Mapping[str, str]) -> str:
    """The filename parameter of Content-Disposition (RFC 6266, ``filename*`` too), or ""."""
    value = headers.get("content-disposition", "")
    if not value or len(value) > _MAX_DISPOSITION:  # the email parser is quadratic in ';'
        return ""
    message = email.message.Message()
    message["content-disposition"] = value
    name = message.get_filename() or ""
    # HTTP headers reach Python as latin-1 (PEP 3333, ASGI); clients often send raw UTF-8.
    try:
        return name.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return name


def _length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)
