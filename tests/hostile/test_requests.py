"""Hostile request targets, header names and values, and bodies, through the real ASGI and WSGI
middleware: never an exception from ragtrail, never a 500, always a valid echoed ID."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import given

from ragtrail.middleware._core import is_valid_id

from ._apps import Driver, check_echo, event_loop, native
from ._campaign import CASES, CASES_PER_SURFACE, FRAGMENTS, GENERATED, Campaign, Recipe

MAX_BODY = 4096
OK = frozenset({200})
REJECTABLE = frozenset({200, 400})  # reject_malicious=True answers 400 for hostile requests
SIZED = frozenset({200, 413})

_TRAVERSALS = ("../", "..\\", "%2e%2e%2f", "%2e%2e/", "..%2f", "%252e%252e%252f",
               "%25252e%25252e%25252f", "%c0%ae%c0%ae/", "%e0%80%ae%e0%80%ae/", "..;/",
               "%u002e%u002e%u2215", ".%2e/", "%2e./", "....//", "%00", "%0d%0a", "\x00", "\r\n",
               "/%2f/", "//", "/./", "?", "#", "%", "%zz", "%ff%fe")
_METHODS = ("GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "get", "P\x00ST",
            "É", "BREW", "M" * 300, "")
_HEADER_NAMES = ("x-request-id", "x-correlation-id", "user-agent", "x-note", "authorization",
                 "cookie", "referer", "host", "x-forwarded-for", "traceparent", "tracestate",
                 "content-type", "x-api-key", "X-Mixed-Case", "x\x00nul", "x\r\nsplit",
                 "x y", "", ":authority", "ü-name", "x-" + "n" * 300)


def _raw_target(piece: str, recipe: Recipe) -> bytes:
    """A request path: traversal in every encoding, overlong, or hostile text, percent-encoded
    or not (a server passes the bytes it received)."""
    parts = ["/docs"]
    for _ in range(recipe.below(6)):
        parts.append(recipe.pick(_TRAVERSALS) * (1 + recipe.below(3)))
    shape = recipe.below(4)
    # No canaries: url.path is stored unredacted (test_secret_in_path_is_not_stored).
    if shape == 0:
        parts.append(quote(recipe.text(piece, secrets=False), safe="/%"))
    elif shape == 1:
        parts.append(recipe.text(piece, secrets=False))
    elif shape == 2:
        parts.append("a/" * recipe.below(6000))  # up to 12 KB: past the 8 KB URL limit
    parts.append("etc/passwd" if recipe.below(2) else "")
    return "".join(parts).encode("utf-8", "surrogatepass")


def _query(piece: str, recipe: Recipe) -> bytes:
    shape = recipe.below(4)
    if shape == 0:
        return b""
    if shape == 1:  # no canaries: test_percent_encoded_secret_is_redacted
        return b"q=" + quote(recipe.text(piece, secrets=False)).encode()
    if shape == 2:
        return ("q=" + recipe.text(piece)).encode("utf-8")
    return ("file=" + recipe.pick(_TRAVERSALS) * 3 + "&note=" + recipe.text(piece)).encode()


def _decoded(raw: bytes) -> str:
    """``scope["path"]`` as uvicorn builds it: the raw path percent-decoded once."""
    return unquote(raw.decode("latin-1"), encoding="utf-8", errors="replace")


def _send_target(driver: Driver, raw: bytes, query: bytes, method: str, adapter: str,
                 allowed: frozenset[int]) -> None:
    if adapter == "asgi":
        driver.check_asgi(driver.send_asgi(_decoded(raw), raw_path=raw, query=query,
                                           method=method), allowed)
    else:
        text, query_text = raw.decode("latin-1"), query.decode("latin-1")
        reply = driver.send_wsgi(native(_decoded(raw)), method=native(method),
                                 QUERY_STRING=query_text,
                                 REQUEST_URI=text + ("?" + query_text if query else ""))
        driver.check_wsgi(reply, allowed)


def test_generated_paths(campaign: Callable[..., Campaign]) -> None:
    """10,000 generated targets (encoded, double- and triple-encoded and overlong traversal,
    NUL, CR/LF, unicode) and methods, with and without reject_malicious."""
    surface = campaign("paths")
    with event_loop() as loop, surface.generated():
        drivers = (Driver(loop), Driver(loop, reject_malicious=True))

        @GENERATED
        @given(CASES)
        def batch(cases: list[tuple[str, Recipe]]) -> None:
            for piece, recipe in cases:
                rejecting = recipe.below(2)
                _send_target(drivers[rejecting], _raw_target(piece, recipe),
                             _query(piece, recipe), recipe.pick(_METHODS),
                             recipe.pick(["asgi", "wsgi"]), REJECTABLE if rejecting else OK)
                surface.cases += 1

        batch()
    assert surface.cases >= CASES_PER_SURFACE


CURATED_PATHS = [
    b"/", b"/../../../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd", b"/%252e%252e%252fetc",
    b"/%25252e%25252e%25252f", b"/%c0%ae%c0%ae/%c0%af", b"/..%c0%af..%c0%afetc", b"/..;/admin",
    b"/%u002e%u002e%u2215etc", b"/a%00b", b"/a\x00b", b"/%0d%0aSet-Cookie:%20x=1",
    b"/a\r\nX-Injected: 1", b"/\x1b[2J", b"/" + b"a" * 9000, b"/" + b"../" * 3000,
    b"/\xff\xfe", b"/%ff%fe%fd", b"/\xe2\x80\xae/fdp.exe", b"/docs?x=1", b"//double//slash",
]
CURATED_QUERIES = [b"", b"file=../../etc/passwd", b"x=%00", b"token=" + b"A" * 9000,
                   b"q=AKIACANARY0123456789", b"a=1\r\nb=2", b"%%%%", b"key=..%2f..%2f"]


def test_curated_paths(campaign: Callable[..., Campaign]) -> None:
    """The path and query corpus through both adapters, rejecting and not, exported."""
    surface = campaign("paths")
    with event_loop() as loop, surface.curated():
        drivers = (Driver(loop), Driver(loop, reject_malicious=True))
        for raw in CURATED_PATHS:
            for query in CURATED_QUERIES:
                for rejecting, driver in enumerate(drivers):
                    for adapter in ("asgi", "wsgi"):
                        _send_target(driver, raw, query, "GET", adapter,
                                     REJECTABLE if rejecting else OK)


# Headers whose values the middleware stores unredacted (test_secret_in_user_agent_...).
_UNREDACTED = frozenset({"user-agent", "host", "x-forwarded-for"})


def _header(piece: str, recipe: Recipe) -> tuple[str, str]:
    name = recipe.pick(_HEADER_NAMES) if recipe.below(4) else piece[:40]
    secrets = name.lower() not in _UNREDACTED
    shape = recipe.below(5)
    if shape == 0:  # up to ~60 KB: oversized
        value = " ".join([recipe.text(piece, secrets=secrets)] * (1 + recipe.below(800)))
    elif shape == 1:
        value = piece.encode("utf-8").decode("latin-1")  # raw UTF-8 bytes
    else:
        value = recipe.text(piece, secrets=secrets)
    return name, value


def _send_headers(driver: Driver, headers: list[tuple[str, str]], adapter: str) -> None:
    if adapter == "asgi":
        scope_headers = [(n.lower().encode("utf-8"), v.encode("utf-8")) for n, v in headers]
        driver.check_asgi(driver.send_asgi("/search", headers=scope_headers), SIZED)
    else:
        environ = {native(n): native(v) for n, v in headers}
        driver.check_wsgi(driver.send_wsgi("/search", headers=environ), SIZED)


def test_generated_headers(campaign: Callable[..., Campaign]) -> None:
    """10,000 generated header sets: odd names, CR/LF, NUL, oversized and non-ASCII values,
    canaries in captured and secret-named headers, hostile Host and X-Forwarded-For."""
    surface = campaign("headers", extra_secrets=("c4n4ryB34r3rT0k3nXYZ123",))
    with event_loop() as loop, surface.generated():
        driver = Driver(loop)

        @GENERATED
        @given(CASES)
        def batch(cases: list[tuple[str, Recipe]]) -> None:
            for piece, recipe in cases:
                headers = [_header(piece, recipe) for _ in range(1 + recipe.below(4))]
                _send_headers(driver, headers, recipe.pick(["asgi", "wsgi"]))
                surface.cases += 1

        batch()
    assert surface.cases >= CASES_PER_SURFACE


CURATED_HEADERS: list[tuple[str, str]] = [
    ("user-agent", "Mozilla/5.0\r\nX-Injected: 1"), ("user-agent", "a" * 20_000),
    ("x-note", "\x1b]0;owned\x07 password=Canary-Hunter2!"), ("x-note", "\x00" * 100),
    ("authorization", "Bearer c4n4ryB34r3rT0k3nXYZ123"), ("cookie", "session=" + "eyJ" * 30),
    ("referer", "https://x/?key=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"),
    ("host", "[::1"), ("host", "a:b:c:d"), ("host", ":" * 600), ("host", "evil.example:99999999"),
    ("host", "\u202eexample.com"), ("x-forwarded-for", "1.2.3.4, \r\n, 999.1.1.1, ::g"),
    ("x-forwarded-for", ",".join(["10.0.0.1"] * 2000)), ("x-forwarded-for", "::ffff:1.2.3.4"),
    ("traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"), ("tracestate", "a=\r\n" * 100),
    ("content-type", "multipart/form-data; boundary=" + "-" * 5000),
    ("x-api-key", "AKIACANARY0123456789"), ("x\r\nsplit", "value"), ("", "empty name"),
    ("content-length", "12abc"), ("content-length", "-1"), ("content-length", "٣"),
    ("content-length", "9" * 40), ("content-length", "99999999"),
]


def test_curated_headers(campaign: Callable[..., Campaign]) -> None:
    """The header corpus, one header at a time and all at once, through both adapters."""
    surface = campaign("headers", extra_secrets=("c4n4ryB34r3rT0k3nXYZ123",))
    with event_loop() as loop, surface.curated():
        driver = Driver(loop)
        for header in [*CURATED_HEADERS, *((f, f) for f in FRAGMENTS)]:
            for adapter in ("asgi", "wsgi"):
                _send_headers(driver, [header], adapter)
        _send_headers(driver, CURATED_HEADERS, "asgi")


def _body(piece: str, recipe: Recipe) -> tuple[list[bytes], str | None, bool]:
    """Chunks, the declared Content-Length (or None), and whether it is chunked."""
    unit = recipe.text(piece).encode("utf-8") + b" "  # repeats stay separate words
    size = recipe.pick((0, 1, 100, MAX_BODY - 1, MAX_BODY, MAX_BODY + 1, 3 * MAX_BODY,
                        recipe.below(6 * MAX_BODY)))
    data = (unit * (size // len(unit) + 1))[:size]
    count = 1 + recipe.below(8)
    step = max(1, -(-len(data) // count))
    chunks = [data[i:i + step] for i in range(0, len(data), step)] or [b""]
    declared = recipe.pick((None, str(len(data)), str(len(data) + 10), str(max(0, len(data) - 1)),
                            "0", "abc", str(10 * MAX_BODY), " 5 ", "+5"))
    return chunks, declared, declared is None and recipe.below(2) == 1


def _send_body(driver: Driver, chunks: list[bytes], declared: str | None, chunked: bool,
               adapter: str) -> None:
    if adapter == "asgi":
        headers = [] if declared is None else [(b"content-length", declared.encode())]
        driver.check_asgi(driver.send_asgi("/ingest", method="POST", headers=headers,
                                           body=chunks), SIZED)
        return
    body = b"".join(chunks)
    environ: dict[str, Any] = {"wsgi.input": io.BytesIO(body)}
    if declared is not None:
        environ["CONTENT_LENGTH"] = declared
    elif chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    driver.check_wsgi(driver.send_wsgi("/ingest", method="POST", **environ), SIZED)


def test_generated_bodies(campaign: Callable[..., Campaign]) -> None:
    """10,000 generated bodies around the limit: declared or not, lying Content-Length,
    chunked, many small chunks; the body (with canaries) reaches a capturing step."""
    surface = campaign("bodies")
    with event_loop() as loop, surface.generated():
        driver = Driver(loop, max_body_bytes=MAX_BODY)

        @GENERATED
        @given(CASES)
        def batch(cases: list[tuple[str, Recipe]]) -> None:
            for piece, recipe in cases:
                chunks, declared, chunked = _body(piece, recipe)
                _send_body(driver, chunks, declared, chunked, recipe.pick(["asgi", "wsgi"]))
                surface.cases += 1

        batch()
    assert surface.cases >= CASES_PER_SURFACE


def test_curated_bodies(campaign: Callable[..., Campaign]) -> None:
    """Oversized, truncated, lying and slow bodies (a client pausing between chunks)."""
    surface = campaign("bodies")
    secret = b"password=Canary-Hunter2! AKIACANARY0123456789 "
    with event_loop() as loop, surface.curated():
        driver = Driver(loop, max_body_bytes=MAX_BODY)
        cases: list[tuple[list[bytes], str | None, bool]] = [
            ([secret], None, False), ([secret * 200], None, False),
            ([secret] * 200, None, True), ([secret], "100000", False), ([secret], "1", False),
            ([b""], "5", False), ([secret * 50], str(len(secret) * 50), False),
            ([b"\x00\r\n\x1b" * 100], None, False), ([b"\xff\xfe" * 10], "abc", False),
        ]
        for chunks, declared, chunked in cases:
            for adapter in ("asgi", "wsgi"):
                _send_body(driver, chunks, declared, chunked, adapter)
        for _ in range(3):
            reply = loop.run_until_complete(_slow_upload(driver, [secret] * 120))
            assert reply in SIZED


async def _slow_upload(driver: Driver, chunks: list[bytes]) -> int | None:
    """A client that sends its chunks with pauses, as a slow or malicious uploader would."""
    from middleware._support import http_scope

    status: list[int] = []
    pending = list(chunks)

    async def receive() -> MutableMapping[str, Any]:
        await asyncio.sleep(0.001)
        chunk = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            echoed = dict(message["headers"]).get(b"x-request-id", b"").decode()
            check_echo(echoed, None)
            assert is_valid_id(echoed)

    await driver.asgi(http_scope("/ingest", method="POST"), receive, send)
    return status[0] if status else None


# -- known defects: each pins one bug found by this campaign (see the report of issue 6) --------

def _stored_secrets(surface: Campaign, send: Callable[[Driver], None]) -> list[str]:
    """The canaries found in the raw store file after ``send`` ran against both adapters."""
    database = surface.directory / "defect.db"
    from instrument.redaction_canaries import leaked

    from ragtrail.instrument import configure, shutdown

    configure(service_name="defect", store_url=f"sqlite:///{database}")
    with event_loop() as loop:
        send(Driver(loop))
    shutdown(10.0)
    return leaked(b"".join(p.read_bytes() for p in database.parent.glob("defect.db*")))


@pytest.mark.parametrize("raw", [b"/reset/password=Canary-Hunter2!",
                                 b"/v1/keys/sk-proj-CANARYa1b2c3d4e5f6g7h8i9j0k1l2m3"])
def test_secret_in_path_is_not_stored(campaign: Callable[..., Campaign], raw: bytes) -> None:
    """A path carrying a secret (a reset token, a key) reaches the store redacted."""
    def send(driver: Driver) -> None:
        _send_target(driver, raw, b"", "GET", "asgi", OK)
        _send_target(driver, raw, b"", "GET", "wsgi", OK)

    assert _stored_secrets(campaign("defect"), send) == []


@pytest.mark.parametrize("name", ["user-agent", "host"])
def test_secret_in_user_agent_or_host_is_not_stored(campaign: Callable[..., Campaign],
                                                    name: str) -> None:
    """A secret in User-Agent or Host reaches the span attributes redacted."""
    value = "AKIACANARY0123456789 password=Canary-Hunter2!"

    def send(driver: Driver) -> None:
        _send_headers(driver, [(name, value)], "asgi")
        _send_headers(driver, [(name, value)], "wsgi")

    assert _stored_secrets(campaign("defect"), send) == []


@pytest.mark.parametrize("query", [b"q=my%20key%20ghp_GITHUBcanary0123456789abcdefghijklmnopq",
                                   b"q=aws_access_key_id%20AKIACANARY0123456789",
                                   b"login=x%26password%3DCanary-Hunter2!"])
def test_percent_encoded_secret_is_redacted(campaign: Callable[..., Campaign],
                                            query: bytes) -> None:
    """A secret in a URL-encoded query, captured by a @monitored step, is redacted."""
    def send(driver: Driver) -> None:
        _send_target(driver, b"/search", query, "GET", "asgi", OK)

    assert _stored_secrets(campaign("defect"), send) == []
