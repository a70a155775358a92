"""Recognise hostile request targets and header values, cheaply enough for every request.

A clean target costs one regex search; only a target holding ``%``, ``..``, ``\\``, CR, LF,
NUL or non-ASCII bytes is decoded, up to three times so double and triple percent-encoding
(``%252e%252e%252f``) are seen through, as the OWASP path traversal guide describes; overlong
UTF-8 and fullwidth lookalikes of ``.`` and ``/`` count as traversal too.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_URL_BYTES",
    "Finding",
    "ascii_int",
    "header_finding",
    "id_digest",
    "printable",
    "target_findings",
    "unsafe_header_text",
    "unsafe_header_value",
]

# Above these, a URL or a single header value is an attack or a bug: nginx's default
# large_client_header_buffers caps a request line or header line at 8 KiB.
MAX_URL_BYTES = 8192
MAX_HEADER_BYTES = 8192

TRAVERSAL = "malicious_path_traversal"
INJECTION = "malicious_header_injection"
INVALID = "input_validation_fail"

# A ".." path segment, delimited by / or \ (Windows) or ; (path parameters, "..;/").
_PATH_DOTDOT = re.compile(rb"(?:^|[/\\;])\.\.(?:[/\\;]|$)")
# In a query, a value may start with "..": after "=" or "&".
_QUERY_DOTDOT = re.compile(rb"(?:^|[/\\=&])\.\.(?:[/\\&]|$)")
# IIS-style %uXXXX escapes of ".", "/", "\" and their fullwidth forms.
_U_ESCAPE = re.compile(rb"%u(?:002e|002f|005c|2215|2216|ff0e|ff0f|ff3c)", re.IGNORECASE)
# Overlong UTF-8 (RFC 3629 section 3 forbids them): C0/C1 leads, E0 80-9F, F0 80-8F.
_OVERLONG = re.compile(rb"[\xc0\xc1][\x80-\xbf]|\xe0[\x80-\x9f][\x80-\xbf]|\xf0[\x80-\x8f]")
# The UTF-8 of the fullwidth and mathematical lookalikes of ".", "/" and "\\" (U+FF0E, U+FF0F,
# U+FF3C, U+2215, U+2216), which a server or file system normalising to NFKC (Windows, some
# Unicode-aware routers) reads as the ASCII ones: a traversal that no ASCII test sees.
_LOOKALIKE = re.compile(rb"\xef\xbc[\x8e\x8f\xbc]|\xe2\x88[\x95\x96]")
_ASCII_OF = {b"\xef\xbc\x8e": b".", b"\xef\xbc\x8f": b"/", b"\xef\xbc\xbc": b"\\",
             b"\xe2\x88\x95": b"/", b"\xe2\x88\x96": b"\\"}
_DECODE_ROUNDS = 3
# One regex search is cheaper than the eight membership tests it stands for on this hot
# path (for three, ``unsafe_header_value`` shows the opposite).
_SUSPICIOUS = re.compile(rb"[%\\\x00\r\n\x80-\xff]|\.\.").search


@dataclass(frozen=True, slots=True)
class Finding:
    """One hostile trait of a request: the event type to record and where it was seen."""

    event_type: str
    description: str
    location: str


def target_findings(raw_path: bytes, query: bytes) -> list[Finding]:
    """Traversal, NUL, CR/LF and overlong-UTF-8 in the undecoded path and query; URL size."""
    findings: list[Finding] = []
    if len(raw_path) + len(query) > MAX_URL_BYTES:
        findings.append(Finding(INVALID, f"URL longer than {MAX_URL_BYTES} bytes", "url"))
    if _SUSPICIOUS(raw_path):
        findings.extend(_decoded_findings(raw_path, "path", _PATH_DOTDOT, crlf=True,
                                          lookalikes=True))
    if query and _SUSPICIOUS(query):
        # CR/LF in a query may be a legitimate multi-line form field; in a path it is not.
        # Lookalikes only in the path: two fullwidth full stops are plausible search text.
        findings.extend(_decoded_findings(query, "query", _QUERY_DOTDOT, crlf=False,
                                          lookalikes=False))
    return findings


def unsafe_header_value(value: bytes) -> bool:
    """CR, LF or NUL in a header value. Three byte searches (memchr) cost a third of one
    regex search of a character class; bytes are searched for ints, not one-byte strings,
    which would first fail (and clear) an int conversion each."""
    return 13 in value or 10 in value or 0 in value


def unsafe_header_text(text: str) -> bool:
    """CR, LF or NUL in a header value given as text (WSGI); see ``unsafe_header_value``."""
    return "\r" in text or "\n" in text or "\x00" in text


def header_finding(name: str, value: bytes | str) -> Finding | None:
    """CR/LF (response splitting), NUL or an oversized value in one request header."""
    if isinstance(value, str):
        bad_crlf = "\r" in value or "\n" in value
        bad_nul = "\x00" in value
    else:
        bad_crlf = b"\r" in value or b"\n" in value
        bad_nul = b"\x00" in value
    location = "header:" + printable(name, 64)
    if bad_crlf:
        return Finding(INJECTION, "CR or LF in a request header value", location)
    if bad_nul:
        return Finding(INVALID, "NUL byte in a request header value", location)
    if len(value) > MAX_HEADER_BYTES:
        return Finding(INVALID, f"request header longer than {MAX_HEADER_BYTES} bytes", location)
    return None


def _decoded_findings(data: bytes, location: str, dotdot: re.Pattern[bytes], *,
                      crlf: bool, lookalikes: bool) -> list[Finding]:
    found: dict[str, Finding] = {}
    for decoded_times in range(_DECODE_ROUNDS + 1):
        if TRAVERSAL not in found and (dotdot.search(data) or _U_ESCAPE.search(data)
                                       or _OVERLONG.search(data)
                                       or (lookalikes and _lookalike_traversal(data, dotdot))):
            found[TRAVERSAL] = Finding(TRAVERSAL, f"path traversal sequence in the {location}",
                                       location)
        if INVALID not in found and b"\x00" in data:
            found[INVALID] = Finding(INVALID, f"NUL byte in the {location}", location)
        if crlf and INJECTION not in found and (b"\r" in data or b"\n" in data):
            found[INJECTION] = Finding(INJECTION, f"CR or LF in the {location}", location)
        if b"%" not in data or decoded_times == _DECODE_ROUNDS:
            break
        decoded = unquote_to_bytes(data)
        if decoded == data:
            break
        data = decoded
    return list(found.values())


def _lookalike_traversal(data: bytes, dotdot: re.Pattern[bytes]) -> bool:
    if (b"\xef" not in data and b"\xe2" not in data) or _LOOKALIKE.search(data) is None:
        return False
    return dotdot.search(_LOOKALIKE.sub(lambda m: _ASCII_OF[m.group()], data)) is not None


def printable(text: str, limit: int) -> str:
    """``text`` safe to store and show: control characters escaped, at most ``limit`` chars.

    >>> printable("a\\r\\nb", 10)
    'a\\\\r\\\\nb'
    """
    if len(text) <= limit and text.isprintable():
        return text
    escaped = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text[:limit])
    return escaped[:limit] + ("..." if len(text) > limit or len(escaped) > limit else "")


def ascii_int(text: str) -> int | None:
    """HTTP's ``1*DIGIT`` as an int, else None; ``"²"`` or ``"٣"`` are not digits there.

    Past 18 digits the value is clamped to 10**18, beyond any limit (and int() refuses
    very long digit strings).
    """
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= 18 else 10**18


def id_digest(value: str) -> str:
    """A short SHA-256 of a rejected correlation ID: enough to match reports, not to read it."""
    raw = value.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:16]
