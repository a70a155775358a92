"""Where the value of a key that names a secret ends, in free text.

One token after ``password=``; the rest of the line after ``Authorization:``; a quoted string
through its closing quote; a whole list (``api_keys=[...]``); a value alone on the next line;
a YAML block scalar or block list. Each is found with linear-time patterns and bounded loops
(see ``_secrets``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragtrail.instrument._secrets import KeyKind, Span

__all__ = ["looks_random", "value_spans"]

# A quoted value runs to its closing quote, past escaped ones ("a\"b" is one value): a value
# cut at an escaped quote would leave the rest of a password in the clear.
_QUOTED = r"\"((?:[^\"\\\r\n]|\\.){1,4096})|'((?:[^'\\\r\n]|\\.){1,4096})"
_VALUE = re.compile(
    r"[ \t]{0,3}(?:" + _QUOTED +
    r"|((?:(?i:bearer|basic|digest|token)[ \t]{1,8})?[^\s\"'&,;<>()\[\]{}]{1,4096}))")
_LINE_VALUE = re.compile(r"[ \t]{0,3}(?:" + _QUOTED + r"|([^\r\n\"']{1,4096}))")
# A key ending its line ("password:" in YAML, a config dump, an error message) may have its
# value alone on the next, indented line.
_NEXT_LINE = re.compile(r"[ \t]{0,3}\r?\n[ \t]{1,32}")
# YAML blocks under a key: a block scalar ("password: |", ">-", "|2") runs over the lines
# indented deeper than the key's; a block list ("api_keys:" then "- k1" lines) may also stand
# at the key's own indentation.
_BLOCK_SCALAR = re.compile(r"[ \t]{0,3}[|>][1-9+-]{0,2}[ \t]{0,8}(?=\r?\n)")
_BLOCK_LIST = re.compile(r"[ \t]{0,3}\r?\n(?=([ \t]{0,32})-[ \t])")
_INDENT = re.compile(r"[ \t]*")
# What may follow a value that is alone on its line: its closing quote and blanks.
_LINE_END = re.compile(r"[\"']?[ \t]{0,8}(?:[\r\n]|\Z)")
# A list value (Python repr, JSON): "password=[a, b]", '"api_keys": ["k1", "k2"]'.
_LIST_START = re.compile(r"[ \t]{0,3}\[")
_LIST_EVENT = re.compile(r"[\[\]\"']")
_MAX_LIST = 4096  # characters a list value may span, as a single value
# The rest of a quoted list item, through its closing quote (never past its line).
_ITEM_REST = {quote: re.compile(rf"(?:[^{quote}\\\r\n]|\\.){{0,{_MAX_LIST}}}{quote}")
              for quote in "\"'"}
_LINE_BREAK = re.compile(r"[\r\n]")
# A weak key's value never contains ":" or "=" (bar base64 padding), so a value that is not
# redacted ends before the next separator and no text is scanned twice.
_WEAK_VALUE = re.compile(r"[ \t]{0,3}[\"']?([A-Za-z0-9+/_.-]{16,1024}={0,2})")
_RANDOM_LOOKING = re.compile(r"[A-Za-z0-9+/_.-]{16,}={0,2}")
_DIGIT = re.compile(r"[0-9]")
_LETTER = re.compile(r"[A-Za-z]")


def value_spans(text: str, at: int, floor: int, kind: KeyKind) -> Iterator[Span]:
    """The value (at most one span) of the ``kind`` key whose separator ends at ``at``; text
    before ``floor`` is already redacted."""
    block = _yaml_block(text, at, floor) if kind != "weak" else None
    if block is not None:
        yield block
        return
    next_line = _NEXT_LINE.match(text, at)
    start = at if next_line is None else next_line.end()
    opening = _LIST_START.match(text, start) if kind == "any" else None
    if opening is not None:  # redacted wherever it stands: no list is read twice
        yield opening.end() - 1, _list_end(text, opening.end() - 1)
        return
    span = _value(text, start, kind, same_line=next_line is None)
    if span is not None and (next_line is None or _alone_on_its_line(text, span[1])):
        yield span


def _value(text: str, start: int, kind: KeyKind, *, same_line: bool) -> Span | None:
    """The value of a ``kind`` key starting at ``start`` (after up to three blanks), if any.

    A ``line`` key's value runs to the end of its own line; on the next line it is one token,
    like any key's, so that code under ``if cookie:`` is not taken whole.
    """
    if kind == "weak":
        pattern = _WEAK_VALUE
    elif kind == "line" and same_line:
        pattern = _LINE_VALUE
    else:
        pattern = _VALUE
    value = pattern.match(text, start)
    if value is None:
        return None
    group = value.lastindex or 0
    if kind == "weak" and not looks_random(value.group(group)):
        return None
    return value.span(group)


def _yaml_block(text: str, at: int, floor: int) -> Span | None:
    """The content lines of a YAML block scalar or block list after the key ending at ``at``,
    from the first one's first character to the last one's end; None if there is none."""
    scalar = _BLOCK_SCALAR.match(text, at)
    if scalar is not None:
        return _block_lines(text, scalar.end(), _indent(text, at, floor), list_items=False)
    items = _BLOCK_LIST.match(text, at)
    if items is None:
        return None
    indent = _indent(text, at, floor)
    if len(items.group(1)) < indent:
        return None
    return _block_lines(text, items.end(), indent, list_items=True)


def _indent(text: str, at: int, floor: int) -> int:
    """How far the line holding ``at`` is indented (counted from ``floor`` at most)."""
    line_start = max(floor, text.rfind("\n", floor, at) + 1)
    return _skip_blanks(text, line_start, at) - line_start


def _block_lines(text: str, start: int, indent: int, *, list_items: bool) -> Span | None:
    """The block's lines from ``start``: blank ones, those indented deeper than ``indent``,
    and with ``list_items`` those at ``indent`` that begin ``- ``; at most ``_MAX_LIST``
    characters."""
    limit = min(len(text), start + _MAX_LIST)
    first = last = -1
    at = start
    while at < limit:
        line_break = text.find("\n", at, limit)
        line_end = limit if line_break < 0 else line_break
        content = _skip_blanks(text, at, line_end)
        if content < line_end and text[content] != "\r":
            depth = content - at
            if depth < indent or (depth == indent and not (
                    list_items and text.startswith(("- ", "-\t"), content))):
                break
            first = content if first < 0 else first
            last = line_end - 1 if text[line_end - 1] == "\r" else line_end
        at = line_end + 1
    return None if first < 0 else (first, last)


def _skip_blanks(text: str, start: int, end: int) -> int:
    blanks = _INDENT.match(text, start, end)
    return start if blanks is None else blanks.end()


def _alone_on_its_line(text: str, end: int) -> bool:
    """Whether a value ending at ``end``, found on the line after its key, is all that line
    holds: not a nested ``key:``, nor the first word of code under ``with ... as session:``."""
    return text[end - 1] != ":" and _LINE_END.match(text, end) is not None


def _list_end(text: str, start: int) -> int:
    """Where the list opening at ``start`` closes, past nested lists and quoted items (a "]"
    inside a quoted item is part of a secret). A list left open (cut text) runs to the end of
    the text, at most ``_MAX_LIST`` characters.

    A quote not closed on its line is an ordinary character, and so are the same quotes up to
    that line's end (all escaped): the line is scanned once, not once per quote.
    """
    limit = min(len(text), start + _MAX_LIST)
    depth = 0
    plain_until = {'"': start, "'": start}
    at = start
    while (event := _LIST_EVENT.search(text, at, limit)) is not None:
        char, at = event.group(), event.end()
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if not depth:
                return at
        elif at > plain_until[char]:
            item = _ITEM_REST[char].match(text, at, limit)
            if item is not None:
                at = item.end()
            else:
                line_break = _LINE_BREAK.search(text, at, limit)
                plain_until[char] = limit if line_break is None else line_break.start()
    return limit


def looks_random(value: str) -> bool:
    """A long token of base64/hex characters with letters and digits: a key, not a word."""
    return (len(value) <= 4096 and _RANDOM_LOOKING.fullmatch(value) is not None
            and _DIGIT.search(value) is not None and _LETTER.search(value) is not None)
