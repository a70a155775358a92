"""One ``Redactor.redact`` call's walk through a value, within a byte budget.

Containers are walked to a depth and an item limit, each child gets what is left of its
parent's budget, and every piece's JSON cost is counted as it is made, so the result's JSON is
never larger than the budget whatever the input. The walk reads the redactor's caches (key
meanings, clean text) and asks it to scan text.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import re
import uuid
from collections import deque
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from ragtrail.instrument._secrets import REDACTED, escape_controls, is_card_number, looks_random

if TYPE_CHECKING:
    from ragtrail.instrument._redaction import Redactor

__all__ = ["HIDE", "HIDE_IF_RANDOM", "LOOKAHEAD", "SMALL_INT", "WALK", "KeyInfo", "Walk",
           "json_cost", "random_text"]

LOOKAHEAD = 256   # a secret straddling a cut is scanned whole if it is shorter than this
_RESERVE = 48      # room kept in a container for its "[N more items]" marker
_MIN_CHILD = 40    # smallest budget worth giving a child (fits a truncated-string marker)
_MORE = "..."      # the key of a dict's "[N more items]" entry
_REDACTED_COST = len(REDACTED) + 2
_SEQUENCES: tuple[type[Any], ...] = (
    list, tuple, set, frozenset, deque, type({}.keys()), type({}.values()), type({}.items()))
_AS_STRING = (uuid.UUID, decimal.Decimal, PurePath, complex)
SMALL_INT = 10**12  # integers this small are never card numbers (those are longer)

WALK, HIDE, HIDE_IF_RANDOM = 0, 1, 2  # what a key means for its value
# The first of a pair that names its second (a header, a form field), not prose with a score.
_PAIR_NAME = re.compile(r"-{0,2}[A-Za-z0-9_.-]{1,64}")
KeyInfo = tuple[str, int, int]  # (shown name, its JSON cost, one of the three above)


def json_cost(text: str) -> int:
    """Bytes ``text`` takes in JSON with ASCII escapes: an upper bound for any JSON encoding."""
    return len(encode_basestring_ascii(text))


def random_text(value: Any) -> bool:
    """A string that looks like a key (what a weak name such as ``signing_key`` hides)."""
    return isinstance(value, str) and looks_random(value)


class Walk:
    """One ``redact`` call: the container path (for cycles) and the options."""

    __slots__ = ("clean", "escape", "keys", "max_depth", "max_items", "path", "redactor", "scan")

    def __init__(self, redactor: Redactor, escape: bool) -> None:
        self.redactor = redactor
        self.scan = redactor._scanner.scan if redactor.enabled else None
        self.escape = escape
        self.keys = redactor._keys[escape]
        self.clean = redactor._clean[escape]
        self.max_depth = redactor._max_depth
        self.max_items = redactor._max_items
        self.path: set[int] = set()

    def value(self, value: Any, budget: int, depth: int) -> tuple[Any, int]:
        """The redacted value and its JSON cost, which never exceeds ``budget``."""
        kind = type(value)
        if kind is str:
            return self.text(value, budget, len(value))
        if value is None or kind is bool:
            return value, 5
        if kind is int:
            return self.integer(value, budget)
        if kind is float:
            return self.real(value)
        if kind is dict:
            return self.mapping(value, value.items(), budget, depth)
        if kind in (list, tuple):
            return self.sequence(value, budget, depth)
        return self.other(value, budget, depth)

    def other(self, value: Any, budget: int, depth: int) -> tuple[Any, int]:
        if isinstance(value, enum.Enum):
            return self.value(value.value, budget, depth)
        if isinstance(value, str):
            return self.text(str.__str__(value), budget, len(value))
        if isinstance(value, bool):
            return bool(value), 5
        if isinstance(value, int):
            return self.integer(int(value), budget)
        if isinstance(value, float):
            return self.real(float(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value[:budget + LOOKAHEAD])
            return self.text(raw.decode("utf-8", "replace"), budget, len(value))
        if isinstance(value, Mapping):
            return self.mapping(value, value.items(), budget, depth)
        fields = getattr(type(value), "_fields", None)
        if isinstance(value, tuple) and isinstance(fields, tuple):  # a namedtuple: its names
            # matter (``DbConfig(host, password)``), as a dataclass's do
            return self.mapping(value, zip(fields, value, strict=False), budget, depth,
                                len(value))
        if isinstance(value, _SEQUENCES):
            return self.sequence(value, budget, depth)
        if isinstance(value, (datetime.date, datetime.time)):
            return self.text(value.isoformat(), budget, 0)
        if isinstance(value, _AS_STRING):
            return self.text(str(value), budget, 0)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return self.mapping(value, fields.items(), budget, depth, len(fields))
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict) and not isinstance(value, type) and not callable(value):
            public = [(k, v) for k, v in attributes.items() if not str(k).startswith("_")]
            if public:  # a plain object's public state; private attributes stay private
                return self.mapping(value, public, budget, depth, len(public))
        return self.text(repr(value), budget, 0)

    def text(self, text: str, budget: int, length: int) -> tuple[str, int]:
        """A string within ``budget``, cut before scanning when it cannot fit anyway."""
        limit = budget - 2
        cut = len(text) > limit
        original = text
        if cut:
            text = self.redactor._cut_and_scan(text, limit)
        else:
            cost = self.clean.get(text)
            if cost is not None and cost <= budget:
                return text, cost
            if self.scan is not None:
                text = self.scan(text)
        if self.escape:
            text = escape_controls(text)
        cost = len(encode_basestring_ascii(text))
        if not cut:
            if text is original:
                self.redactor._remember_clean(text, cost, self.escape)
            if cost <= budget:
                return text, cost
        marker = f"...[truncated, {max(length, len(text))} chars]"
        room = budget - len(marker)
        text = text[:room]
        over = json_cost(text) - room
        if over > 0:  # escapes made it longer; each dropped character frees at least a byte
            text = text[:max(0, len(text) - over)]
        text += marker
        return text, json_cost(text)

    def integer(self, value: int, budget: int) -> tuple[Any, int]:
        if value.bit_length() > 64:  # str() of a huge int is slow, and refused past 4300 digits
            return self.text(f"[integer of {value.bit_length()} bits]", budget, 0)
        if (self.redactor.enabled and SMALL_INT <= abs(value) < 10**19
                and is_card_number(str(abs(value)))):
            return REDACTED, _REDACTED_COST
        return value, 20  # the longest 64-bit integer; cheaper than str() on the hot path

    @staticmethod
    def real(value: float) -> tuple[Any, int]:
        if math.isfinite(value):
            return value, 24  # the longest repr() of a finite float
        shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return shown, len(shown) + 2  # strict JSON has no NaN/Infinity literals

    def enter(self, container: object, depth: int) -> str | None:
        """A marker if the container must not be walked (too deep, or already on the path)."""
        if depth >= self.max_depth:
            return "[max depth]"
        if id(container) in self.path:
            return "[cycle]"
        self.path.add(id(container))
        return None

    def mapping(self, container: Any, items: Any, budget: int, depth: int,
                size: int | None = None) -> tuple[Any, int]:
        blocked = self.enter(container, depth)
        if blocked is not None:
            return blocked, len(blocked) + 2
        try:
            total = size if size is not None else len(container)
            out: dict[str, Any] = {}
            child: Any
            cost = 2
            keys, clean, max_items, walk = self.keys, self.clean, self.max_items, self.value
            for key, item in items:  # the hot loop of capture: kept to plain local operations
                count = len(out)
                if count >= max_items:
                    break
                info = keys.get(key)
                if info is None:
                    info = self.redactor._key_info(key, self.escape)
                name, key_cost, action = info
                if name in out:
                    name = f"{name}#{count}"
                    key_cost = json_cost(name)
                key_cost += 4 if count else 2  # ": " and ", "
                room = budget - cost - key_cost - (_RESERVE if count + 1 < total else 0)
                if room < _MIN_CHILD:
                    break
                if action and (action == HIDE or random_text(item)):
                    child, child_cost = REDACTED, _REDACTED_COST
                elif type(item) is str and (hit := clean.get(item)) is not None and hit <= room:
                    child, child_cost = item, hit
                elif type(item) is float and item - item == 0:  # finite (NaN, inf: walk)
                    child, child_cost = item, 24  # as real()
                else:
                    child, child_cost = walk(item, room, depth + 1)
                out[name] = child
                cost += key_cost + child_cost
            if len(out) < total:
                marker = f"[{total - len(out)} more items]"
                out[_MORE] = marker
                cost += json_cost(_MORE) + json_cost(marker) + 2 + (2 if len(out) > 1 else 0)
            return out, cost
        finally:
            self.path.discard(id(container))

    def sequence(self, container: Any, budget: int, depth: int) -> tuple[Any, int]:
        blocked = self.enter(container, depth)
        if blocked is not None:
            return blocked, len(blocked) + 2
        try:
            out: list[Any] = []
            cost = 2
            total, max_items, walk, clean = len(container), self.max_items, self.value, self.clean
            mapping = self.mapping
            for item in container:
                count = len(out)
                if count >= max_items:
                    break
                separator = 2 if count else 0
                room = budget - cost - separator - (_RESERVE if count + 1 < total else 0)
                if room < _MIN_CHILD:
                    break
                kind = type(item)
                if kind is str and (hit := clean.get(item)) is not None and hit <= room:
                    child, child_cost = item, hit
                elif kind is dict:  # documents: straight to the mapping walk
                    child, child_cost = mapping(item, item.items(), room, depth + 1)
                elif (kind is tuple or kind is list) and len(item) == 2 and (
                        hidden := self.hidden_pair(item, room)) is not None:
                    child, child_cost = hidden
                else:
                    child, child_cost = walk(item, room, depth + 1)
                out.append(child)
                cost += separator + child_cost
            if len(out) < total:
                marker = f"[{total - len(out)} more items]"
                cost += json_cost(marker) + (2 if out else 0)
                out.append(marker)
            return out, cost
        finally:
            self.path.discard(id(container))


    def hidden_pair(self, pair: Any, budget: int) -> tuple[list[Any], int] | None:
        """A (name, value) pair such as a header, ``[name, "[REDACTED]"]`` when its name hides
        its value as a mapping key would; None when it does not (or does not look like one)."""
        name, value = pair
        if type(name) is bytes:
            name = name.decode("latin-1")
        if type(name) is not str or not _PAIR_NAME.fullmatch(name):
            return None
        action = self.redactor._name_action(name)
        if type(value) is bytes:
            value = value.decode("latin-1")
        if not action or (action == HIDE_IF_RANDOM and not random_text(value)):
            return None
        shown, cost = self.text(name, budget - _REDACTED_COST - 4, len(name))
        return [shown, REDACTED], cost + _REDACTED_COST + 4
