"""The one redactor: every captured value, message and event passes through it.

``redact`` turns any Python value into a JSON-able structure within a byte budget, replacing
the values of sensitive keys and secret-looking text with ``[REDACTED]``. Cost is bounded by
the budget, not by the input: strings are cut before they are scanned, containers stop at the
budget, a depth limit and an item limit, and objects are never iterated unless they are known
containers (iterating a caller's generator would consume it).
"""

from __future__ import annotations

import contextlib
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
from typing import Any
from urllib.parse import urlsplit

from ragtrail._settings import Settings
from ragtrail.instrument._secrets import (
    REDACTED,
    TextScanner,
    escape_controls,
    is_card_number,
    looks_random,
)

__all__ = ["REDACTED", "TEXT_LIMIT", "Redactor", "escape_controls"]

TEXT_LIMIT = 32_768  # characters redact_text keeps by default
_MIN_BUDGET = 64
_LOOKAHEAD = 256   # a secret straddling a cut is scanned whole if it is shorter than this
_MAX_WIDENING = 8  # scan at most this many times the kept size to fill it...
_MAX_WINDOW = 16_384  # ...or this many characters (a PEM private key is about 1,700)
_RESERVE = 48      # room kept in a container for its "[N more items]" marker
_MIN_CHILD = 40    # smallest budget worth giving a child (fits a truncated-string marker)
_MORE = "..."      # the key of a dict's "[N more items]" entry
_REDACTED_COST = len(REDACTED) + 2
_SEQUENCES: tuple[type[Any], ...] = (
    list, tuple, set, frozenset, deque, type({}.keys()), type({}.values()), type({}.items()))
_AS_STRING = (uuid.UUID, decimal.Decimal, PurePath, complex)

_WALK, _HIDE, _HIDE_IF_RANDOM = 0, 1, 2  # what a key means for its value
# The first of a pair that names its second (a header, a form field), not prose with a score.
_PAIR_NAME = re.compile(r"-{0,2}[A-Za-z0-9_.-]{1,64}")
_KeyInfo = tuple[str, int, int]  # (shown name, its JSON cost, one of the three above)
_JSON_KEYS: dict[Any, str] = {None: "null", True: "true", False: "false"}  # as json.dumps
# Strings known to come out of the scan unchanged, with their JSON cost. Captured values repeat
# (the documents of a corpus, prompt templates, ids), and a hit costs a hash lookup instead of
# a dozen substring scans. Only clean text is kept, never a secret; bounded in entries and
# characters, and cleared when full like the key caches.
_CLEAN_MAX_LENGTH = 4096
_CLEAN_MAX_ENTRIES = 4096
_CLEAN_MAX_CHARS = 1 << 20
_KEYS_CACHED = 4096  # attribute names remembered as secret or not (code chooses them, mostly)
_SMALL_INT = 10**12  # integers this small are returned as they are (card numbers are longer)


def _cost(text: str) -> int:
    """Bytes ``text`` takes in JSON with ASCII escapes: an upper bound for any JSON encoding."""
    return len(encode_basestring_ascii(text))


class Redactor:
    """Makes values safe to store, export, log or send.

    >>> r = Redactor(Settings())
    >>> r.redact({"user": "ana", "password": "hunter2", "note": "mail ana@example.org"})
    {'user': 'ana', 'password': '[REDACTED]', 'note': 'mail [REDACTED]'}

    The JSON encoding of a result (``json.dumps``, any ``ensure_ascii``) is at most
    ``capture_max_bytes`` bytes (at least 64). ``max_depth`` and ``max_items`` bound nesting
    and entries per container.
    """

    def __init__(self, settings: Settings, *, max_depth: int = 8, max_items: int = 100) -> None:
        self.enabled = settings.redaction_enabled
        self.max_bytes = max(settings.capture_max_bytes, _MIN_BUDGET)
        self._max_depth = max_depth
        self._max_items = max_items
        self._scanner = TextScanner(settings.redact_keys, _configured_secrets(settings))
        # key -> (shown name, its JSON cost, how its value is treated); one cache per ``escape``
        self._keys: tuple[dict[Any, _KeyInfo], dict[Any, _KeyInfo]] = ({}, {})
        # clean text -> its JSON cost; one cache per ``escape`` (see _CLEAN_MAX_LENGTH)
        self._clean: tuple[dict[str, int], dict[str, int]] = ({}, {})
        self._clean_chars = 0
        self._name_actions: dict[str, int] = {}  # attribute name -> _name_action(name)

    def redact(self, value: Any, *, max_bytes: int | None = None,
               escape: bool = False) -> Any:
        """A JSON-able, redacted copy of ``value`` within the byte budget.

        ``max_bytes`` overrides ``capture_max_bytes``; ``escape`` also escapes control
        characters in strings and keys (for values that may reach line-oriented logs).
        Never raises: a value that cannot be represented becomes a marker string.
        """
        budget = max(max_bytes or self.max_bytes, _MIN_BUDGET)
        kind = type(value)
        if kind is str:  # a clean string seen before: no walk to set up
            cost = self._clean[escape].get(value)
            if cost is not None and cost <= budget:
                return value
        elif ((kind is int and -_SMALL_INT < value < _SMALL_INT) or value is None
              or kind is bool or (kind is float and value - value == 0)):
            return value  # as _Walk.value: a finite float, an int too short for a card
        try:
            return _Walk(self, escape).value(value, budget, 0)[0]
        except Exception:  # instrumentation never breaks the caller (a hostile __repr__...)
            return f"[unrepresentable {type(value).__name__}]"

    def redact_text(self, text: str, *, limit: int | None = TEXT_LIMIT) -> str:
        """``text`` with secrets replaced, cut to ``limit`` characters (plus a marker).

        For exception messages, stack traces, descriptions and log messages. The default
        limit (32,768) keeps the cost bounded on the caller's thread; None scans it all.
        """
        if limit is None or len(text) <= limit:
            return self._scanner.scan(text) if self.enabled else text
        return self._cut_and_scan(text, limit) + f"...[truncated, {len(text)} chars]"

    def redact_attribute(self, key: str, value: Any) -> Any:
        """A value under a name (a span attribute, a captured argument), treated as a mapping
        key's: always hidden under ``api_key``, hidden under ``signing_key`` when it looks
        random, else redacted."""
        action = self._name_action(key)
        if action == _HIDE or (action == _HIDE_IF_RANDOM and _random_text(value)):
            return REDACTED
        return self.redact(value)

    def redact_attributes(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Span or event attributes, each value with the whole per-value budget.

        ``redact_attribute`` for each, with its common cases (a name seen before, clean text
        seen before, a finite float) inline: app code may annotate every span it makes.
        """
        out: dict[str, Any] = {}
        actions, clean, budget = self._name_actions, self._clean[False], self.max_bytes
        for key, value in attributes.items():
            action = actions.get(key)
            if action is None:
                action = self._name_action(key)
                if len(actions) >= _KEYS_CACHED:
                    actions.clear()
                actions[key] = action
            kind = type(value)
            if action and (action == _HIDE or _random_text(value)):
                out[key] = REDACTED
            elif (kind is float and value - value == 0) or (
                    kind is str and clean.get(value, budget + 1) <= budget):
                out[key] = value
            else:
                out[key] = self.redact(value)
        return out

    def _name_action(self, name: str) -> int:
        """What a key or attribute name means for its value: _WALK, _HIDE or _HIDE_IF_RANDOM."""
        if not self.enabled:
            return _WALK
        kind = self._scanner.key_kind(name)
        return _HIDE if kind in ("any", "line") else _HIDE_IF_RANDOM if kind == "weak" else _WALK

    def _key_info(self, key: Any, escape: bool) -> _KeyInfo:
        """How a mapping key is shown and treated, memoised: keys repeat from call to call."""
        cache = self._keys[escape]
        info = cache.get(key) if type(key) is str else None
        if info is not None:
            return info
        if type(key) is str:
            name = key
        elif key is None or isinstance(key, bool):
            name = _JSON_KEYS[key]
        else:
            name = str(key)
        if len(name) > 128:
            name = name[:128] + "..."
        action = self._name_action(name)
        if self.enabled:
            name = self._scanner.scan(name)
        if escape:
            name = escape_controls(name)
        info = (name, _cost(name), action)
        if type(key) is str and len(key) <= 128:
            if len(cache) >= 4096:
                cache.clear()
            cache[key] = info
        return info

    def _remember_clean(self, text: str, cost: int, escape: bool) -> None:
        """Cache ``text`` (which the scan and escaping left unchanged) with its JSON cost."""
        if len(text) > _CLEAN_MAX_LENGTH:
            return
        cache = self._clean[escape]
        if len(cache) >= _CLEAN_MAX_ENTRIES or self._clean_chars >= _CLEAN_MAX_CHARS:
            for each in self._clean:
                each.clear()
            self._clean_chars = 0
        cache[text] = cost
        self._clean_chars += len(text)

    def _cut_and_scan(self, text: str, limit: int) -> str:
        """The first ``limit`` characters, scanned with enough text after them that a secret
        crossing the cut is recognised, and with the window's unverifiable tail dropped (it
        may hold the start of a secret the window cut in two)."""
        if not self.enabled:
            return text[:limit]
        size = limit + _LOOKAHEAD
        while True:
            window = text[:size]
            scanned = self._scanner.scan(window)
            if len(window) == len(text):
                return scanned[:limit]
            kept = scanned[:max(0, len(scanned) - _LOOKAHEAD)]
            # Redaction shrinks text (a PEM block becomes ten characters): widen, boundedly.
            if len(kept) >= limit or size >= max(_MAX_WIDENING * (limit + _LOOKAHEAD),
                                                 _MAX_WINDOW):
                return kept[:limit]
            size *= 2


class _Walk:
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
            raw = bytes(value[:budget + _LOOKAHEAD])
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
        over = _cost(text) - room
        if over > 0:  # escapes made it longer; each dropped character frees at least a byte
            text = text[:max(0, len(text) - over)]
        text += marker
        return text, _cost(text)

    def integer(self, value: int, budget: int) -> tuple[Any, int]:
        if value.bit_length() > 64:  # str() of a huge int is slow, and refused past 4300 digits
            return self.text(f"[integer of {value.bit_length()} bits]", budget, 0)
        if (self.redactor.enabled and _SMALL_INT <= abs(value) < 10**19
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
                    key_cost = _cost(name)
                key_cost += 4 if count else 2  # ": " and ", "
                room = budget - cost - key_cost - (_RESERVE if count + 1 < total else 0)
                if room < _MIN_CHILD:
                    break
                if action and (action == _HIDE or _random_text(item)):
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
                cost += _cost(_MORE) + _cost(marker) + 2 + (2 if len(out) > 1 else 0)
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
                cost += _cost(marker) + (2 if out else 0)
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
        if not action or (action == _HIDE_IF_RANDOM and not _random_text(value)):
            return None
        shown, cost = self.text(name, budget - _REDACTED_COST - 4, len(name))
        return [shown, REDACTED], cost + _REDACTED_COST + 4


# Shorter configured values would also match ordinary words; no real token is this short.
_MIN_KNOWN_SECRET = 8


def _configured_secrets(settings: Settings) -> tuple[str, ...]:
    """Secret values from the settings themselves, redacted wherever they turn up (an app
    logging its own API token under a neutral key reached the store and the webhook)."""
    values = [settings.api_token, settings.alert_webhook_url]
    for headers in (settings.otlp_headers, settings.otlp_traces_headers,
                    settings.otlp_metrics_headers):
        values += (headers or {}).values()
    with contextlib.suppress(ValueError):  # not a URL urllib can split: the store says so
        values.append(urlsplit(settings.store_url).password)
    return tuple(value for value in values if value and len(value) >= _MIN_KNOWN_SECRET)


def _random_text(value: Any) -> bool:
    """A string that looks like a key (what a weak name such as ``signing_key`` hides)."""
    return isinstance(value, str) and looks_random(value)
