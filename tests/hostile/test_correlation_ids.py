"""Hostile correlation-ID and trace-context headers: never a crash, the echo always valid."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given

from ragtrail import Settings
from ragtrail.instrument._redaction import Redactor
from ragtrail.middleware._core import _CREDENTIAL_IN_ID, is_valid_id

from ._apps import Driver, event_loop, native
from ._campaign import CASES, CASES_PER_SURFACE, GENERATED, Campaign, Recipe

OK = frozenset({200})
_REDACTOR = Redactor(Settings())
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ID_CHARS = _ALNUM + "._:+/=@-"


def _valid(piece: str, recipe: Recipe, longest: int) -> str:
    """An ID in the documented format (up to ``longest`` characters), seeded by ``piece``."""
    kept = "".join(c for c in piece if c in _ID_CHARS)
    length = 8 + recipe.below(longest - 7)
    text = recipe.pick(_ALNUM) + kept + "".join(recipe.pick(_ID_CHARS) for _ in range(4))
    return (text * (length // len(text) + 1))[:length]


def hostile_id(piece: str, recipe: Recipe) -> str:
    """Valid IDs of every length, overlong ones, hostile text, raw bytes as latin-1."""
    shape = recipe.below(5)
    if shape == 0:
        return _valid(piece, recipe, 128)
    if shape == 1:
        return _valid(piece, recipe, 128) + "x" * (1 + recipe.below(10_000))  # overlong
    if shape == 2:
        return piece.encode("utf-8").decode("latin-1")
    return recipe.text(piece)


def traceparent(piece: str, recipe: Recipe) -> str | None:
    shape = recipe.below(4)
    if shape == 0:
        return None
    if shape == 1:
        return f"00-{recipe.below(2**128):032x}-{recipe.below(2**64):016x}-0{recipe.below(2)}"
    return recipe.text(piece)


CURATED = [
    "", " ", "a" * 7, "a" * 8, "a" * 128, "a" * 129, "b" * 8192, "c" * 100_000,
    "abcd1234\r\nSet-Cookie: evil=1", "abcd1234\n", "abcd1234\r", "abcd\x001234",
    "abcd1234\x1b[2J", "\u202eabcd1234", "abcd1234\u200b", "日本語のリクエストID",
    "'abcd1234'", '"abcd1234"', "abcd1234'; DROP TABLE ragtrail_spans; --", "<script>x</script>",
    "../../../../etc/passwd", "%0d%0aSet-Cookie:%20x", "-abcd1234", "abcd 1234",
    "password=Canary-Hunter2!", "Bearer c4n4ryB34r3rT0k3nXYZ123",
    "aws_access_key_id AKIACANARY0123456789", "valid-id_but_underscore",
    "00000000-0000-0000-0000-000000000000", "req:1234/5678+9=@x",
]


def _accepted(cid: str) -> bool:
    """The middleware keeps an inbound ID in the documented format that holds no secret."""
    return (is_valid_id(cid) is not None and _REDACTOR.redact_text(cid) == cid
            and not _CREDENTIAL_IN_ID.search(cid))


def _send(driver: Driver, name: str, cid: str, second: str | None,
          traceparent: str | None, adapters: str = "both") -> None:
    headers = [(name.encode(), cid.encode("utf-8", "surrogatepass"))]
    environ = {name: native(cid)}
    if second is not None:  # both ID headers: the first valid one wins
        other = "x-correlation-id" if name == "x-request-id" else "x-request-id"
        headers.append((other.encode(), second.encode("utf-8")))
        environ[other] = native(second)
    if traceparent is not None:
        headers.append((b"traceparent", traceparent.encode("utf-8")))
        environ["traceparent"] = native(traceparent)
    # The configured order decides between the two headers: X-Request-ID first.
    ordered = [cid, second] if name == "x-request-id" else [second, cid]
    inbound = next((v for v in ordered if v and _accepted(v)), None)
    if adapters != "wsgi":
        driver.check_asgi(driver.send_asgi("/search", headers=headers, query=b"q=1"), OK,
                          inbound)
    if adapters != "asgi":
        wsgi_inbound = next((native(v) for v in ordered if v and _accepted(native(v))), None)
        driver.check_wsgi(driver.send_wsgi("/search", headers=environ), OK, wsgi_inbound)


def test_generated_correlation_ids(campaign: Callable[..., Campaign]) -> None:
    """10,000 generated ID and traceparent headers, half through ASGI, half WSGI: always 200,
    always an echoed ID in the documented format, the inbound one when it was valid."""
    surface = campaign("correlation-ids")
    with event_loop() as loop, surface.generated():
        driver = Driver(loop)

        @GENERATED
        @given(CASES)
        def batch(cases: list[tuple[str, Recipe]]) -> None:
            for piece, recipe in cases:
                cid = hostile_id(piece, recipe)
                second = hostile_id(piece[::-1], recipe) if recipe.below(2) else None
                name = recipe.pick(["x-request-id", "x-correlation-id"])
                _send(driver, name, cid, second, traceparent(piece, recipe),
                      recipe.pick(["asgi", "wsgi"]))
                surface.cases += 1

        batch()
    assert surface.cases >= CASES_PER_SURFACE
    assert driver.requests == surface.cases


def test_curated_correlation_ids(campaign: Callable[..., Campaign]) -> None:
    """The corpus (overlong, CR/LF, NUL, ESC, bidi, quotes, canaries), exported over OTLP."""
    surface = campaign("correlation-ids")
    with event_loop() as loop, surface.curated():
        driver = Driver(loop)
        for cid in CURATED:
            _send(driver, "x-request-id", cid, None, None)
            _send(driver, "x-request-id", cid, "abcd-1234-efgh", "00-" + "a" * 32 + "-"
                  + "b" * 16 + "-01")
    assert driver.requests == 4 * len(CURATED)


@pytest.mark.parametrize("cid", ["AKIACANARY0123456789",
                                 "sk-ant-api03-CANARY9z8y7x6w5v4u3t2s1r0q-AA",
                                 "Bearer:CANARYCIDBEARER5", "db_pass=CANARYPW1x",
                                 "Basic:dXNlcjpDQU5BUllQVw=="])
def test_secret_looking_ids_are_not_stored(campaign: Callable[..., Campaign], cid: str) -> None:
    """An inbound ID that the redactor would hide, or a scheme or key with its value in the
    ID's own alphabet (":" and "=" are allowed), is replaced, not stored as sent."""
    surface = campaign("defect-id", extra_secrets=(cid,))
    with event_loop() as loop, surface.generated():
        driver = Driver(loop)
        for adapter in ("asgi", "wsgi"):
            # A bad path makes the request record an event too: both must agree on the ID.
            _send(driver, "x-request-id", cid, None, None, adapter)
