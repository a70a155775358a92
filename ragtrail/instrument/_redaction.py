"""The one redactor: every captured value, message and event passes through it.

``redact`` turns any Python value into a JSON-able structure within a byte budget, replacing
the values of sensitive keys and secret-looking text with ``[REDACTED]``. Cost is bounded by
the budget, not by the input: strings are cut before they are scanned, containers stop at the
budget, a depth limit and an item limit, and objects are never iterated unless they are known
containers (iterating a caller's generator would consume it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ragtrail._settings import Settings
from ragtrail.instrument._redaction_walk import (
    HIDE,
    HIDE_IF_RANDOM,
    LOOKAHEAD,
    SMALL_INT,
    WALK,
    KeyInfo,
    Walk,
    json_cost,
    random_text,
)
from ragtrail.instrument._secrets import REDACTED, TextScanner, escape_controls

__all__ = ["REDACTED", "TEXT_LIMIT", "Redactor", "escape_controls"]

TEXT_LIMIT = 32_768  # characters redact_text keeps by default
_MIN_BUDGET = 64
_MAX_WIDENING = 8  # scan at most this many times the kept size to fill it...
_MAX_WINDOW = 16_384  # ...or this many characters (a PEM private key is about 1,700)
_JSON_KEYS: dict[Any, str] = {None: "null", True: "true", False: "false"}  # as json.dumps
# Strings known to come out of the scan unchanged, with their JSON cost. Captured values repeat
# (the documents of a corpus, prompt templates, ids), and a hit costs a hash lookup instead of
# a dozen substring scans. Only clean text is kept, never a secret; bounded in entries and
# characters, and cleared when full like the key caches.
_CLEAN_MAX_LENGTH = 4096
_CLEAN_MAX_ENTRIES = 4096
_CLEAN_MAX_CHARS = 1 << 20
_KEYS_CACHED = 4096  # attribute names remembered as secret or not (code chooses them, mostly)


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
        self._keys: tuple[dict[Any, KeyInfo], dict[Any, KeyInfo]] = ({}, {})
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
        elif ((kind is int and -SMALL_INT < value < SMALL_INT) or value is None
              or kind is bool or (kind is float and value - value == 0)):
            return value  # as Walk.value: a finite float, an int too short for a card
        try:
            return Walk(self, escape).value(value, budget, 0)[0]
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
        if action == HIDE or (action == HIDE_IF_RANDOM and random_text(value)):
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
            if action and (action == HIDE or random_text(value)):
                out[key] = REDACTED
            elif (kind is float and value - value == 0) or (
                    kind is str and clean.get(value, budget + 1) <= budget):
                out[key] = value
            else:
                out[key] = self.redact(value)
        return out

    def _name_action(self, name: str) -> int:
        """What a key or attribute name means for its value: WALK, HIDE or HIDE_IF_RANDOM."""
        if not self.enabled:
            return WALK
        kind = self._scanner.key_kind(name)
        return HIDE if kind in ("any", "line") else HIDE_IF_RANDOM if kind == "weak" else WALK

    def _key_info(self, key: Any, escape: bool) -> KeyInfo:
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
        info = (name, json_cost(name), action)
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
        size = limit + LOOKAHEAD
        while True:
            window = text[:size]
            scanned = self._scanner.scan(window)
            if len(window) == len(text):
                return scanned[:limit]
            kept = scanned[:max(0, len(scanned) - LOOKAHEAD)]
            # Redaction shrinks text (a PEM block becomes ten characters): widen, boundedly.
            if len(kept) >= limit or size >= max(_MAX_WIDENING * (limit + LOOKAHEAD),
                                                 _MAX_WINDOW):
                return kept[:limit]
            size *= 2


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
