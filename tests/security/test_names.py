"""Filename sanitisation and escaping of untrusted text."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrail.security import escape_text, sanitize_filename
from ragtrail.security._names import MAX_NAME_BYTES, split_extension


@pytest.mark.parametrize(("raw", "expected"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\Windows\\system32\\evil.dll", "evil.dll"),
    ("C:\\Users\\ann\\Desktop\\notes.txt", "notes.txt"),
    ("a\x00b.pdf", "a_b.pdf"),
    ("line\r\nbreak.txt", "line__break.txt"),
    ("\x1b[31mred.md", "_[31mred.md"),
    ("invoice\u202efdp.exe", "invoice_fdp.exe"),  # right-to-left override hides ".exe"
    ("zero\u200bwidth.txt", "zero_width.txt"),
    ("..", "unnamed"),
    (".", "unnamed"),
    ("", "unnamed"),
    ("/", "unnamed"),
    ("...", "unnamed"),
    (".htaccess", "htaccess"),
    ("report.pdf. . .", "report.pdf"),
    ("  spaced.md  ", "spaced.md"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("Com1.tar.gz", "_Com1.tar.gz"),
    ("lpt9", "_lpt9"),
    ("nul .txt", "_nul .txt"),
    ("console.txt", "console.txt"),
    ("a<b>c:d|e?f*g\"h.csv", "a_b_c_d_e_f_g_h.csv"),
    ("cafe\u0301.md", "caf\u00e9.md"),  # NFC: e + combining acute becomes one character
])
def test_sanitize_filename_examples(raw: str, expected: str) -> None:
    """Separators, traversal, controls, bidi tricks, devices and dots are neutralised."""
    assert sanitize_filename(raw) == expected


def test_overlong_name_is_truncated_keeping_the_extension() -> None:
    """A 1,000-character name is cut to 255 UTF-8 bytes and keeps ``.pdf``."""
    name = sanitize_filename("é" * 1000 + ".pdf")
    assert name.endswith(".pdf")
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert name == "é" * ((MAX_NAME_BYTES - 4) // 2) + ".pdf"


def test_overlong_extension_is_not_kept_whole() -> None:
    """An "extension" of 300 characters is just more name, truncated like the rest."""
    name = sanitize_filename("a." + "x" * 300)
    assert len(name.encode()) == MAX_NAME_BYTES
    assert name.startswith("a.xxx")


def test_truncation_cannot_expose_a_device_name() -> None:
    """Cutting "con<spaces>...x.txt" down to "con.txt" still gets the device prefix."""
    name = sanitize_filename("con" + " " * 300 + "x.txt")
    assert name == "_con.txt"


def test_custom_limit_and_minimum() -> None:
    """``max_bytes`` is honoured, and a limit too small to be useful is refused."""
    assert len(sanitize_filename("x" * 100 + ".md", max_bytes=40).encode()) == 40
    with pytest.raises(ValueError, match="at least 32"):
        sanitize_filename("a.md", max_bytes=8)


def test_split_extension() -> None:
    """The last dot splits; a leading dot is not an extension."""
    assert split_extension("a.tar.gz") == ("a.tar", ".gz")
    assert split_extension("README") == ("README", "")
    assert split_extension(".bashrc") == (".bashrc", "")


_UNSAFE = {"/", "\\", "\x00"}


@settings(max_examples=3000, deadline=None)
@given(st.text(max_size=600))
def test_sanitized_names_are_always_safe(raw: str) -> None:
    """Whatever the input: one non-empty component, no separators, NUL, control or format
    characters, never "." or "..", within 255 bytes, NFC, and sanitising again changes nothing.
    """
    name = sanitize_filename(raw)
    assert name
    assert name not in {".", ".."}
    assert not _UNSAFE & set(name)
    assert all(unicodedata.category(ch)[0] != "C" for ch in name)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert unicodedata.normalize("NFC", name) == name
    assert not name.startswith(".")
    assert not name.endswith((".", " "))
    assert sanitize_filename(name) == name


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["CON", "con", "Nul", "COM1", "lpt3", ".", " ", "x", "txt",
                                  "/"]), max_size=12))
def test_device_names_never_survive(parts: list[str]) -> None:
    """No arrangement of device names, dots and spaces yields a Windows device name."""
    stem = sanitize_filename("".join(parts)).split(".", 1)[0].rstrip(" ").upper()
    assert stem not in {"CON", "NUL", "COM1", "LPT3"}


def test_escape_text_shows_invisible_characters() -> None:
    """Controls, bidi overrides and backslashes are escaped; printable unicode stays."""
    assert escape_text("a\nb\x1b[2J\u202e\\ é") == "a\\x0ab\\x1b[2J\\u202e\\\\ é"
    assert escape_text("x" * 20, limit=5) == "xxxxx..."


@settings(max_examples=1000, deadline=None)
@given(st.text())
def test_escaped_text_has_no_control_characters(raw: str) -> None:
    """Escaped text is safe to print: no control, format or separator characters remain."""
    assert all(unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Zl", "Zp"}
               for ch in escape_text(raw))
