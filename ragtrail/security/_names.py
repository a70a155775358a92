"""Untrusted names: make an upload's filename safe to store, and any text safe to show.

A client-supplied filename is attacker input. It may carry a path (``../../etc/cron.d/x``,
``C:\\Windows\\x``), NUL or control characters, a bidi override that hides the real extension
(``invoice\\u202efdp.exe``), a Windows device name (``CON``, ``com1.txt``), trailing dots or
spaces that Windows strips, or hundreds of bytes that no filesystem accepts.
"""

from __future__ import annotations

import unicodedata

__all__ = ["escape_text", "sanitize_filename", "split_extension"]

MAX_NAME_BYTES = 255
"""The usual per-component limit (ext4, XFS, APFS, NTFS in UTF-16 units)."""

FALLBACK_NAME = "unnamed"

# Characters Windows forbids in names, plus both path separators.
_FORBIDDEN = frozenset('<>:"/\\|?*')
# Unicode categories that are never wanted in a name: controls, format characters (bidi
# overrides, zero-width joiners), surrogates, private use, unassigned, line/paragraph separators.
_UNWANTED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Device names Windows resolves in any directory, with any extension (CON.txt is the console).
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")]
)
# An extension longer than this is not an extension worth keeping when truncating.
_MAX_EXTENSION_CHARS = 16


def sanitize_filename(name: str, *, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A safe, non-empty, single-component version of an untrusted filename.

    Keeps the last path component, normalises to NFC, replaces control, format and
    Windows-forbidden characters with ``_``, drops leading dots and trailing dots and spaces,
    prefixes Windows device names with ``_``, and truncates to ``max_bytes`` of UTF-8 keeping
    the extension. The result is never empty, ``.`` or ``..``.

    >>> sanitize_filename("../../etc/passwd")
    'passwd'
    >>> sanitize_filename("con.txt")
    '_con.txt'
    >>> sanitize_filename("invoice\\u202efdp.exe")
    'invoice_fdp.exe'
    """
    if max_bytes < 32:
        raise ValueError(f"max_bytes must be at least 32; got {max_bytes}")
    text = unicodedata.normalize("NFC", name)
    # Browsers used to send the client's full path; only its last component is the name.
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(
        "_" if ch in _FORBIDDEN or unicodedata.category(ch) in _UNWANTED_CATEGORIES else ch
        for ch in text
    )
    text = _truncate(_trim(text), max_bytes)
    if _is_windows_device(text):  # checked after truncation, which can expose a device stem
        text = _truncate("_" + text, max_bytes)
    return text or FALLBACK_NAME


def split_extension(name: str) -> tuple[str, str]:
    """``("report", ".pdf")`` for ``"report.pdf"``; the extension keeps its dot and case."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, "." + ext


def escape_text(text: str, *, limit: int | None = None) -> str:
    """``text`` with backslashes and every invisible or control character escaped.

    For showing untrusted text (an original filename) on a terminal or in a log without
    letting it move the cursor, fake a line, or hide characters. Printable non-ASCII stays.

    >>> escape_text("a\\x1b[2Jb\\u202e")
    'a\\\\x1b[2Jb\\\\u202e'
    """
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in _UNWANTED_CATEGORIES:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def _trim(text: str) -> str:
    # Leading dots make hidden files (and "." / ".."); Windows silently drops trailing dots
    # and spaces, so "a.exe." would become "a.exe" there.
    while True:
        trimmed = text.strip().strip(".")
        if trimmed == text:
            return text
        text = trimmed


def _is_windows_device(text: str) -> bool:
    stem = text.split(".", 1)[0].rstrip(" ")
    return stem.upper() in _WINDOWS_DEVICES


def _truncate(text: str, max_bytes: int) -> str:
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    stem, ext = split_extension(text)
    if len(ext) > _MAX_EXTENSION_CHARS:
        stem, ext = text, ""
    budget = max_bytes - len(ext.encode("utf-8"))
    cut = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
    # Cutting may leave a trailing space or dot before the extension.
    cut = _trim(cut)
    return cut + ext if cut else _trim(ext)
