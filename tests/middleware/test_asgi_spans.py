"""Server spans, routes, header capture, websockets, lifespan and errors (ASGI, in-process)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from ragtrail import Severity
from ragtrail.instrument import Monitor, correlation_id
from ragtrail.middleware import ASGIMiddleware

from ._support import call_asgi, http_scope, only_span, request, stored_events, stored_spans


async def _item(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"item {request.path_params['item_id']}")


async def _plain(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _cookies(request: Request) -> Response:
    response = PlainTextResponse("ok")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


async def _boom(request: Request) -> Response:
    raise RuntimeError("database password=hunter2 rejected")


async def _status(request: Request) -> Response:
    return PlainTextResponse("status", status_code=int(request.path_params["code"]))


async def _echo_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(correlation_id() or "none")
    await websocket.close()


def _app(monitor: Monitor, **options: Any) -> Starlette:
    api = Starlette(routes=[Route("/items/{item_id:int}", _item)])
    app = Starlette(routes=[
        Route("/items/{item_id:int}", _item),
        Route("/health", _plain),
        Route("/api/health", _plain),
        Route("/plain", _plain, methods=["GET", "POST", "PURGE"]),
        Route("/cookies", _cookies),
        Route("/boom", _boom),
        Route("/status/{code}", _status),
        Mount("/v2", app=api),
        WebSocketRoute("/ws", _echo_socket),
    ])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=False, **options)
    return app


def test_the_server_span_follows_the_http_semantic_conventions(monitor: Monitor) -> None:
    """One server span per request, named METHOD route, with the semconv attributes."""
    request(_app(monitor), "/items/42", headers=[(b"user-agent", b"curl/8.5.0")])
    span = only_span(monitor)
    assert (span.name, span.kind, span.status) == ("GET /items/{item_id:int}", "server", "ok")
    attributes = span.attributes
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/items/42"
    assert attributes["url.scheme"] == "http"
    assert attributes["http.route"] == "/items/{item_id:int}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["client.address"] == "127.0.0.1"
    assert attributes["user_agent.original"] == "curl/8.5.0"
    assert (attributes["server.address"], attributes["server.port"]) == ("testserver", 8000)
    assert attributes["network.protocol.version"] == "1.1"
    assert span.duration_us >= 0


def test_a_route_inside_a_mount_carries_the_mount_prefix(monitor: Monitor) -> None:
    request(_app(monitor), "/v2/items/7")
    span = only_span(monitor)
    assert span.attributes["http.route"] == "/v2/items/{item_id:int}"
    assert span.name == "GET /v2/items/{item_id:int}"


def test_unmatched_paths_have_no_route(monitor: Monitor) -> None:
    """A 404 names the span by method alone, keeping span names low-cardinality."""
    reply = request(_app(monitor), "/no/such/page")
    span = only_span(monitor)
    assert reply.status == 404
    assert span.name == "GET"
    assert "http.route" not in span.attributes


def test_unknown_methods_are_reported_as_other(monitor: Monitor) -> None:
    """OTel semconv: methods outside the known set become _OTHER (and the span "HTTP ...")."""
    request(_app(monitor), "/plain", method="PURGE")
    span = only_span(monitor)
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "PURGE"
    assert span.name == "HTTP /plain"


def test_excluded_paths_get_no_span_but_keep_their_id(monitor: Monitor) -> None:
    """The health routes are excluded by default; the response still carries an ID."""
    reply = request(_app(monitor), "/health", headers=[(b"x-request-id", b"probe-000001")])
    assert reply.status == 200
    assert reply.header("x-request-id") == "probe-000001"
    assert stored_spans(monitor) == []


@pytest.mark.parametrize(("path", "query"), [
    ("/api/health", b""),  # the excluded path as a suffix
    ("/plain", b"next=/health"),  # the excluded path in the query
])
def test_exclusion_is_anchored_to_the_whole_path(monitor: Monitor, path: str,
                                                 query: bytes) -> None:
    request(_app(monitor), path, query=query)
    assert len(stored_spans(monitor)) == 1


def test_custom_exclusions_replace_the_defaults(monitor: Monitor) -> None:
    app = _app(monitor, exclude_paths=["/plain", "/items/*"])
    for path in ("/plain", "/items/3", "/health"):
        request(app, path)
    assert [s.attributes["url.path"] for s in stored_spans(monitor)] == ["/health"]



def test_repeated_requests_share_attributes_but_not_their_client(monitor: Monitor) -> None:
    """The attributes a path, agent and host make are built once and reused: a repeat from
    another client still gets its own address, a secret in the path stays redacted on the
    repeat, and a flood of distinct paths keeps the reused set bounded."""
    app = _app(monitor)
    secret_path = "/plain/token=ghp_" + "a1B2c3D4e5" * 4
    for client in (("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.1", 3)):
        request(app, secret_path, client=client, headers=[(b"user-agent", b"probe/1")])
    spans = stored_spans(monitor)
    assert [s.attributes["client.address"] for s in spans] == [
        "10.0.0.1", "10.0.0.2", "10.0.0.1"]
    for span in spans:
        assert "ghp_" not in str(span.attributes)
        assert "[REDACTED]" in span.attributes["url.path"]
        assert span.attributes["user_agent.original"] == "probe/1"
    core = app.middleware_stack
    while not isinstance(core, ASGIMiddleware):
        core = core.app
    shared = core._binding.current()._shared_attributes
    assert len(shared) == 1
    for n in range(1100):
        request(app, f"/items/{n}")
    assert 0 < len(shared) <= 1024

_TOKEN = "ghp_" + "Zq8Xw3Vb7Nm2Lk5Jh9Gf4Dd6Ss1Aa0Pp3Oo"  # a GitHub token, 40 characters


@pytest.mark.parametrize(("where", "cut_at"), [
    ("url.path", 2048), ("user_agent.original", 512), ("event path", 256)])
def test_a_secret_crossing_a_cut_is_redacted_whole(monitor: Monitor, where: str,
                                                    cut_at: int) -> None:
    """Long client text is cut before the store, and redacted before the cut: a token that
    starts 10 characters before the cut leaves no part of itself (the pattern would no
    longer match the 10 characters, or even 30, left after a cut made first)."""
    padded = "a" * (cut_at - 10 - 4) + "/" + _TOKEN
    if where == "url.path":
        request(_app(monitor), "/x" + padded)
        stored = str(only_span(monitor).attributes["url.path"])
    elif where == "user_agent.original":
        request(_app(monitor), "/plain", headers=[(b"user-agent", padded[1:].encode())])
        stored = str(only_span(monitor).attributes["user_agent.original"])
    else:  # a traversal makes an event whose metadata holds the path
        request(_app(monitor), "/../" + padded[4:])
        stored = str(stored_events(monitor)[0].metadata["path"])
    assert "[REDACTED]" in stored
    assert "ghp_" not in stored
    assert len(stored) <= cut_at + 40  # the cut and its marker


def test_allowlisted_headers_are_captured_and_secrets_redacted(monitor: Monitor) -> None:
    """Only allowlisted headers are kept; secret-named ones are always [REDACTED]."""
    app = _app(monitor, capture_headers=["Content-Type", "Authorization", "Cookie",
                                         "X-Api-Token", "Set-Cookie", "X-Note",
                                         "X-Functions-Key", "X-Shopify-Hmac-Sha256",
                                         "X-Private-Key", "Passphrase", "X-Sig", "X-Pwd"])
    request(app, "/cookies", headers=[
        (b"content-type", b"text/plain"),
        (b"authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"),
        (b"cookie", b"session=abc123"),
        (b"x-api-token", b"tok_live_51HxyzABCDEF0123456789"),
        (b"x-note", b"hello"),
        (b"x-functions-key", b"fk-plain"),
        (b"x-shopify-hmac-sha256", b"c2hvcGlmeQ=="),
        (b"x-private-key", b"correct horse battery"),
        (b"passphrase", b"correct horse battery"),
        (b"x-sig", b"9f86d081884c7d659a2feaa0c55ad015"),
        (b"x-pwd", b"hunter2"),
        (b"x-unlisted", b"not captured"),
    ])
    attributes = only_span(monitor).attributes
    assert attributes["http.request.header.content-type"] == ["text/plain"]
    assert attributes["http.request.header.authorization"] == ["[REDACTED]"]
    assert attributes["http.request.header.cookie"] == ["[REDACTED]"]
    assert attributes["http.request.header.x-api-token"] == ["[REDACTED]"]
    assert attributes["http.request.header.x-note"] == ["hello"]
    assert attributes["http.request.header.x-functions-key"] == ["[REDACTED]"]
    assert attributes["http.request.header.x-shopify-hmac-sha256"] == ["[REDACTED]"]
    for name in ("x-private-key", "passphrase", "x-sig", "x-pwd"):  # the redactor's key rule
        assert attributes[f"http.request.header.{name}"] == ["[REDACTED]"], name
    assert attributes["http.response.header.set-cookie"] == ["[REDACTED]", "[REDACTED]"]
    assert not any("x-unlisted" in key for key in attributes)
    assert "abc123" not in repr(attributes)
    assert "eyJ" not in repr(attributes)


def test_repeated_response_headers_survive(monitor: Monitor) -> None:
    """The ID header is appended: both Set-Cookie lines reach the client."""
    reply = request(_app(monitor), "/cookies")
    assert len(reply.header_values("set-cookie")) == 2
    assert len(reply.header_values("x-request-id")) == 1


def test_an_unhandled_exception_gets_a_500_with_the_id_and_still_propagates(
        monitor: Monitor) -> None:
    """The client sees a 500 carrying its ID; the server still receives the exception."""
    reply = request(_app(monitor), "/boom", headers=[(b"x-request-id", b"failing-call-1")])
    assert isinstance(reply.error, RuntimeError)
    assert reply.status == 500
    assert reply.header("x-request-id") == "failing-call-1"
    assert reply.body == b"Internal Server Error"
    span = only_span(monitor)
    assert (span.status, span.error_type) == ("error", "RuntimeError")
    assert span.attributes["http.response.status_code"] == 500
    assert "hunter2" not in (span.error_message or "")
    [event] = stored_events(monitor)
    assert (event.event_type, event.severity) == ("server_error", Severity.HIGH)
    assert event.correlation_id == "failing-call-1"
    assert event.metadata["exception_type"] == "RuntimeError"


def test_a_5xx_answer_is_a_server_error(monitor: Monitor) -> None:
    request(_app(monitor), "/status/503")
    span = only_span(monitor)
    assert span.status == "error"
    assert span.attributes["error.type"] == "503"
    # The span's own error columns too: `ragtrail spans --errors-only` shows "503: ..."
    assert (span.error_type, span.error_message) == ("503", "the app answered 503")
    [event] = stored_events(monitor)
    assert (event.event_type, event.severity, event.metadata["status"]) == (
        "server_error", Severity.HIGH, 503)


def test_an_exception_after_the_response_started_only_propagates(monitor: Monitor) -> None:
    """Once headers went out, no second response is attempted; the error is recorded."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ConnectionError("backend went away")

    reply = asyncio.run(call_asgi(ASGIMiddleware(app, monitor=monitor, health=False),
                                  http_scope("/stream")))
    assert isinstance(reply.error, ConnectionError)
    assert [m["type"] for m in reply.messages] == ["http.response.start", "http.response.body"]
    span = only_span(monitor)
    assert (span.status, span.error_type, span.attributes["http.response.status_code"]) == (
        "error", "ConnectionError", 200)


def test_lifespan_passes_through_untouched(monitor: Monitor) -> None:
    """The app gets the very scope and receive of a lifespan call, and every message it sends
    reaches the server unchanged; no span is made."""
    seen: list[Any] = []
    messages = [{"type": "lifespan.startup.complete"},
                {"type": "lifespan.shutdown.failed", "message": "boom"}]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.extend((scope, receive))
        for message in messages:
            await send(message)

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    sent: list[dict[str, Any]] = []
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    asyncio.run(ASGIMiddleware(app, monitor=monitor, health=False)(scope, receive, send))
    assert seen == [scope, receive]
    assert sent == messages
    assert sent[1] is messages[1]
    assert scope == {"type": "lifespan", "asgi": {"version": "3.0"}}
    assert stored_spans(monitor) == []


def test_the_lifespan_shutdown_writes_out_the_queues_first(
        make_monitor: Callable[..., Monitor]) -> None:
    """uvicorn re-raises SIGTERM once the app reports its shutdown done, and exit handlers
    never run: what ragtrail still queues is written before that message reaches the server
    (the writer here would wait 5 s for a batch to fill)."""
    monitor = make_monitor(batch_linger_seconds=5)
    committed_when_done: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        monitor.security_event("authz_fail", "medium", "10.0.0.1", "left in the queue")
        await send({"type": "lifespan.shutdown.complete"})

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.shutdown"}

    async def send(message: dict[str, Any]) -> None:
        committed_when_done.append(len(monitor.store.events(event_type="authz_fail")))

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    asyncio.run(ASGIMiddleware(app, monitor=monitor, health=False)(
        scope, receive, send))
    assert committed_when_done == [1]


def test_unknown_scope_types_pass_through(monitor: Monitor) -> None:
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    asyncio.run(ASGIMiddleware(app, monitor=monitor, health=False)(
        {"type": "webtransport"}, None, None))  # type: ignore[arg-type]
    assert calls == ["webtransport"]


def test_a_websocket_gets_an_id_and_one_span(monitor: Monitor) -> None:
    """The handshake answer carries the ID; the session is one server span."""
    app = _app(monitor)
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope("/ws", headers=[(b"x-request-id", b"socket-id-0001")],
                       scope_type="websocket")
    scope["scheme"] = "ws"
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    accept = next(m for m in sent if m["type"] == "websocket.accept")
    assert (b"x-request-id", b"socket-id-0001") in accept["headers"]
    assert {"type": "websocket.send", "text": "socket-id-0001"} in [
        {k: v for k, v in m.items() if k in ("type", "text")} for m in sent]
    span = only_span(monitor)
    assert (span.name, span.kind, span.correlation_id) == ("WEBSOCKET /ws", "server",
                                                           "socket-id-0001")
    assert span.attributes["url.scheme"] == "ws"


def test_concurrent_requests_never_mix_their_ids(monitor: Monitor) -> None:
    """50 interleaved requests: each sees, echoes and stores only its own ID."""
    gate = asyncio.Event()

    async def slow(request: Request) -> PlainTextResponse:
        await gate.wait()  # every request is in flight at once
        await asyncio.sleep(0)
        return PlainTextResponse(correlation_id() or "none")

    app = Starlette(routes=[Route("/slow", slow)])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=False)

    async def main() -> list[Any]:
        calls = [call_asgi(app, http_scope("/slow", headers=[
            (b"x-request-id", f"concurrent-{n:04d}".encode())])) for n in range(50)]
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*tasks)

    replies = asyncio.run(main())
    for n, reply in enumerate(replies):
        assert reply.header("x-request-id") == reply.body.decode() == f"concurrent-{n:04d}"
    spans = stored_spans(monitor)
    assert sorted(s.correlation_id or "" for s in spans) == [
        f"concurrent-{n:04d}" for n in range(50)]
    assert len({s.trace_id for s in spans}) == 50


def test_a_mounted_app_without_routes_is_named_by_its_mount(monitor: Monitor) -> None:
    """A Mount around a plain ASGI app (static files, a sub-app) yields a template route."""
    async def files(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await PlainTextResponse("file")(scope, receive, send)

    app = Starlette(routes=[Mount("/static", app=files)])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=False)
    request(app, "/static/css/site.css")
    assert only_span(monitor).attributes["http.route"] == "/static/{path:path}"


def test_a_scope_the_middleware_cannot_read_is_passed_on(
        monitor: Monitor, caplog: pytest.LogCaptureFixture) -> None:
    """Malformed headers make the middleware step aside (and log), not fail the request."""
    app = _app(monitor)
    scope = http_scope("/plain")
    scope["headers"] = [(b"x-only-a-name",)]
    reply = asyncio.run(call_asgi(app, scope))
    assert (reply.error, reply.status, reply.body) == (None, 200, b"ok")
    assert stored_spans(monitor) == []
    assert "could not read a request" in caplog.text


def test_the_500_is_best_effort_when_the_client_is_gone(monitor: Monitor) -> None:
    """If sending the 500 fails too, the app's own exception is what propagates."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise LookupError("the real failure")

    async def send(message: dict[str, Any]) -> None:
        raise OSError("connection reset")

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    wrapped = ASGIMiddleware(app, monitor=monitor, health=False)
    with pytest.raises(LookupError):
        asyncio.run(wrapped(http_scope("/"), receive, send))
    assert only_span(monitor).error_type == "LookupError"


@pytest.mark.parametrize(("path", "events"), [
    ("/ws", ["authz_fail"]),  # the app refused it (1008, policy violation)
    ("/no-such-socket", []),  # the router had no route (1000): a 404, not a refusal
    ("/ws/own-code", ["authz_fail"]),  # an app's own code (4403)
])
def test_a_websocket_refused_before_accepting_is_an_authz_failure(
        monitor: Monitor, path: str, events: list[str]) -> None:
    """ASGI: closing before accept makes the server answer 403; only a refusal by policy is
    an access failure."""
    async def refuse(websocket: WebSocket) -> None:
        await websocket.close(code=1008 if websocket.url.path == "/ws" else 4403)

    app = Starlette(routes=[WebSocketRoute("/ws", refuse), WebSocketRoute("/ws/own-code", refuse)])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=False)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(http_scope(path, scope_type="websocket"), receive, send))
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert only_span(monitor).attributes["http.response.status_code"] == 403
    assert [e.event_type for e in stored_events(monitor)] == events


def test_a_hostile_websocket_handshake_is_refused_when_asked(monitor: Monitor) -> None:
    """reject_malicious closes the handshake (403) without running the app."""
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append("app")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    wrapped = ASGIMiddleware(app, monitor=monitor, health=False, reject_malicious=True)
    asyncio.run(wrapped(http_scope("/ws/../admin", scope_type="websocket"), None, send))  # type: ignore[arg-type]
    assert calls == []
    assert sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.parametrize("key", [500, Exception])
def test_the_apps_own_500_handler_answers_an_unhandled_exception(
        key: Any, monitor: Monitor) -> None:
    """Starlette runs the app's handler outside every added middleware and sends its answer
    only if none was started: ragtrail's own 500 went first and the client got text/plain
    instead of the app's JSON. The exception is still recorded."""
    async def boom(request: Request) -> Response:
        raise RuntimeError("store down")

    async def handler(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "sorry"}, status_code=500)

    app = Starlette(routes=[Route("/boom", boom)], exception_handlers={key: handler})
    app.add_middleware(ASGIMiddleware, monitor=monitor)
    reply = request(app, "/boom")
    assert isinstance(reply.error, RuntimeError)
    assert (reply.status, json.loads(reply.body)) == (500, {"error": "sorry"})
    assert only_span(monitor).error_type == "RuntimeError"
    assert len(stored_events(monitor, "server_error")) == 1


def _with_background(monitor: Monitor, task: Callable[[], Any]) -> Any:
    async def answer(request: Request) -> Response:
        return PlainTextResponse("accepted", background=BackgroundTask(task))

    app = Starlette(routes=[Route("/ingest", answer)])
    app.add_middleware(ASGIMiddleware, monitor=monitor)
    return app


def test_the_span_ends_with_the_response_not_with_its_background_tasks(
        monitor: Monitor) -> None:
    """Starlette runs a response's background tasks inside the app's call, after the answer
    went out: a 300 ms task made a fast request's span 300 ms long (latency percentiles and
    exported durations inflated), as OpenTelemetry's own ASGI middleware no longer does."""
    async def index_later() -> None:
        await asyncio.sleep(0.3)  # the background work being timed, not a synchronisation

    reply = request(_with_background(monitor, index_later), "/ingest")
    assert (reply.status, reply.body) == (200, b"accepted")
    span = only_span(monitor)
    assert (span.status, span.attributes["http.route"]) == ("ok", "/ingest")
    assert span.duration_us < 250_000


def test_a_background_task_failing_after_the_answer_is_an_event_not_a_failed_request(
        monitor: Monitor) -> None:
    """The client got its 200: the span says so; the failure is still a server_error."""
    def fail_later() -> None:
        raise OSError("index unavailable")

    reply = request(_with_background(monitor, fail_later), "/ingest")
    assert isinstance(reply.error, OSError)  # still reaches the server
    span = only_span(monitor)
    assert (span.status, span.attributes["http.response.status_code"]) == ("ok", 200)
    [event] = stored_events(monitor, "server_error")  # the sampler may add its own
    assert event.metadata["exception_type"] == "OSError"
    assert "after the response was sent" in event.description


async def _raising(request: Request) -> Response:
    raise RuntimeError("store down")


@pytest.mark.parametrize("layout", ["wrapped, own handler", "wrapped", "mounted sub-app"])
def test_a_failure_the_app_answered_with_a_500_itself_is_a_failed_request(
        layout: str, monitor: Monitor) -> None:
    """Starlette's outermost layer answers an unhandled exception with a 500, then raises it:
    with the middleware outside that layer (the whole app wrapped, or a Starlette app mounted
    in another) the response is complete when the exception arrives, and it is still a
    failed request, not a background task's failure after a success."""
    async def handler(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "sorry"}, status_code=500)

    app: Any
    if layout == "mounted sub-app":
        app = Starlette(routes=[Mount("/v2", app=Starlette(routes=[Route("/boom", _raising)]))])
        app.add_middleware(ASGIMiddleware, monitor=monitor, health=False)
    else:
        handlers = {500: handler} if layout == "wrapped, own handler" else {}
        app = ASGIMiddleware(Starlette(routes=[Route("/boom", _raising)],
                                       exception_handlers=handlers), monitor=monitor)
    reply = request(app, "/v2/boom" if layout == "mounted sub-app" else "/boom")
    assert (reply.status, isinstance(reply.error, RuntimeError)) == (500, True)
    assert only_span(monitor).status == "error"
    [event] = stored_events(monitor, "server_error")
    assert "background task" not in event.description


def test_a_file_sent_with_pathsend_ends_the_span(monitor: Monitor, tmp_path: Path) -> None:
    """The ``http.response.pathsend`` extension (granian) ends a FileResponse: the span ends
    there too, not after the response's background task."""
    report = tmp_path / "report.txt"
    report.write_text("report")

    async def index_later() -> None:
        await asyncio.sleep(0.3)  # the background work being timed

    async def download(request: Request) -> Response:
        return FileResponse(report, background=BackgroundTask(index_later))

    app = Starlette(routes=[Route("/report", download)])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=False)
    scope = http_scope("/report")
    scope["extensions"] = {"http.response.pathsend": {}}
    reply = asyncio.run(call_asgi(app, scope))
    assert reply.messages[-1]["type"] == "http.response.pathsend"
    assert only_span(monitor).duration_us < 250_000
