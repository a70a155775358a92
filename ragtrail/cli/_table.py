"""Aligned plain-text tables that stay aligned and safe whatever the stored text contains.

Stored descriptions and attributes can hold attacker-chosen text (a prompt injection, a file
name), so every cell is made printable first: control and bidi characters are shown escaped,
never sent to the terminal.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "COUNT", "ELLIPSIS", "Column", "format_row", "printable", "render_table", "titled_table",
    "truncate",
]

ELLIPSIS = "…"
_GAP = "  "


@dataclass(frozen=True, slots=True)
class Column:
    """A table column. ``max_width`` None means never truncated (IDs people copy and paste).

    ``stream_width`` is the width used when rows arrive one by one (``tail``) and the table
    cannot be sized to its content.
    """

    header: str
    max_width: int | None = None
    right: bool = False
    stream_width: int = 0


COUNT = Column("COUNT", right=True)


def printable(text: str) -> str:
    r"""The text with every non-printable character escaped as Python would show it.

    >>> printable("a\nb\x1b[31m")
    'a\\nb\\x1b[31m'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _width(text: str) -> int:
    """Terminal columns taken by printable text: wide East Asian characters take two."""
    if text.isascii():
        return len(text)
    return sum(_char_width(c) for c in text)


def _char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in {"W", "F"} else 1


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, ending in an ellipsis when anything was cut."""
    if _width(text) <= width:
        return text
    kept: list[str] = []
    used = 0
    for char in text:
        char_width = _char_width(char)
        if used + char_width > width - 1:
            break
        kept.append(char)
        used += char_width
    return "".join(kept) + ELLIPSIS


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - _width(text))
    return fill + text if right else text + fill


def format_row(columns: Sequence[Column], widths: Sequence[int], cells: Sequence[str]) -> str:
    """One line: cells made printable, cut to their width, padded (the last one is not)."""
    parts: list[str] = []
    last = len(columns) - 1
    for index, (column, width, cell) in enumerate(zip(columns, widths, cells, strict=True)):
        text = printable(cell)
        if column.max_width is not None:
            text = truncate(text, width)
        parts.append(text if index == last and not column.right else
                     _pad(text, width, column.right))
    return _GAP.join(parts).rstrip(" ")


def render_table(columns: Sequence[Column], rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """A header line and one line per row, each column as wide as its widest cell."""
    cleaned = [[printable(cell) for cell in row] for row in rows]
    widths = []
    for index, column in enumerate(columns):
        width = max([_width(column.header), *(_width(row[index]) for row in cleaned)])
        if column.max_width is not None:
            width = min(width, max(column.max_width, _width(column.header)))
        widths.append(width)
    yield format_row(columns, widths, [column.header for column in columns])
    for row in cleaned:
        yield format_row(columns, widths, row)


def titled_table(title: str, columns: Sequence[Column], rows: Iterable[Sequence[str]],
                 *, indent: str = "") -> Iterator[str]:
    """A blank line, ``title``, then the table (each line after ``indent``): one report
    section, as ``ragtrail stats`` and the demo's report print them."""
    yield ""
    yield title
    yield from (indent + line for line in render_table(columns, rows))
