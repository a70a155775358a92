"""What a file's bytes are, and whether they may enter the index: the type each extension
claims, and the checks of that type (magic bytes, UTF-8 and text formats, the ZIP central
directory of the Office types, a PDF's end marker)."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import BinaryIO, Final

from ragtrail.security._names import split_extension
from ragtrail.security._sniff import (
    EXECUTABLE_TYPES,
    TEXT_TYPES,
    Utf8Check,
    check_text_format,
    magic_type,
)
from ragtrail.security._zipcheck import OOXML_TYPES, ZipLimits, inspect_zip

__all__ = ["EXTENSION_TYPES", "INVALID", "JUDGED_FROM_SCAN", "MALICIOUS", "Verdict", "claim",
           "judge", "normalise_extension"]

EXTENSION_TYPES: Final = {
    ".pdf": "pdf", ".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
    ".html": "html", ".htm": "html", ".json": "json", ".csv": "csv",
    ".docx": "docx", ".xlsx": "xlsx", ".pptx": "pptx",
}
"""Every extension FileValidator can check, and the type it claims."""
_DOCUMENT_TYPES: Final = frozenset(EXTENSION_TYPES.values())

# OWASP Application Logging Vocabulary: malicious_* for hostile content, input_validation_fail
# for content that is merely wrong.
MALICIOUS: Final = "malicious_file_upload"
INVALID: Final = "input_validation_fail"

# Claimed types whose checks use only what the scan kept (head, tail, the UTF-8 check); the
# others (HTML, JSON, CSV, the ZIP-based types) read the file again.
JUDGED_FROM_SCAN: Final = frozenset({"pdf", "text", "markdown"})


@dataclass(frozen=True)
class Verdict:
    detected_type: str
    problem: str | None = None
    event_type: str = INVALID


def judge(f: BinaryIO, extension: str, claimed: str, size: int, head: bytes, tail: bytes,
          utf8: Utf8Check | None, *, max_bytes: int, allowed_extensions: Set[str],
          zip_limits: ZipLimits) -> Verdict:
    """The verdict on ``f``: its ``size``, first and last bytes and UTF-8 check come from the
    scan; ``f`` is read again only by the checks not in ``JUDGED_FROM_SCAN``."""
    magic = magic_type(head)
    if magic in EXECUTABLE_TYPES:
        known = claimed in _DOCUMENT_TYPES
        disguise = f" disguised as {claimed}" if known else ""
        return Verdict(magic, f"executable content ({magic}){disguise}", MALICIOUS)
    guess = magic or _text_or_binary(head)
    if size == 0:
        return Verdict("empty", "empty file")
    if size > max_bytes:
        return Verdict(guess, f"file is {size} bytes; the limit is {max_bytes}")
    if extension not in allowed_extensions:
        return Verdict(guess, f"extension {extension or '(none)'!r} is not allowed")
    if claimed in TEXT_TYPES:
        return _check_text(f, claimed, magic, utf8)
    if magic != _container(claimed):
        return Verdict(guess, f"content is {guess}, not {claimed}")
    if claimed == "pdf":
        ok = b"%%EOF" in tail
        return Verdict("pdf", None if ok else "PDF is truncated (no %%EOF marker)")
    zipped = inspect_zip(f, size, zip_limits)
    if zipped.problem is not None:
        return Verdict(zipped.detected_type, zipped.problem,
                       MALICIOUS if zipped.malicious else INVALID)
    if zipped.detected_type != claimed:
        return Verdict(zipped.detected_type,
                       f"content is {zipped.detected_type}, not {claimed}")
    return Verdict(claimed)


def _check_text(f: BinaryIO, claimed: str, magic: str | None,
                utf8: Utf8Check | None) -> Verdict:
    if magic is not None:
        return Verdict(magic, f"content is {magic}, not {claimed}")
    if utf8 is not None and utf8.problem is not None:
        return Verdict("binary", f"not UTF-8 text: {utf8.problem}")
    problem = check_text_format(claimed, f)
    return Verdict("text" if problem else claimed, problem)


def claim(name: str) -> tuple[str, str]:
    """The lowercased extension of a sanitised name, and the type it claims (or the bare
    extension when no check knows it)."""
    extension = split_extension(name)[1].lower()
    return extension, EXTENSION_TYPES.get(extension, extension.lstrip("."))


def _container(claimed: str) -> str:
    """The magic type a claimed type must start with."""
    return "zip" if claimed in OOXML_TYPES else claimed


def _text_or_binary(head: bytes) -> str:
    check = Utf8Check()
    check.feed(head)  # not final: the head may end inside a character
    return "binary" if check.problem else "text"


def normalise_extension(extension: str) -> str:
    normalised = "." + extension.strip().lower().lstrip(".")
    if normalised not in EXTENSION_TYPES:
        raise ValueError(f"no content check for {extension!r}; "
                         f"supported: {', '.join(sorted(EXTENSION_TYPES))}")
    return normalised
