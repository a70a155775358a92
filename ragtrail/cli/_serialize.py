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
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from ragtrail._records import MetricsSample, Record, SecurityEvent, Severity, SpanRecord
from ragtrail.cli._table import printable
from ragtrail.cli._views import format_time

__all__ = ["field_names", "record_dict", "write_csv", "write_json", "write_jsonl"]

# The readable time added in front of each kind's exact microsecond field.
_TIME_FIELDS: Mapping[type[Any], tuple[str, str]] = {
    SecurityEvent: ("time", "time_us"),
    SpanRecord: ("start_time", "start_us"),
    MetricsSample: ("time", "time_us"),
}


def field_names(kind: type[Record]) -> list[str]:
    """The keys of :func:`record_dict` for a record type, in order (the CSV header)."""
    return [_TIME_FIELDS[kind][0], *(f.name for f in dataclasses.fields(kind))]


def _plain(value: Any) -> Any:
    if isinstance(value, Severity):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def record_dict(record: Record) -> dict[str, Any]:
    """Every field of ``record`` as JSON-ready values, led by its time in ISO-8601."""
    label, source = _TIME_FIELDS[type(record)]
    plain: dict[str, Any] = {label: format_time(getattr(record, source), "microseconds")}
    plain.update(_plain(record))
    return plain


def _dumps(value: Any, **options: Any) -> str:
    # default=str: metadata written by an older or foreign writer may hold odd values;
    # showing them as text beats refusing to print the audit trail.
    try:
        return json.dumps(value, default=str, allow_nan=False, **options)
    except ValueError:  # a NaN or an infinity: not JSON (RFC 8259), and strict parsers refuse
        return json.dumps(_finite(value), default=str, **options)


def _finite(value: Any) -> Any:
    """``value`` with every NaN and infinity as None, as the store's orjson encoder keeps
    them: the standard encoder stores them as ``NaN``/``Infinity`` (_json.py)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


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


def write_json(value: Any, out: TextIO) -> None:
    """One JSON document (what ``--json`` prints)."""
    _WholeWrites(out).write(_dumps(value, indent=2) + "\n")


def write_jsonl(records: Iterable[Record], out: TextIO) -> None:
    """One compact JSON object a line (JSON Lines)."""
    whole = _WholeWrites(out)
    for record in records:
        whole.write(_dumps(record_dict(record), separators=(",", ":")) + "\n")


# Spreadsheets run a cell that starts with one of these as a formula, and stored text can be
# attacker-chosen, so such text gets a leading apostrophe (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return _dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _terminal_cell(value: Any) -> Any:
    cell = _csv_cell(value)
    return printable(cell) if isinstance(cell, str) else cell


def write_csv(kind: type[Record], records: Iterable[Record], out: TextIO) -> None:
    """RFC 4180 CSV with a header, for spreadsheets.

    JSON fields (metadata, attributes, events) are JSON text; text that a spreadsheet would
    run as a formula starts with an apostrophe. JSON Lines is the lossless format. On a
    terminal, control and bidi characters are shown escaped, as in the tables: stored text can
    be a client's, and an escape sequence in it would drive the terminal.
    """
    writer = csv.writer(_WholeWrites(out))
    writer.writerow(field_names(kind))
    cell = _terminal_cell if out.isatty() else _csv_cell
    for record in records:
        writer.writerow([cell(value) for value in record_dict(record).values()])
