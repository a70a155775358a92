"""Hostile upload names and contents through ``save_upload_wsgi``/``save_upload_starlette`` and
``FileValidator``: a safe name, an accepted file inside the destination, a rejected one in the
quarantine with a readable, escaped sidecar; never an exception."""

from __future__ import annotations

import hashlib
import io
import json
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from security.security_corpus import ELF, MACHO, PDF, PE, SCRIPT, ooxml_bytes, zip_bytes
from starlette.requests import Request

from ragtrail import FileValidator, start_span
from ragtrail.security import save_upload_starlette, save_upload_wsgi

from ._apps import event_loop
from ._campaign import CASES, CASES_PER_SURFACE, GENERATED, Campaign, Recipe, raw_controls

MAX_BYTES = 64 * 1024
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})  # what names never keep
_EXTENSIONS = (".pdf", ".txt", ".md", ".json", ".csv", ".html", ".docx", ".xlsx", ".pptx",
               ".exe", ".PDF", ".pdf.exe", ".tar.gz", "", ".", ".pdf\x00.exe", ".pdf ",
               ".pdf.", ".\u202efdp", ".sh")
_NAMES = ("report", "../../etc/cron.d/evil", "..\\..\\windows\\system32\\x", "CON", "com1",
          "nul", "  ", "...", "a" * 400, "日本語の文書", "\u202eexe.pdf", "x\r\ny", "x\x00y",
          "\x1b[2Jname", "password=Canary-Hunter2!", "/abs/path/file", "C:\\Users\\x\\file")
_DOCX = ooxml_bytes("docx")
_BOMB = zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": bytes(2_000_000)})
_HEADS = (b"", PDF, b"%PDF-1.7\n" + b"x" * 100, ELF, PE, MACHO, SCRIPT, _DOCX, _DOCX[:200],
          _BOMB, b'{"a": 1}', b"a,b\n1,2\n", b"<html><script>x</script>", b"\xff\xfe\x00",
          b"\xef\xbb\xbftext", b"PK\x03\x04" + bytes(100))


def _upload(piece: str, recipe: Recipe) -> tuple[str, bytes, dict[str, Any]]:
    """A client's name, the bytes it sends, and how it declares them (WSGI environ keys)."""
    name = (recipe.pick(_NAMES) if recipe.below(2) else recipe.text(piece)) + recipe.pick(
        _EXTENSIONS)
    body = recipe.pick(_HEADS) + recipe.text(piece).encode("utf-8", "surrogatepass")
    body += bytes(recipe.below(3 * MAX_BYTES)) if recipe.below(8) == 0 else b""
    environ: dict[str, Any] = {}
    declared = recipe.below(6)
    if declared == 0:
        environ["CONTENT_LENGTH"] = str(len(body))
    elif declared == 1:
        environ["CONTENT_LENGTH"] = str(len(body) + 1 + recipe.below(100))  # truncated body
    elif declared == 2:
        environ["CONTENT_LENGTH"] = recipe.pick(("", "abc", "-1", str(10 * MAX_BYTES), " 5"))
    elif declared == 3:
        environ["wsgi.input_terminated"] = True  # chunked: read to the end
    else:
        environ["CONTENT_LENGTH"] = str(len(body))
    return name, body, environ


def _chunk_size(recipe: Recipe, size: int) -> int:
    """Tiny chunks (every boundary) for small bodies; big bodies in big chunks, for time."""
    return 1 + recipe.below(64) if size < 2048 else 2048 + recipe.below(64 * 1024)


def _check(saved: Any, dest: Path, quarantine: Path, body: bytes) -> None:
    result = saved.result
    name = result.sanitised_name
    assert name not in ("", ".", ".."), name
    assert len(name.encode()) <= 255, name
    assert not any(c in "/\\" or unicodedata.category(c) in _INVISIBLE for c in name), name
    if saved.accepted:
        assert saved.path is not None
        assert saved.path.parent == dest
        assert hashlib.sha256(saved.path.read_bytes()).hexdigest() == result.sha256
        assert result.sha256 == hashlib.sha256(body).hexdigest()
    else:
        assert saved.path is None
        assert result.reason
        if result.quarantine_path is not None:
            assert result.quarantine_path.parent == quarantine
            sidecar = json.loads(result.quarantine_path.with_name(
                result.quarantine_path.name + ".json").read_text(encoding="utf-8"))
            for value in sidecar.values():
                assert not (isinstance(value, str) and raw_controls(value)), sidecar


def _sidecar_paths(quarantine: Path) -> list[Path]:
    return sorted(quarantine.glob("*.json")) if quarantine.exists() else []


def test_generated_uploads(campaign: Callable[..., Campaign], tmp_path: Path) -> None:
    """10,000 generated uploads: traversal, device, bidi, control and overlong names; lying
    content types, executables, ZIP bombs, truncated and oversized bodies."""
    surface = campaign("uploads")
    dest, quarantine = tmp_path / "docs", tmp_path / "quarantine"
    validator = FileValidator(max_bytes=MAX_BYTES, quarantine_dir=quarantine)
    with surface.generated():

        @GENERATED
        @given(CASES)
        def batch(cases: list[tuple[str, Recipe]]) -> None:
            for piece, recipe in cases:
                name, body, environ = _upload(piece, recipe)
                by_header = recipe.below(2)
                environ["wsgi.input"] = io.BytesIO(body)
                if by_header:
                    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
                    environ["HTTP_CONTENT_DISPOSITION"] = (
                        f'attachment; filename="{quoted}"'.encode().decode("latin-1"))
                saved = save_upload_wsgi(environ, validator, dest,
                                         filename=None if by_header else name,
                                         chunk_size=_chunk_size(recipe, len(body)))
                truncated = (environ.get("CONTENT_LENGTH", "").isdigit()
                             and int(environ["CONTENT_LENGTH"]) != len(body))
                if not truncated:
                    _check(saved, dest, quarantine, body)
                surface.cases += 1

        batch()
    assert surface.cases >= CASES_PER_SURFACE
    assert _sidecar_paths(quarantine)  # rejections were quarantined


def test_curated_uploads_through_starlette(campaign: Callable[..., Campaign],
                                          tmp_path: Path) -> None:
    """The name and content corpus through the Starlette helper, streamed in chunks."""
    surface = campaign("uploads")
    dest, quarantine = tmp_path / "docs", tmp_path / "quarantine"
    validator = FileValidator(max_bytes=MAX_BYTES, quarantine_dir=quarantine)
    with event_loop() as loop, surface.curated():
        for name in _NAMES:
            for extension in (".pdf", ".docx", ".txt", ".exe"):
                for head in (PDF, _DOCX, _BOMB, ELF, b"plain text AKIACANARY0123456789\n"):
                    span = start_span("upload", "chain")  # events become span events: OTLP
                    try:
                        saved = loop.run_until_complete(
                            _starlette_upload(validator, dest, name + extension, head))
                    finally:
                        span.end()
                    _check(saved, dest, quarantine, head)
    for sidecar in _sidecar_paths(quarantine):
        fields = json.loads(sidecar.read_text(encoding="utf-8"))
        assert not any(isinstance(v, str) and raw_controls(v) for v in fields.values()), fields


async def _starlette_upload(validator: FileValidator, dest: Path, name: str,
                            body: bytes) -> Any:
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {"type": "http", "method": "PUT", "path": "/docs", "headers": [
        (b"content-length", str(len(body)).encode())], "query_string": b""}
    return await save_upload_starlette(Request(scope, receive), validator, dest, filename=name)
