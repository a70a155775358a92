"""What a file really is, from its bytes: magic numbers, executables, and the text formats.

The claimed type (the extension) is attacker input; the content decides. Executables are
recognised by their headers whatever the name says: PE (``MZ`` with a binary DOS header),
ELF, Mach-O (thin and fat) and ``#!`` scripts.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
from collections import Counter
from typing import BinaryIO

__all__ = [
    "EXECUTABLE_TYPES", "JSON_PARSED_BYTES", "TEXT_TYPES", "Utf8Check", "check_text_format",
    "magic_type",
]

EXECUTABLE_TYPES = frozenset({"pe-executable", "elf-executable", "mach-o-executable", "script"})
TEXT_TYPES = frozenset({"text", "markdown", "html", "json", "csv"})

# (prefix, type). Order matters only where prefixes overlap; none do.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "elf-executable"),
    (b"\xfe\xed\xfa\xce", "mach-o-executable"),  # 32-bit big-endian
    (b"\xfe\xed\xfa\xcf", "mach-o-executable"),  # 64-bit big-endian
    (b"\xce\xfa\xed\xfe", "mach-o-executable"),  # 32-bit little-endian
    (b"\xcf\xfa\xed\xfe", "mach-o-executable"),  # 64-bit little-endian
    (b"\xca\xfe\xba\xbe", "mach-o-executable"),  # universal (fat) binary; also Java classes
    (b"%PDF-", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty archive
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2"),  # legacy Office, MSI, encrypted OOXML
    (b"\x1f\x8b", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF8", "gif"),
    (b"\x00asm", "wasm"),
)
_UTF8_BOM = codecs.BOM_UTF8
# Parsing builds Python objects of about 25 times the file's size (a 50 MiB "[{},{},...]"
# took 1.3 GB and held the GIL for seconds): larger JSON is checked as the other text formats
# are (strict UTF-8, no NUL, already done) and by how it starts.
JSON_PARSED_BYTES = 4 * 1024 * 1024
_JSON_STARTS = frozenset(b'{["-0123456789tfn')
_CSV_DELIMITERS = ",;\t|"
_CSV_SAMPLE_ROWS = 1000
_CSV_MIN_CONSISTENCY = 0.9


def magic_type(head: bytes) -> str | None:
    """The type the first bytes announce, or None when they announce nothing known."""
    if head.startswith(b"MZ") and b"\x00" in head[2:64]:
        # A DOS/PE header is binary; a text file may well start with the letters "MZ".
        return "pe-executable"
    body = head[len(_UTF8_BOM):] if head.startswith(_UTF8_BOM) else head
    if body.startswith(b"#!"):
        return "script"
    for prefix, kind in _MAGIC:
        if head.startswith(prefix):
            return kind
    return None


class Utf8Check:
    """Strict UTF-8 and no NUL, fed chunk by chunk while the file is hashed."""

    __slots__ = ("_decoder", "_offset", "problem")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._offset = 0
        self.problem: str | None = None

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        if self.problem is not None:
            return
        nul = chunk.find(b"\x00")
        if nul >= 0:
            self.problem = f"NUL byte at offset {self._offset + nul}"
            return
        try:
            self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            self.problem = f"invalid UTF-8 at offset {self._offset + exc.start}"
        self._offset += len(chunk)


def check_text_format(kind: str, f: BinaryIO) -> str | None:
    """Why an already UTF-8-clean file is not valid ``kind``, or None if it is.

    ``text`` and ``markdown`` need nothing more. HTML must start with a tag, JSON must parse
    (up to ``JSON_PARSED_BYTES``; beyond, it must start as a JSON value does), CSV must have
    a consistent number of columns in its first rows.
    """
    f.seek(0)
    if kind == "html":
        start = f.read(4096).removeprefix(_UTF8_BOM).lstrip()
        return None if start.startswith(b"<") else "HTML does not start with a tag"
    if kind == "json":
        data = f.read(JSON_PARSED_BYTES + 1)
        if len(data) <= JSON_PARSED_BYTES:
            return _check_json(data)
        start = data.removeprefix(_UTF8_BOM).lstrip()[:1]
        return None if start and start[0] in _JSON_STARTS else "JSON does not start with a value"
    if kind == "csv":
        return _check_csv(f)
    return None


def _check_json(data: bytes) -> str | None:
    try:
        json.loads(data.decode("utf-8-sig"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"not valid JSON: {type(exc).__name__} at position {getattr(exc, 'pos', '?')}"
    except RecursionError:
        return "not valid JSON: nested too deeply"
    return None


def _check_csv(f: BinaryIO) -> str | None:
    best = 0.0
    first_error: str | None = None
    for delimiter in _CSV_DELIMITERS:
        f.seek(0)
        text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
        try:
            reader = csv.reader(text, delimiter=delimiter, strict=True)
            widths = Counter(
                len(row) for row in itertools.islice(reader, _CSV_SAMPLE_ROWS) if row)
        except csv.Error as exc:
            problem: str | None = f"not valid CSV: {exc}"
            widths = Counter()
        else:
            problem = None
        finally:
            text.detach()  # leave the binary file open for the caller
        if problem is not None:
            first_error = first_error or problem
            continue
        total = sum(widths.values())
        if total == 0:
            return "CSV has no rows"
        width, rows = widths.most_common(1)[0]
        if width == 1 and delimiter != _CSV_DELIMITERS[0]:
            continue  # one column under every other delimiter says nothing
        best = max(best, rows / total)
        if best >= _CSV_MIN_CONSISTENCY:
            return None
    if best == 0.0:
        return first_error or "not valid CSV"
    return f"CSV rows have inconsistent column counts (at most {best:.0%} agree)"
