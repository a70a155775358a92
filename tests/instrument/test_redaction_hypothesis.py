"""Property tests: hostile text, bytes and structures never break the redactor or its budget."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redaction_canaries import CANARIES, leaked

from ragtrail._settings import Settings
from ragtrail.instrument._redaction import Redactor

REDACTOR = Redactor(Settings())
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Text biased towards the characters the patterns care about, plus anything at all.
CHARS = st.sampled_from(list("aAeyJ0149 -_.:=@/\"'\n\r\t\x00é\u2028+%&;[]\\")) | st.characters()
TRICKY = st.text(alphabet=CHARS, max_size=300)
# List items: short, so a whole list (JSON escapes a character into up to 12) stays within
# the 4,096 characters a list value may span.
ITEMS = st.recursive(st.text(alphabet=CHARS, max_size=10),
                     lambda items: st.lists(items, max_size=3), max_leaves=4)
SECRET = "CanaryHypoSecret42"
# Values only the surrounding shape marks as secret: a list, the line after "password:", and
# an encoding repeated to hide the separator. (Kept out of the shared canaries: the hostile
# campaign draws its derandomized cases from those, and every entry added reshuffles them.)
SHAPES = (
    ('{"api_keys": ["Canary]ListKey7", "k2"], "n": 1}', "Canary]ListKey7"),
    ("db:\n  password:\n    CanaryYamlPassw0rd\n  user: app", "CanaryYamlPassw0rd"),
    ("GET /cb?next=%2Fhome%26token%253DCanaryEncodedTok42 200", "CanaryEncodedTok42"),
)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
           | TRICKY | st.binary(max_size=200))
NESTED = st.recursive(
    SCALARS,
    lambda children: (st.lists(children, max_size=8)
                      | st.tuples(children, children)
                      | st.frozensets(st.integers() | st.text(max_size=5), max_size=5)
                      | st.dictionaries(TRICKY | st.integers() | st.none(), children,
                                        max_size=8)),
    max_leaves=60,
)


def within_budget(value: Any, budget: int) -> bool:
    strict = json.dumps(value, allow_nan=False)
    utf8 = json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return len(strict.encode()) <= budget and len(utf8) <= budget


@SETTINGS
@given(value=NESTED, budget=st.integers(min_value=1, max_value=3000))
def test_any_structure_becomes_json_within_budget(value: Any, budget: int) -> None:
    """redact never raises; its output is strict JSON no larger than the budget (min 64)."""
    redactor = Redactor(Settings(capture_max_bytes=budget))
    out = redactor.redact(value)
    assert within_budget(out, max(budget, 64))


@SETTINGS
@given(text=TRICKY | st.text(max_size=2000))
def test_any_text_is_redacted_without_error(text: str) -> None:
    """redact_text accepts any string, returns a string, and with a limit stays short."""
    assert isinstance(REDACTOR.redact_text(text), str)
    limited = REDACTOR.redact_text(text, limit=50)
    assert len(limited) <= 50 + len("...[truncated, 2000 chars]") + len("[REDACTED]")


@SETTINGS
@given(data=st.binary(max_size=3000))
def test_any_bytes_become_a_bounded_string(data: bytes) -> None:
    """Arbitrary bytes decode (with replacement) into a string inside the budget."""
    out = REDACTOR.redact(data)
    assert isinstance(out, str)
    assert within_budget(out, REDACTOR.max_bytes)


@SETTINGS
@given(prefix=TRICKY, suffix=TRICKY, index=st.integers(0, len(CANARIES) - 1),
       escape=st.booleans())
def test_canary_between_arbitrary_text_never_survives(prefix: str, suffix: str, index: int,
                                                       escape: bool) -> None:
    """Whatever surrounds a secret (after a separator), it is redacted."""
    text = f"{prefix} {CANARIES[index].text} {suffix}"
    assert leaked(REDACTOR.redact_text(text)) == []
    assert leaked(json.dumps(REDACTOR.redact({"v": [text]}, escape=escape))) == []


@SETTINGS
@given(before=st.lists(ITEMS, max_size=3), after=st.lists(ITEMS, max_size=3),
       as_json=st.booleans())
def test_a_list_under_a_secret_key_is_redacted_to_its_own_bracket(
        before: list[Any], after: list[Any], as_json: bool) -> None:
    """Whatever items surround a secret in a list (quotes, brackets, escapes, nested lists),
    the list is redacted whole, and nothing after its closing bracket is."""
    value = {"user": "ana", "api_keys": [*before, SECRET, *after], "n": 1}
    dump = json.dumps if as_json else repr
    expected = dump({"user": "ana", "api_keys": "X", "n": 1}).replace(dump("X"), "[REDACTED]")
    assert REDACTOR.redact_text(dump(value)) == expected


@SETTINGS
@given(before=TRICKY, after=TRICKY, newline=st.sampled_from(["\n", "\r\n"]),
       indent=st.sampled_from([" ", "  ", "\t", " " * 12]), quote=st.sampled_from(["", '"']))
def test_a_value_alone_on_the_line_after_a_secret_key_never_survives(
        before: str, after: str, newline: str, indent: str, quote: str) -> None:
    """``password:`` ending its line hides the next line's value, whatever lines surround it."""
    text = f"{before}\npassword:{newline}{indent}{quote}{SECRET}{quote}{newline}{after}"
    assert SECRET not in REDACTOR.redact_text(text)


@SETTINGS
@given(prefix=TRICKY, suffix=TRICKY, shape=st.sampled_from(SHAPES), escape=st.booleans())
def test_secret_shapes_between_arbitrary_text_never_survive(
        prefix: str, suffix: str, shape: tuple[str, str], escape: bool) -> None:
    """A list, a next-line value or a doubly encoded one is redacted whatever surrounds it."""
    text, secret = shape
    surrounded = f"{prefix} {text} {suffix}"
    assert secret not in REDACTOR.redact_text(surrounded)
    assert secret not in json.dumps(REDACTOR.redact({"v": [surrounded]}, escape=escape))
