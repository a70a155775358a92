"""Find secrets and personal data inside free text: the value half of redaction.

Every pattern is linear-time: quantifiers are never nested, each unbounded run is either the
last element of its pattern or delimited by a character its class excludes, and patterns that
could restart inside a long run either start at a rare literal (``@``, ``://``, ``:``/``=``)
or forbid starting mid-run. The one loop in Python (a list value's closing bracket) reads each
character of the text it then redacts at most a bounded number of times. Each rule runs only
when a cheap substring test says it might match, so ordinary prose pays for two C-level scans
and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Literal
from urllib.parse import unquote

from ragtrail.instrument._secret_values import looks_random, value_spans

# looks_random is re-exported: redaction hides a weak key's value only when it looks random.
__all__ = ["REDACTED", "KeyKind", "Span", "TextScanner", "escape_controls", "is_card_number",
           "looks_random"]

REDACTED = "[REDACTED]"

KeyKind = Literal["", "any", "line", "weak"]
"""How a key (dict key, ``key=value`` name) is treated: not sensitive; its value is always a
secret; its value runs to the end of the line (``Cookie:``, ``Authorization:``); its value is a
secret only if it looks random (``key=9f8e...``)."""

# Keys are compared lowercased with separators removed, so api_key, apiKey, API-KEY all match.
# "token" spares the LLM accounting keys (max_tokens, token_count, tokenizer, token_usage...).
_SENSITIVE_KEY_WORDS = (
    r"passw(?:or)?d|passphrase|secret|credential|apikey|privatekey|authorization|cookie"
    r"|session|token(?!s|iz|count|usage|limit|type|budget|len)|auth$|(?<!by)(?<!com)pass$|pwd?$"
    r"|(?:access|refresh|bearer|^id|^api|^auth)tokens"  # lists of secrets, not counts
)
_LINE_KEYS = ("authorization", "cookie")
_WEAK_KEYS = ("key", "sig", "signature", "hmac")

_SUSPICIOUS = re.compile(r"[-_@:=0-9]")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_DECODE_ROUNDS = 3  # "%25253D" is "=" encoded three times (as the middleware's path checks)
# An escape right before a key is a word boundary, not letters the key is glued to: URL
# encoding (RFC 3986 "%20") and the backslash escapes of repr() and JSON ("\\n", "\\x1b").
_ESCAPE_BEFORE = re.compile(
    r"(?:%[0-9A-Fa-f]{2}|\\(?:[a-z]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}))\Z")

_PEM = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----"
    r".*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----|\Z)",
    re.DOTALL,
)
# The userinfo ends at the authority's last "@" (as WHATWG URL parsers read it), so a raw "@"
# in a password is redacted with the rest of it.
_URL_PASSWORD = re.compile(r"://[^\s:/@]{0,256}:([^\s/]{1,256})@")
# The signature segment is optional so a JWT cut by truncation is still caught.
# Not inside a longer word (that lookbehind also keeps "eyJeyJeyJ..." linear), unless right
# after an escape ("%20eyJ...", "\\neyJ...").
_JWT = re.compile(
    r"(?:(?<![A-Za-z0-9_-])|(?<=%[0-9A-Fa-f]{2})|(?<=\\[a-z]))"
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?")
_BEARER = re.compile(r"(?i:bearer)[ \t]{1,8}([A-Za-z0-9._~+/=-]{8,})")
_API_KEY = re.compile(
    r"sk-[A-Za-z0-9_-]{20,}"                   # OpenAI, Anthropic (sk-ant-...)
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"   # Stripe secret and restricted keys
    r"|gh[pousr]_[A-Za-z0-9]{30,}"             # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"          # Slack
    r"|AIza[A-Za-z0-9_-]{35}"                  # Google API keys
    r"|A[KS]IA[A-Z0-9]{16}"                    # AWS access key IDs (long-lived, STS)
    r"|glpat-[A-Za-z0-9_-]{20,}"               # GitLab
    r"|hf_[A-Za-z0-9]{30,}"                    # Hugging Face
)
# A separator right after a key character: "a=b", "key : v", '"k":' (not "===" or " = ").
_SEPARATOR = re.compile(r"[A-Za-z0-9_.\"'-][ \t]{0,3}[:=]")
# Lowercase fragments every sensitive key contains; text without any skips the key=value rule.
_KEY_FRAGMENTS = ("pass", "secret", "token", "key", "auth", "cookie", "session", "credential",
                  "pw", "sig", "hmac")
# Matched on the reversed text before a separator: optional spaces, quote, then the key.
_KEY_BEFORE = re.compile(r"[ \t]{0,3}[\"']?([A-Za-z0-9_.-]{1,64})")
# pydantic's ValidationError: the field's location alone on a line, then the error quoting the
# value ("password\n  Input should be ... [type=int_parsing, input_value='...', input_type=str]").
_STRONG_KINDS = ("any", "line")
# Only the line's first "[type=" is tried (the run before it cannot pass one): with two lazy
# runs, a line of many "[type=" took time growing with its square (33 KB: 0.65 s).
_PYDANTIC_INPUT = re.compile(
    r"^[ \t]*([A-Za-z0-9_.\[\]-]{1,200})\r?\n[ \t]+(?:[^\r\n\[]|\[(?!type=))*\[type=[\w.]{1,64}, "
    r"input_value=([^\r\n]*?), input_type=[\w.]{1,64}\]", re.MULTILINE)
_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9-]{1,63}\.[A-Za-z0-9.-]{1,200}")
_EMAIL_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+-]{1,64}")
_CARD_RUN = re.compile(r"[0-9][0-9 -]{11,}[0-9]")
_DIGIT_GROUP = re.compile(r"[0-9]{3,}")  # shorter groups never belong to a card
_DIGITS = b"0123456789"

# C0, DEL, C1, the Unicode line separators, and lone surrogates (from os.fsdecode or a JSON
# "\udcff"), which no UTF-8 store, log or OTLP payload can encode.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED_CONTROLS = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}

Span = tuple[int, int]
_Locate = Callable[[str, "re.Match[str]", int], Iterator[Span]]


def escape_controls(text: str) -> str:
    r"""Show control characters as escapes so one value cannot forge a log line.

    >>> escape_controls("ok\r\nFAKE ENTRY\x00")
    'ok\\r\\nFAKE ENTRY\\x00'
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_CONTROLS.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def is_card_number(digits: str) -> bool:
    """13 to 19 digits passing the Luhn check (ISO/IEC 7812 payment card numbers)."""
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


class TextScanner:
    """Replaces secret-looking parts of a string with ``[REDACTED]``.

    ``extra_keys`` are more key names (compared like the built-in ones) whose values are secret;
    ``known_secrets`` are exact values replaced wherever they appear.
    """

    def __init__(self, extra_keys: tuple[str, ...] = (),
                 known_secrets: tuple[str, ...] = ()) -> None:
        # The values ragtrail was configured with (its API token, the webhook URL...): no rule
        # recognises a token by its look under a neutral key, but these are known exactly.
        self._known = tuple(sorted(set(known_secrets), key=len, reverse=True))
        extra = [normalise_key(key) for key in extra_keys if normalise_key(key)]
        self._sensitive_key = re.compile("|".join([_SENSITIVE_KEY_WORDS, *map(re.escape, extra)]))
        self._key_fragments = _KEY_FRAGMENTS + tuple(
            {key.lower() for key in extra_keys if key.strip()} | set(extra))
        self._key_kinds: dict[str, KeyKind] = {}

    def key_kind(self, key: str) -> KeyKind:
        """Whether a key names a secret, memoised (argument and field names repeat a lot)."""
        kind = self._key_kinds.get(key)
        if kind is None:
            kind = self._classify(normalise_key(key))
            if len(self._key_kinds) >= 4096:
                self._key_kinds.clear()
            self._key_kinds[key] = kind
        return kind

    def _classify(self, norm: str) -> KeyKind:
        if norm.endswith(_LINE_KEYS):
            return "line"
        if self._sensitive_key.search(norm):
            return "any"
        if norm.endswith(_WEAK_KEYS):
            return "weak"
        return ""

    def scan(self, text: str) -> str:
        """``text`` with every secret-looking part replaced by ``[REDACTED]``.

        Percent-encoded text (a query string, a path) is also scanned decoded, up to three
        times while escapes remain, so an encoded separator cannot hide ``password%3Dhunter2``
        nor a doubly encoded one ``password%253Dhunter2``. Each round decodes the previous
        round's redacted text; the text of the last round that found something is returned
        (control characters escaped), or ``text`` scanned as it is if none did.
        """
        scanned = self._scan(text)
        if "%" in scanned and _PERCENT_ESCAPE.search(scanned) is not None:
            scanned = self._scan_decoded(scanned)
        for secret in self._known:  # empty unless configured: nothing on the hot path
            if secret in scanned:
                scanned = scanned.replace(secret, REDACTED)
        return scanned

    def _scan_decoded(self, scanned: str) -> str:
        result = current = scanned
        for _ in range(_DECODE_ROUNDS):
            decoded = unquote(current, errors="backslashreplace")
            current = self._scan(decoded)
            if current != decoded:
                # Decoding may have produced controls (%0A) the encoded text did not show.
                result = escape_controls(current)
            if "%" not in current or _PERCENT_ESCAPE.search(current) is None:
                break
        return result

    def _scan(self, text: str) -> str:
        """One pass of every rule over ``text`` as it is.

        Each rule runs only if a substring test says it might match (straight-line tests:
        this runs on the caller's thread for captured arguments).
        """
        bearer = "earer" in text or "EARER" in text
        aws_or_google = "AIza" in text or "AKIA" in text or "ASIA" in text
        if (_SUSPICIOUS.search(text) is None and "eyJ" not in text and not bearer
                and not aws_or_google):
            return text
        if "-----BEGIN" in text:
            text = _replace(text, _PEM, _whole)
        if "://" in text:
            text = _replace(text, _URL_PASSWORD, _group_one)
        if "eyJ" in text:
            text = _replace(text, _JWT, _whole)
        if bearer:
            text = _replace(text, _BEARER, _group_one)
        long_enough = len(text) >= 13  # no key format or card number is shorter
        if long_enough and ("-" in text or "_" in text or aws_or_google):
            text = _replace(text, _API_KEY, _api_key)
        if "input_value=" in text:
            text = _replace(text, _PYDANTIC_INPUT, self._pydantic_input)
        if (":" in text or "=" in text) and self._may_name_a_secret(text):
            text = _replace(text, _SEPARATOR, self._key_value)
        if "@" in text:
            text = _replace(text, _EMAIL_DOMAIN, _email)
        if long_enough and _digit_count(text) >= 13:  # no card has fewer digits
            return _replace(text, _CARD_RUN, _cards)
        return text

    def _may_name_a_secret(self, text: str) -> bool:
        lowered = text.lower()
        return any(fragment in lowered for fragment in self._key_fragments)

    def _key_value(self, text: str, match: re.Match[str], floor: int) -> Iterator[Span]:
        """``password=...``, ``"api_key": "..."``, ``Authorization: Basic ...``,
        ``api_tokens=[...]``, ``password:`` with its value alone on the next line, and YAML
        blocks (``password: |``, ``api_keys:`` then ``- k1`` lines)."""
        at = match.end()
        kind = self._kind_before(text, at - 1, floor)
        if kind:
            yield from value_spans(text, at, floor, kind)

    def _pydantic_input(self, text: str, match: re.Match[str], floor: int) -> Iterator[Span]:
        """The value pydantic quotes for a field any part of whose location names a secret
        (``password``, ``credentials.api_key``, ``api_keys.0``); a weak name (``sort_key``)
        is no secret without a random-looking value, and pydantic quotes the wrong ones.
        A location that is only a number is a positional argument of a ``validate_call``
        function (``login(user, password)`` says ``1``): with no name to judge, its value
        may be anything, so it is redacted."""
        location = match.group(1)
        if location.isdigit() or any(self.key_kind(part) in _STRONG_KINDS
                                     for part in location.replace("]", "").split(".")):
            yield match.span(2)

    def _kind_before(self, text: str, separator: int, floor: int) -> KeyKind:
        """The kind of the key (if any) right before the separator at ``separator``."""
        before = text[max(floor, separator - 72):separator][::-1]
        key_match = _KEY_BEFORE.match(before)
        return "" if key_match is None else self.key_kind(key_match.group(1)[::-1])


def normalise_key(key: str) -> str:
    return "".join(char for char in key.lower() if char.isalnum())


def _digit_count(text: str) -> int:
    """How many ASCII digits ``text`` holds: two C passes, several times cheaper than letting
    ``_CARD_RUN`` try every digit (its ``[0-9]`` matches ASCII digits only, as counted here)."""
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw) - len(raw.translate(None, _DIGITS))


def _replace(text: str, pattern: re.Pattern[str], locate: _Locate) -> str:
    pieces: list[str] = []
    done = 0
    for match in pattern.finditer(text):
        if match.start() < done:  # inside a span already replaced
            continue
        for start, end in locate(text, match, done):
            pieces.append(text[done:start])
            pieces.append(REDACTED)
            done = end
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _whole(text: str, match: re.Match[str], floor: int) -> Iterator[Span]:
    yield match.span()


def _group_one(text: str, match: re.Match[str], floor: int) -> Iterator[Span]:
    yield match.span(1)


def _glued_to_a_word(text: str, start: int) -> bool:
    """Whether the match at ``start`` continues a word ("risk-based-..." is prose, not a key)
    rather than following a boundary or an escape ("%20ghp_...", "\\nsk_live_...")."""
    if not start or not text[start - 1].isalnum():
        return False
    return _ESCAPE_BEFORE.search(text, max(0, start - 10), start) is None


def _api_key(text: str, match: re.Match[str], floor: int) -> Iterator[Span]:
    if _glued_to_a_word(text, match.start()):
        return
    key = match.group()
    if key.startswith("sk-") and not any(c.isdigit() for c in key):
        return
    yield match.span()


def _email(text: str, match: re.Match[str], floor: int) -> Iterator[Span]:
    at = match.start()
    local = _EMAIL_LOCAL_REVERSED.match(text[max(floor, at - 64):at][::-1])
    if local is None:
        return
    domain = match.group()[1:].rstrip(".-")  # a sentence's full stop is not the domain's
    top_level = domain.rsplit(".", 1)[-1]
    if len(top_level) < 2 or not top_level.isalpha():
        return
    yield at - local.end(), at + 1 + len(domain)


def _cards(text: str, match: re.Match[str], floor: int) -> Iterator[Span]:
    """Card numbers inside a run of digits, spaces and dashes (several cards, or a card
    next to other numbers)."""
    base = match.start()
    groups = [(g.start() + base, g.end() + base) for g in _DIGIT_GROUP.finditer(match.group())]
    first = 0
    while first < len(groups):
        last = _card_from(text, groups, first)
        if last is None:
            first += 1
        else:
            yield groups[first][0], groups[last][1]
            first = last + 1


def _card_from(text: str, groups: list[Span], first: int) -> int | None:
    """The last group of a card number starting at ``groups[first]``: one group of 13 to 19
    digits, or a first group of 4 then groups of 3 to 7 joined by single separators (4-4-4-4,
    4-6-5, 4-4-4-4-3), Luhn-valid, not starting with 0 (no issuer does, ISO/IEC 7812). One
    group glued to letters is part of a hex ID, not a card; grouped digits are a card even so
    ("x4111 1111 1111 1111abc")."""
    start = groups[first][0]
    if text[start] == "0":
        return None
    glued_before = start > 0 and text[start - 1].isalpha()
    digits = ""
    for last in range(first, len(groups)):
        begin, end = groups[last]
        size = end - begin
        if last > first and (begin - groups[last - 1][1] != 1 or not 3 <= size <= 7
                             or groups[first][1] - start != 4):
            return None
        digits += text[begin:end]
        if len(digits) > 19:
            return None
        glued = glued_before or (end < len(text) and text[end].isalpha())
        if len(digits) >= 13 and (last > first or not glued) and is_card_number(digits):
            return last
    return None
