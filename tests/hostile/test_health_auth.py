"""The detailed health routes behind a bearer token: no access without it, every wrong token
refused whatever its length or shape, a constant-time comparison, and a burst of failures
recorded as a high event. Through the real ASGI and WSGI middleware."""

from __future__ import annotations

import inspect
import secrets
import statistics
import time
from collections.abc import Callable

from hypothesis import given

from ragtrail import Severity, get_monitor
from ragtrail.health import HealthService, _auth

from ._apps import Driver, event_loop, native
from ._campaign import CASES, CASES_PER_SURFACE, GENERATED, Campaign, Recipe

TOKEN = "rt-health-" + "Q7v9Xk2LmN4pR8sT1wY6zB3cD5fG0hJ"  # fixed: the cases must be the same
DETAILED = ("/api/health/detailed", "/api/health/dependencies", "/api/monitoring")
DENIED = frozenset({401, 403})
_SHAPES = ("Bearer {}", "bearer {}", "BEARER {}", "Bearer  {}", "Bearer\t{}", "Basic {}",
           "Token {}", "{}", "Bearer {} ", " Bearer {}", "Bearer {}\r\nX-Injected: 1",
           "Bearer {}\x00", "Bearer\x00{}", "Bearer {},Bearer {}")


def _wrong_tokens() -> list[str]:
    """Near misses of every kind, and random tokens of every length up to twice the real one."""
    near = [TOKEN[:-1], TOKEN + "x", TOKEN[1:], "x" + TOKEN, TOKEN.upper(), TOKEN.lower(),
            TOKEN[:-1] + chr(ord(TOKEN[-1]) + 1), chr(ord(TOKEN[0]) + 1) + TOKEN[1:],
            TOKEN.replace("-", "_"), TOKEN + "\x00", TOKEN[:len(TOKEN) // 2], "", " ",
            TOKEN.encode().hex(), "é" + TOKEN[1:]]
    lengths = [secrets.token_urlsafe(n)[:n] for n in range(1, 2 * len(TOKEN) + 9)]
    return near + lengths


def _ask(driver: Driver, path: str, authorization: str | None, adapter: str) -> int:
    """The status a detailed route answers, with the echoed ID checked on the way."""
    if adapter == "asgi":
        headers = [] if authorization is None else [
            (b"authorization", authorization.encode("utf-8"))]
        reply = driver.send_asgi(path, headers=headers)
        driver.check_asgi(reply, frozenset({200, 401, 403, 503}))
        if reply.status == 401:
            assert reply.header("www-authenticate") == 'Bearer realm="ragtrail"'
            assert reply.body == b"Unauthorized"
        assert reply.status is not None
        return reply.status
    environ = {} if authorization is None else {"Authorization": native(authorization)}
    wsgi = driver.send_wsgi(path, headers=environ)
    driver.check_wsgi(wsgi, frozenset({200, 401, 403, 503}))
    assert wsgi.status is not None
    return int(wsgi.status[:3])


def test_detailed_routes_refuse_every_wrong_token(campaign: Callable[..., Campaign]) -> None:
    """No header, wrong schemes, near misses and tokens of every length: 401 on every
    detailed route through both adapters; the right token gets in; no token is stored."""
    surface = campaign("health-auth", extra_secrets=(TOKEN,))
    with event_loop() as loop, surface.curated(api_token=TOKEN):
        driver = Driver(loop, health=None)
        for path in DETAILED:
            for adapter in ("asgi", "wsgi"):
                assert _ask(driver, path, None, adapter) in DENIED
                for wrong in _wrong_tokens():
                    for shape in _SHAPES:
                        assert _ask(driver, path, shape.format(wrong, wrong), adapter) in \
                            DENIED, (shape, wrong)
                assert _ask(driver, path, f"Bearer {TOKEN}", adapter) in (200, 503)
        # An ordinary request carrying the real token: its captured Authorization header is
        # redacted in the span, which the collector receives too.
        headers = [(b"authorization", f"Bearer {TOKEN}".encode())]
        driver.check_asgi(driver.send_asgi("/search", headers=headers), frozenset({200}))
        reply = driver.send_wsgi("/search", headers={"Authorization": f"Bearer {TOKEN}"})
        driver.check_wsgi(reply, frozenset({200}))


def test_generated_authorization_headers(campaign: Callable[..., Campaign]) -> None:
    """10,000 generated Authorization values (canaries, injection, near misses of the real
    token): never in, never an error, and the real token never reaches the store or logs."""
    surface = campaign("health-auth", extra_secrets=(TOKEN,))
    with event_loop() as loop, surface.generated(api_token=TOKEN):
        driver = Driver(loop, health=None)

        @GENERATED
        @given(CASES)
        def batch(cases: list[tuple[str, Recipe]]) -> None:
            for piece, recipe in cases:
                shape = recipe.pick(_SHAPES)
                cut = recipe.below(len(TOKEN) + 1)
                wrong = recipe.pick((TOKEN[:cut] + recipe.text(piece) + TOKEN[cut:],
                                     recipe.text(piece), TOKEN[:cut], TOKEN[cut:] + piece))
                if wrong == TOKEN or not wrong.strip():
                    wrong += "x"
                status = _ask(driver, recipe.pick(DETAILED), shape.format(wrong, wrong),
                              recipe.pick(("asgi", "wsgi")))
                assert status in DENIED
                surface.cases += 1

        batch()
    assert surface.cases >= CASES_PER_SURFACE


def test_token_comparison_is_constant_time(campaign: Callable[..., Campaign]) -> None:
    """The code compares digests with hmac.compare_digest, and a token wrong in its first
    byte is refused as fast as one wrong only in its last (medians of many, interleaved)."""
    source = inspect.getsource(_auth)
    assert "hmac.compare_digest(" in source
    assert "== self._digest" not in source
    assert "supplied ==" not in source
    surface = campaign("health-timing", extra_secrets=(TOKEN,))
    first = "Bearer " + chr(ord(TOKEN[0]) ^ 1) + TOKEN[1:]
    last = "Bearer " + TOKEN[:-1] + chr(ord(TOKEN[-1]) ^ 1)
    with surface.generated(api_token=TOKEN):
        service = HealthService(get_monitor(), store_check=False, include_registered=False)
        timings: dict[str, list[int]] = {first: [], last: []}
        for _ in range(3000):
            for header in (first, last):
                started = time.perf_counter_ns()
                response = service.respond("GET", DETAILED[0], b"", {"authorization": header})
                timings[header].append(time.perf_counter_ns() - started)
                assert response is not None
                assert response.status == 401
        service.stop()
    ratio = statistics.median(timings[first]) / statistics.median(timings[last])
    print(f"wrong first byte / wrong last byte, median time ratio: {ratio:.3f}")
    assert 0.75 < ratio < 1.33, ratio


def test_brute_force_burst_records_a_high_event(campaign: Callable[..., Campaign]) -> None:
    """Past ten failures a minute, the failures are recorded as high authn_login_fail."""
    surface = campaign("health-burst", extra_secrets=(TOKEN,))
    with event_loop() as loop, surface.generated(api_token=TOKEN, event_coalesce_seconds=60.0):
        driver = Driver(loop, health=None)
        for attempt in range(30):  # one middleware: one health service counts them all
            assert _ask(driver, DETAILED[attempt % 3], f"Bearer guess-{attempt:04d}-abcdef",
                        "asgi") == 401
        monitor = get_monitor()
        assert monitor.store.flush(timeout=10)
        events = monitor.store.events(event_type="authn_login_fail", limit=None)
    severities = {e.severity for e in events}
    assert Severity.HIGH in severities, events
    assert Severity.MEDIUM in severities  # the first ten were single failures
    high = [e for e in events if e.severity == Severity.HIGH]
    assert sum(e.count for e in high) >= 20  # coalesced into few rows, every failure counted
