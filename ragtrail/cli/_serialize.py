"""Records as plain dictionaries, and the machine formats built on them: JSON, JSON Lines, CSV.

Each dictionary carries every record field (``Severity`` by name, times also as UTC ISO-8601 with
microseconds beside the exact integer), so what ``--json`` prints and ``export`` writes can be
read back into the same records.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

from ragtrail._finite import finite
from ragtrail._records import (
    MetricsSample,
    Record,
    SecurityEvent,
    Severity,
    SpanEvent,
    SpanRecord,
)
from ragtrail.cli._table import printable
from ragtrail.cli._views import format_time

__all__ = ["field_names", "json_elements", "record_dict", "write_csv", "write_json",
           "write_json_array", "write_jsonl"]

# The readable time added in front of each kind's exact microsecond field.
_TIME_FIELDS: Mapping[type[Any], tuple[str, str]] = {
    SecurityEvent: ("time", "time_us"),
    SpanRecord: ("start_time", "start_us"),
    MetricsSample: ("time", "time_us"),
}


def field_names(kind: type[Record]) -> list[str]:
    """The keys of :func:`record_dict` for a record type, in order (the CSV header)."""
    return [_TIME_FIELDS[kind][0], *(f.name for f in dataclasses.fields(kind))]


# Each dataclass's field names and a getter of their values, built once: dataclasses.fields()
# and is_dataclass() on every value were most of an export's time (a 1,000,000-event export:
# 70 s, 49 s without them).
_FIELDS = {kind: (names, operator.attrgetter(*names)) for kind, names in (
    (kind, tuple(f.name for f in dataclasses.fields(kind)))
    for kind in (SecurityEvent, SpanRecord, MetricsSample, SpanEvent))}
_AS_IS = frozenset({str, int, float, bool, dict, type(None)})


def _fields(value: Any) -> dict[str, Any]:
    names, values = _FIELDS[type(value)]
    return dict(zip(names, [item if type(item) in _AS_IS else _plain(item)
                            for item in values(value)], strict=True))


def _plain(value: Any) -> Any:
    if isinstance(value, Severity):
        return str(value)
    if type(value) in _FIELDS:
        return _fields(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def record_dict(record: Record) -> dict[str, Any]:
    """Every field of ``record`` as JSON-ready values, led by its time in ISO-8601."""
    label, source = _TIME_FIELDS[type(record)]
    plain: dict[str, Any] = {label: format_time(getattr(record, source), "microseconds")}
    plain.update(_fields(record))
    return plain


def _encoder(**options: Any) -> Callable[[Any], str]:
    """A JSON encoder built once (json.dumps with options builds one a call)."""
    # default=str: metadata written by an older or foreign writer may hold odd values;
    # showing them as text beats refusing to print the audit trail.
    strict = json.JSONEncoder(default=str, allow_nan=False, **options).encode
    lenient = json.JSONEncoder(default=str, **options).encode

    def encode(value: Any) -> str:
        try:
            return strict(value)
        except ValueError:  # a NaN or an infinity: not JSON (RFC 8259); strict parsers refuse
            return lenient(finite(value))

    return encode


class _WholeWrites:
    """Writes to ``out`` in pieces its buffer holds, so that output cut short raises.

    CPython's BufferedWriter passes a write larger than its buffer straight to the file, and
    when that is cut short (the reader of a pipe gone, a file-size limit, a full disk) returns
    the short count, which TextIOWrapper drops: ``--json | head`` exited 0 with the document
    cut. Buffered pieces are flushed by a loop that raises the error instead.
    """

    _PIECE = 2048  # characters: at most 8 KiB of UTF-8, the default buffer

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        for start in range(0, len(text), self._PIECE):
            self._out.write(text[start:start + self._PIECE])
        return len(text)


_DOCUMENT = _encoder(indent=2)
_LINE = _encoder(separators=(",", ":"))
_CELL = _encoder(separators=(",", ":"), sort_keys=True)


def write_json(value: Any, out: TextIO) -> None:
    """One JSON document (what ``--json`` prints)."""
    _WholeWrites(out).write(_DOCUMENT(value) + "\n")


def json_elements(values: list[Any]) -> str:
    """``values`` as the elements of the array :func:`write_json` writes, indented as there,
    without the brackets: the pieces of :func:`write_json_array`."""
    # One encoder call for many values: the indenting encoder is pure Python (CPython 3.11),
    # and building it for each record cost a fifth of a 200,000-record --json.
    return _DOCUMENT(values)[len("[\n  "):-len("\n]")] if values else ""


def write_json_array(pieces: Iterable[str], out: TextIO) -> None:
    """The array :func:`write_json` writes for a list, from :func:`json_elements` pieces,
    written as they come: memory stays flat however long the list."""
    whole = _WholeWrites(out)
    opening = "[\n  "
    for piece in pieces:
        if piece:
            whole.write(opening + piece)
            opening = ",\n  "
    whole.write("[]\n" if opening == "[\n  " else "\n]\n")


def write_jsonl(records: Iterable[Record], out: TextIO) -> None:
    """One compact JSON object a line (JSON Lines)."""
    whole = _WholeWrites(out)
    for record in records:
        whole.write(_LINE(record_dict(record)) + "\n")


# Spreadsheets run a cell that starts with one of these as a formula, and stored text can be
# attacker-chosen, so such text gets a leading apostrophe (OWASP, "CSV Injection"). The tab,
# carriage return and NUL that OWASP and ASVS 1.2.10 also list never start a cell here:
# printable() has escaped them. Leading spaces are looked past: importers that trim them
# (LibreOffice's "Trim spaces") would otherwise uncover the formula.
_FORMULA_STARTS = ("=", "+", "-", "@")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        # Escaped, not raw: a line break inside a quoted cell is valid CSV but splits the row
        # for grep, wc -l and line-based log shippers, and an escape sequence would drive a
        # terminal the CSV is printed on.
        text = printable(value)
        return "'" + text if text.lstrip(" ").startswith(_FORMULA_STARTS) else text
    if isinstance(value, (dict, list)):
        return _CELL(value)  # ASCII JSON text, starting with { or [
    if isinstance(value, float) and not math.isfinite(value):
        return ""  # csv writes "-inf", which a spreadsheet runs; JSON writes null (finite)
    return value  # a number stays a number, negative or not: it cannot hold a formula


def write_csv(kind: type[Record], records: Iterable[Record], out: TextIO) -> None:
    """RFC 4180 CSV with a header, for spreadsheets.

    JSON fields (metadata, attributes, events) are JSON text; text that a spreadsheet would
    run as a formula starts with an apostrophe; control and bidi characters are shown escaped,
    as in the tables, so one record is one line. Stored text can be a client's. JSON Lines is
    the lossless format.
    """
    writer = csv.writer(_WholeWrites(out))
    writer.writerow(field_names(kind))
    for record in records:
        writer.writerow([_csv_cell(value) for value in record_dict(record).values()])
