"""Security events and limits enforced by the ASGI middleware (in-process calls)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ragtrail import Severity
from ragtrail.instrument import Monitor
from ragtrail.middleware import ASGIMiddleware

from ._support import Reply, call_asgi, http_scope, only_span, request, stored_events, stored_spans

LIMIT = 1000


class _Recorder:
    """A Starlette app that counts its calls and the body bytes it managed to read."""

    def __init__(self) -> None:
        self.calls = 0
        self.read = 0
        self.app = Starlette(routes=[
            Route("/upload", self.upload, methods=["POST"]),
            Route("/careful-upload", self.careful_upload, methods=["POST"]),
            Route("/status/{code:int}", self.status),
            Route("/{path:path}", self.plain, methods=["GET", "POST"]),
        ])

    async def plain(self, request: Request) -> Response:
        self.calls += 1
        return PlainTextResponse("ok")

    async def upload(self, request: Request) -> Response:
        self.calls += 1
        async for chunk in request.stream():
            self.read += len(chunk)
        return PlainTextResponse(f"read {self.read}")

    async def careful_upload(self, request: Request) -> Response:
        """Catches every error while reading, as defensive app code does."""
        self.calls += 1
        try:
            async for chunk in request.stream():
                self.read += len(chunk)
        except Exception:
            return PlainTextResponse("upload failed", status_code=500)
        return PlainTextResponse("stored")

    async def status(self, request: Request) -> Response:
        self.calls += 1
        return PlainTextResponse("no", status_code=request.path_params["code"])


def _wrap(recorder: _Recorder, monitor: Monitor, **options: Any) -> ASGIMiddleware:
    options.setdefault("max_body_bytes", LIMIT)
    return ASGIMiddleware(recorder.app, monitor=monitor, health=False, **options)


@pytest.mark.parametrize(("status", "event_type"), [(401, "authn_login_fail"),
                                                    (403, "authz_fail")])
def test_access_failures_are_recorded(monitor: Monitor, status: int, event_type: str) -> None:
    """401 and 403 answers are medium events carrying the client, path and correlation ID."""
    recorder = _Recorder()
    request(_wrap(recorder, monitor), f"/status/{status}",
            headers=[(b"x-request-id", b"denied-call-1")])
    [event] = stored_events(monitor)
    assert (event.event_type, event.severity, event.source) == (event_type, Severity.MEDIUM,
                                                                "127.0.0.1")
    assert event.correlation_id == "denied-call-1"
    assert event.metadata["path"] == f"/status/{status}"


def test_a_burst_of_failures_from_one_client_escalates_to_high(monitor: Monitor) -> None:
    """The 10th failure within the window (configurable) is high, and so are the next."""
    wrapped = _wrap(_Recorder(), monitor, auth_failure_burst=(3, 60.0))
    for _ in range(4):
        request(wrapped, "/status/401", client=("203.0.113.5", 4000))
    request(wrapped, "/status/401", client=("203.0.113.6", 4000))
    events = stored_events(monitor, "authn_login_fail")
    by_key = {(e.source, e.severity): e.count for e in events}
    assert by_key == {("203.0.113.5", Severity.MEDIUM): 2, ("203.0.113.5", Severity.HIGH): 2,
                      ("203.0.113.6", Severity.MEDIUM): 1}


@pytest.mark.parametrize(("raw_path", "query", "event_type"), [
    (b"/static/%2e%2e/%2e%2e/etc/passwd", b"", "malicious_path_traversal"),
    (b"/static/%252e%252e%252fetc%252fpasswd", b"", "malicious_path_traversal"),
    (b"/static/%c0%ae%c0%ae/etc/passwd", b"", "malicious_path_traversal"),
    (b"/download", b"file=..%2f..%2fetc%2fpasswd", "malicious_path_traversal"),
    (b"/files/a.pdf%00.jpg", b"", "input_validation_fail"),
    (b"/redirect/%0d%0aLocation:%20http://evil", b"", "malicious_header_injection"),
    (b"/" + b"a" * 9000, b"", "input_validation_fail"),
])
def test_hostile_targets_are_recorded_and_passed_on_by_default(
        monitor: Monitor, raw_path: bytes, query: bytes, event_type: str) -> None:
    """A high event per hostile trait; without reject_malicious the app still answers."""
    recorder = _Recorder()
    reply = request(_wrap(recorder, monitor), "/x", raw_path=raw_path, query=query)
    assert recorder.calls == 1
    assert reply.status == 200
    [event] = stored_events(monitor)
    assert (event.event_type, event.severity) == (event_type, Severity.HIGH)
    span = only_span(monitor)
    assert (event.trace_id, event.span_id) == (span.trace_id, span.span_id)
    assert [e.name for e in span.events] == [event_type]


def test_clean_targets_are_remembered_and_hostile_ones_scanned_every_time(
        monitor: Monitor) -> None:
    """A target found clean is not scanned again (requests repeat them); a hostile one is
    never remembered, so each repeat is recorded, a clean path with a hostile query too; a
    flood of distinct paths keeps the remembered set bounded."""
    middleware = _wrap(_Recorder(), monitor)
    for _ in range(2):
        request(middleware, "/items")
        request(middleware, "/x", raw_path=b"/static/../etc/passwd")
        request(middleware, "/items", query=b"file=..%2f..%2fetc%2fpasswd")
    traversal = ["malicious_path_traversal"]
    assert [[e.name for e in span.events] for span in stored_spans(monitor)] == [
        [], traversal, traversal] * 2
    core = middleware._binding.current()
    assert core is not None
    remembered = core._clean_targets
    assert remembered == {(b"/items", b"")}
    for n in range(1100):
        request(middleware, f"/items/{n}")
    assert 0 < len(remembered) <= 1024


def test_reject_malicious_answers_400_without_calling_the_app(monitor: Monitor) -> None:
    recorder = _Recorder()
    reply = request(_wrap(recorder, monitor, reject_malicious=True), "/static/../etc/passwd",
                    headers=[(b"x-request-id", b"attack-00001")])
    assert recorder.calls == 0
    assert (reply.status, reply.body, reply.header("x-request-id")) == (
        400, b"Bad Request", "attack-00001")
    assert only_span(monitor).attributes["http.response.status_code"] == 400
    assert [e.event_type for e in stored_events(monitor)] == ["malicious_path_traversal"]
    head = request(_wrap(recorder, monitor, reject_malicious=True), "/static/../etc/passwd",
                   method="HEAD")
    assert (head.status, head.body, head.header("content-length")) == (400, b"", "11")


@pytest.mark.parametrize(("value", "event_type"), [
    (b"en\r\nSet-Cookie: admin=1", "malicious_header_injection"),
    (b"abc\x00def", "input_validation_fail"),
    (b"x" * 9000, "input_validation_fail"),
])
def test_hostile_header_values_are_recorded(monitor: Monitor, value: bytes,
                                            event_type: str) -> None:
    """CR/LF (response splitting), NUL and oversized header values; the value is not stored."""
    request(_wrap(_Recorder(), monitor), "/", headers=[(b"accept-language", value)])
    [event] = stored_events(monitor)
    assert (event.event_type, event.metadata["location"]) == (event_type,
                                                              "header:accept-language")
    assert "Set-Cookie" not in repr(event)
    assert "xxxxxxxx" not in repr(event)


def test_headers_large_only_together_are_not_findings(monitor: Monitor) -> None:
    """Many headers under the per-header limit add up past it: nothing is recorded."""
    headers = [(f"x-part-{i}".encode(), b"v" * 4000) for i in range(4)]
    reply = request(_wrap(_Recorder(), monitor), "/", headers=headers)
    assert reply.status == 200
    assert stored_events(monitor) == []


def test_a_declared_body_over_the_limit_gets_413_unread(monitor: Monitor) -> None:
    """Content-Length above max_body_bytes: 413 before the app or receive() is called."""
    recorder = _Recorder()
    received: list[int] = []
    wrapped = _wrap(recorder, monitor)

    async def main() -> Reply:
        reply = Reply()

        async def receive() -> dict[str, Any]:
            received.append(1)
            return {"type": "http.request", "body": b"x" * 10, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                reply.status, reply.headers = message["status"], message["headers"]

        scope = http_scope("/upload", method="POST",
                           headers=[(b"content-length", str(LIMIT + 1).encode())])
        await wrapped(scope, receive, send)
        return reply

    reply = asyncio.run(main())
    assert (reply.status, recorder.calls, received) == (413, 0, [])
    assert reply.header("connection") == "close"
    assert reply.header("x-request-id")
    [event] = stored_events(monitor)
    assert (event.event_type, event.severity) == ("request_too_large", Severity.MEDIUM)
    assert event.metadata["declared_bytes"] == LIMIT + 1


def test_a_declared_body_within_the_limit_passes(monitor: Monitor) -> None:
    recorder = _Recorder()
    reply = request(_wrap(recorder, monitor), "/upload", method="POST",
                    headers=[(b"content-length", b"1000")], body=[b"x" * 500, b"y" * 500])
    assert (reply.status, reply.body) == (200, b"read 1000")
    assert stored_events(monitor) == []


def test_a_streamed_body_is_cut_at_the_limit_with_413(monitor: Monitor) -> None:
    """No Content-Length (chunked): the app reads at most the limit, the client gets 413."""
    recorder = _Recorder()
    reply = request(_wrap(recorder, monitor), "/upload", method="POST",
                    headers=[(b"transfer-encoding", b"chunked")], body=[b"x" * 400] * 10)
    assert reply.status == 413
    assert reply.body == b"Request body too large"
    assert reply.error is None
    assert recorder.read <= LIMIT
    assert [m["type"] for m in reply.messages] == ["http.response.start", "http.response.body"]
    assert [e.event_type for e in stored_events(monitor)] == ["request_too_large"]
    assert only_span(monitor).attributes["http.response.status_code"] == 413


def test_a_chunked_body_declaring_a_small_length_is_still_cut(monitor: Monitor) -> None:
    """Content-Length and Transfer-Encoding together: servers follow the chunks (RFC 9112
    6.1), so the declared length proves nothing; the body is counted, and the pair recorded."""
    recorder = _Recorder()
    reply = request(_wrap(recorder, monitor), "/upload", method="POST",
                    headers=[(b"content-length", b"10"), (b"transfer-encoding", b"chunked")],
                    body=[b"x" * 400] * 10)
    assert reply.status == 413
    assert recorder.read <= LIMIT
    events = {e.event_type: e for e in stored_events(monitor)}
    assert set(events) == {"request_too_large", "input_validation_fail"}
    assert events["input_validation_fail"].severity == Severity.HIGH
    assert "smuggling" in events["input_validation_fail"].description


def test_an_app_that_swallows_the_cut_still_answers_413(monitor: Monitor) -> None:
    """The app catches the error and answers 500; the client gets the 413 instead."""
    recorder = _Recorder()
    reply = request(_wrap(recorder, monitor), "/careful-upload", method="POST",
                    body=[b"x" * 600] * 3)
    assert (reply.status, reply.body) == (413, b"Request body too large")
    assert [m["type"] for m in reply.messages] == ["http.response.start", "http.response.body"]
    assert [e.event_type for e in stored_events(monitor)] == ["request_too_large"]


def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(monitor: Monitor) -> None:
    """The proxy's X-Forwarded-For becomes client.address and the events' source."""
    wrapped = _wrap(_Recorder(), monitor, trusted_proxies=["10.0.0.0/8"])
    forwarded = [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9")]
    request(wrapped, "/status/403", client=("10.0.0.2", 5000), headers=forwarded)
    request(wrapped, "/status/403", client=("198.51.100.1", 5000), headers=forwarded)
    sources = sorted(e.source for e in stored_events(monitor))
    assert sources == ["198.51.100.1", "203.0.113.9"]


@pytest.mark.parametrize("scope_change", [
    {"client": None},  # unix socket / in-process: no peer
    {"headers": [(b"x-request-id", b"\xff\xfe\x00bad"), (b"user-agent", b"\xc3\x28\xff")]},
    {"path": "/caf\udcc3\udca9", "raw_path": None},  # surrogate-escaped path text
    {"method": "G\x00T"},
    {"server": None, "headers": []},
    {"query_string": b"\xff\xfe=%%%"},
])
def test_odd_input_never_crashes_the_middleware(monitor: Monitor,
                                                scope_change: dict[str, Any]) -> None:
    """Undecodable bytes, missing fields: the request is answered and stored escaped."""
    recorder = _Recorder()
    scope = http_scope("/")
    for key, value in scope_change.items():
        if value is None:
            scope.pop(key, None)
        elif key == "headers":
            scope["headers"] = value
        else:
            scope[key] = value
    reply = asyncio.run(call_asgi(_wrap(recorder, monitor), scope))
    assert reply.error is None
    assert reply.status is not None
    assert reply.header("x-request-id")
    for span in [only_span(monitor)]:
        for value in span.attributes.values():
            assert not isinstance(value, str) or value.isprintable()


def test_a_cut_after_the_response_started_reaches_the_server(monitor: Monitor) -> None:
    """An app streaming its answer while reading: the cut aborts, the server drops the line."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            await send({"type": "http.response.body", "body": b"ack", "more_body": True})
            if not message.get("more_body"):
                break

    wrapped = ASGIMiddleware(app, monitor=monitor, health=False, max_body_bytes=LIMIT)
    reply = asyncio.run(call_asgi(wrapped, http_scope("/echo", method="POST"),
                                  [b"x" * 600] * 3))
    assert reply.error is not None
    assert type(reply.error).__name__ == "_BodyTooLarge"
    assert reply.status == 200
    assert [e.event_type for e in stored_events(monitor)] == ["request_too_large"]


@pytest.mark.parametrize("declared", [b"\xb2", b"12abc", b"-5"])
def test_a_malformed_content_length_is_invalid_input(monitor: Monitor, declared: bytes) -> None:
    """Found by hypothesis: "²" passes str.isdigit() but not int(); it must not crash."""
    reply = request(_wrap(_Recorder(), monitor), "/", headers=[(b"content-length", declared)])
    assert reply.error is None
    assert reply.header("x-request-id")
    [event] = stored_events(monitor)
    assert (event.event_type, event.metadata["location"]) == ("input_validation_fail",
                                                              "header:content-length")


def test_an_absurd_content_length_is_413(monitor: Monitor) -> None:
    reply = request(_wrap(_Recorder(), monitor), "/upload", method="POST",
                    headers=[(b"content-length", b"9" * 5000)])
    assert reply.status == 413
