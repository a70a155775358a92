"""Recognising hostile request targets and header values (ragtrail.middleware._inspection)."""

from __future__ import annotations

import pytest

from ragtrail.middleware._inspection import (
    INJECTION,
    INVALID,
    MAX_HEADER_BYTES,
    MAX_URL_BYTES,
    TRAVERSAL,
    ascii_int,
    header_finding,
    id_digest,
    printable,
    target_findings,
)


def _types(raw_path: bytes, query: bytes = b"") -> set[str]:
    return {f.event_type for f in target_findings(raw_path, query)}


@pytest.mark.parametrize("raw_path", [
    b"/static/../../etc/passwd",
    b"/static/..\\..\\windows\\win.ini",
    b"/..",
    b"/a/..;/admin",
    b"/static/%2e%2e/%2e%2e/etc/passwd",
    b"/static/%2E%2E%2Fetc%2Fpasswd",
    b"/static/..%2fetc%2fpasswd",
    b"/static/%252e%252e%252fetc%252fpasswd",  # double-encoded
    b"/static/%25252e%25252e%25252f",  # triple-encoded
    b"/static/%c0%ae%c0%ae/etc/passwd",  # overlong UTF-8 "."
    b"/static/..%c0%afetc",  # overlong UTF-8 "/"
    b"/static/%e0%80%ae%e0%80%ae/x",  # three-byte overlong "."
    b"/static/%u002e%u002e/x",  # IIS %u escapes
    b"/static/\xc0\xae\xc0\xae/x",  # raw overlong bytes
    b"/static/%EF%BC%8E%EF%BC%8E%EF%BC%8Fetc%EF%BC%8Fpasswd",  # fullwidth "../"
    b"/static/\xef\xbc\x8e\xef\xbc\x8e/x",  # raw fullwidth ".."
    b"/static/..%E2%88%95etc",  # U+2215 DIVISION SLASH
    b"/static/%25EF%25BC%258E%25EF%25BC%258E%25EF%25BC%25BC",  # double-encoded fullwidth
])
def test_traversal_in_the_path_is_recognised(raw_path: bytes) -> None:
    """Plain, Windows, path-parameter, encoded, double/triple-encoded and overlong traversal."""
    assert TRAVERSAL in _types(raw_path)


@pytest.mark.parametrize("raw_path", [
    b"/",
    b"/items/42",
    b"/files/report..final.pdf",  # ".." inside a name is not a segment
    b"/v1.2/..hidden",
    b"/search/caf%C3%A9",  # percent-encoded UTF-8
    b"/caf\xc3\xa9",  # raw UTF-8
    b"/a%20b/c%2Fd",
    b"/%e0%a4%85",  # a valid three-byte character (not overlong)
    b"/files/%EF%BC%8Enotes",  # a fullwidth full stop in a name, not a ".." segment
    b"/math/a%E2%88%95b",  # a division slash between two names
])
def test_ordinary_paths_are_clean(raw_path: bytes) -> None:
    """No false positives on names with dots, encoded spaces or non-ASCII text."""
    assert target_findings(raw_path, b"") == []


def test_traversal_in_a_query_value_is_recognised() -> None:
    """``?file=../../etc/passwd`` and its encoded form, but not dots inside a value."""
    assert _types(b"/download", b"file=../../etc/passwd") == {TRAVERSAL}
    assert _types(b"/download", b"file=%2e%2e%2f%2e%2e%2fetc") == {TRAVERSAL}
    assert _types(b"/download", b"version=1..2&sort=name") == set()


def test_fullwidth_full_stops_in_a_query_are_search_text() -> None:
    """Two fullwidth full stops (U+FF0E) are plausible Chinese or Japanese search input; only
    the path treats fullwidth lookalikes as traversal."""
    assert target_findings(b"/search", "q=\uff0e\uff0e&p=2".encode()) == []
    assert target_findings(b"/search", b"q=%EF%BC%8E%EF%BC%8E") == []


def test_nul_bytes_are_invalid_input() -> None:
    """Raw or percent-encoded NUL in path or query (poison-null-byte attacks)."""
    assert INVALID in _types(b"/files/report.pdf%00.jpg")
    assert INVALID in _types(b"/files/report.pdf\x00.jpg")
    assert INVALID in _types(b"/files", b"name=a%00b")


def test_crlf_in_the_path_is_header_injection_but_not_in_a_query() -> None:
    """Encoded CR/LF in a path splits responses that echo it; a query may hold a text field."""
    assert INJECTION in _types(b"/redirect/%0d%0aSet-Cookie:%20a=b")
    assert _types(b"/search", b"q=line1%0D%0Aline2") == set()


def test_an_overlong_url_is_invalid_input() -> None:
    """A URL over 8 KiB is recorded, whether the path or the query makes it long."""
    assert _types(b"/" + b"a" * MAX_URL_BYTES) == {INVALID}
    assert _types(b"/search", b"q=" + b"a" * MAX_URL_BYTES) == {INVALID}
    assert _types(b"/" + b"a" * (MAX_URL_BYTES - 1)) == set()


def test_each_kind_is_reported_once_per_location() -> None:
    """Repeated traversal sequences make one finding, not one per occurrence."""
    findings = target_findings(b"/../../../../%2e%2e/%252e%252e/", b"")
    assert [f.event_type for f in findings] == [TRAVERSAL]
    assert findings[0].location == "path"


@pytest.mark.parametrize(("value", "expected"), [
    (b"abc\r\nSet-Cookie: x=1", INJECTION),
    (b"abc\nx", INJECTION),
    ("abc\rx", INJECTION),
    (b"abc\x00def", INVALID),
    ("a" * (MAX_HEADER_BYTES + 1), INVALID),
    (b"Mozilla/5.0 (X11; Linux x86_64)", None),
    ("a" * MAX_HEADER_BYTES, None),
])
def test_header_values(value: bytes | str, expected: str | None) -> None:
    """CR/LF is injection, NUL and oversized values are invalid input, bytes or text alike."""
    finding = header_finding("x-test", value)
    assert (finding.event_type if finding else None) == expected
    if finding is not None:
        assert finding.location == "header:x-test"


def test_header_names_in_findings_are_escaped() -> None:
    """A hostile header name cannot smuggle control characters into the location."""
    finding = header_finding("x\r\nevil", b"a\nb")
    assert finding is not None
    assert finding.location == "header:x\\r\\nevil"


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("/items/42", 100, "/items/42"),
    ("a\r\nb\x00c", 100, "a\\r\\nb\\x00c"),
    ("bad\udc80surrogate", 100, "bad\\udc80surrogate"),
    ("caf\u00e9", 100, "caf\u00e9"),
    ("abcdef", 3, "abc..."),
    ("\x00\x00\x00\x00", 6, "\\x00\\x..."),
])
def test_printable_escapes_and_bounds(text: str, limit: int, expected: str) -> None:
    """Control characters and lone surrogates become escapes; the result is cut at ``limit``."""
    assert printable(text, limit) == expected


def test_id_digest_is_a_stable_short_hash_not_the_value() -> None:
    """The digest identifies a value without revealing it, whatever characters it holds."""
    digest = id_digest("<script>alert(1)</script>")
    assert digest == id_digest("<script>alert(1)</script>")
    assert len(digest) == 16
    assert int(digest, 16) >= 0
    assert digest != id_digest("<script>alert(2)</script>")
    assert len(id_digest("\udc80\x00")) == 16


@pytest.mark.parametrize(("text", "expected"), [
    ("42", 42), (" 7 ", 7), ("0", 0), ("\u00b2", None), ("\u0663", None), ("-1", None),
    ("1e3", None), ("", None), ("9" * 40, 10**18),
])
def test_ascii_int_accepts_only_http_digits(text: str, expected: int | None) -> None:
    """Content-Length and ports: ASCII digits only (int() would take "٣" and choke on "²")."""
    assert ascii_int(text) == expected
