"""The WSGI middleware: Flask and plain WSGI apps, in-process and under a real waitress."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from flask import Flask, request

from ragtrail import Severity
from ragtrail.instrument import Monitor, correlation_id
from ragtrail.middleware import WSGIMiddleware

from ._support import (
    call_wsgi,
    only_span,
    stored_events,
    stored_spans,
    wait_until,
    waitress_server,
    wsgi_environ,
)

StartResponse = Callable[..., Any]
LIMIT = 1000


def _flask(monitor: Monitor, **options: Any) -> Flask:
    app = Flask("wsgi-tests")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return f"{item_id} {correlation_id()}"

    @app.get("/denied")
    def denied() -> tuple[str, int]:
        return "no", 403

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("flask view failed")

    @app.post("/upload")
    def upload() -> str:
        try:
            return str(len(request.get_data()))
        except Exception:
            return "upload failed", 500  # type: ignore[return-value]

    app.wsgi_app = WSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, monitor=monitor, health=False, max_body_bytes=LIMIT, **options)
    return app


class _Closing:
    """A response iterable that records close(), as PEP 3333 requires servers to call it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = threading.Event()
        self.correlation_at_close: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.correlation_at_close = correlation_id()
        self.closed.set()


# -- in-process -----------------------------------------------------------------------------

def test_flask_requests_get_an_id_a_route_and_a_span(monitor: Monitor) -> None:
    reply = call_wsgi(_flask(monitor), wsgi_environ(
        "/items/7", headers={"X-Request-ID": "flask-call-001", "User-Agent": "pytest"}))
    assert reply.status == "200 OK"
    assert reply.header("X-Request-ID") == "flask-call-001"
    assert reply.body == b"7 flask-call-001"
    span = only_span(monitor)
    assert (span.name, span.correlation_id) == ("GET /items/<int:item_id>", "flask-call-001")
    assert span.attributes["http.route"] == "/items/<int:item_id>"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["user_agent.original"] == "pytest"
    assert span.attributes["client.address"] == "127.0.0.1"


def test_the_id_is_current_only_inside_the_request(monitor: Monitor) -> None:
    """The server thread's context is left as it was: no ID leaks to the next request."""
    app = _flask(monitor)
    call_wsgi(app, wsgi_environ("/items/1", headers={"X-Request-ID": "first-request-1"}))
    assert correlation_id() is None
    reply = call_wsgi(app, wsgi_environ("/items/2"))
    assert b"first-request-1" not in reply.body


def test_flask_error_pages_carry_the_id_and_are_server_errors(monitor: Monitor) -> None:
    """Flask turns the exception into its own 500; the middleware still echoes and records."""
    reply = call_wsgi(_flask(monitor), wsgi_environ(
        "/boom", headers={"X-Request-ID": "flask-fail-001"}))
    assert reply.status is not None
    assert reply.status.startswith("500")
    assert reply.header("X-Request-ID") == "flask-fail-001"
    [event] = stored_events(monitor)
    assert (event.event_type, event.severity, event.correlation_id) == (
        "server_error", Severity.HIGH, "flask-fail-001")


def test_access_failures_are_recorded(monitor: Monitor) -> None:
    call_wsgi(_flask(monitor), wsgi_environ("/denied"))
    [event] = stored_events(monitor)
    assert (event.event_type, event.severity, event.source) == ("authz_fail", Severity.MEDIUM,
                                                                "127.0.0.1")


def test_an_exception_before_the_response_gets_a_500_then_reaches_the_server(
        monitor: Monitor) -> None:
    """The client gets a 500 with its ID; the exception is raised again from the body."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise KeyError("missing config")

    reply = call_wsgi(WSGIMiddleware(app, monitor=monitor, health=False),
                      wsgi_environ("/", headers={"X-Request-ID": "raw-wsgi-fail1"}))
    assert reply.status == "500 Internal Server Error"
    assert reply.header("X-Request-ID") == "raw-wsgi-fail1"
    assert reply.body == b"Internal Server Error"
    assert isinstance(reply.error, KeyError)
    span = only_span(monitor)
    assert (span.status, span.error_type) == ("error", "KeyError")
    assert [e.event_type for e in stored_events(monitor)] == ["server_error"]


def test_a_generator_failing_before_its_first_chunk_also_gets_the_500(
        monitor: Monitor) -> None:
    """Headers not yet on the wire are replaced (PEP 3333 exc_info) by the 500 with the ID."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise ValueError("render failed")
        yield b"never"

    reply = call_wsgi(WSGIMiddleware(app, monitor=monitor, health=False), wsgi_environ("/"))
    assert reply.status == "500 Internal Server Error"
    assert reply.start_calls == 2
    assert reply.header("X-Request-ID")
    assert isinstance(reply.error, ValueError)
    assert only_span(monitor).error_type == "ValueError"


def test_a_failure_after_the_first_chunk_only_propagates(monitor: Monitor) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        raise ValueError("stream broke")

    reply = call_wsgi(WSGIMiddleware(app, monitor=monitor, health=False), wsgi_environ("/"))
    assert (reply.status, reply.body, reply.start_calls) == ("200 OK", b"partial", 1)
    assert isinstance(reply.error, ValueError)
    span = only_span(monitor)
    assert (span.status, span.attributes["http.response.status_code"]) == ("error", 200)


def test_the_apps_iterable_is_closed_and_the_span_ends_there(monitor: Monitor) -> None:
    """close() reaches the app's iterable, inside the request's context; the span ends then."""
    body = _Closing([b"a", b"b"])

    def app(environ: dict[str, Any], start_response: StartResponse) -> _Closing:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    wrapped = WSGIMiddleware(app, monitor=monitor, health=False)
    environ = wsgi_environ("/", headers={"X-Request-ID": "closing-call-1"})
    result = wrapped(environ, lambda *args: None)
    assert b"".join(result) == b"ab"
    assert stored_spans(monitor) == []  # not ended before the server closes the body
    result.close()  # type: ignore[attr-defined]
    assert body.closed.is_set()
    assert body.correlation_at_close == "closing-call-1"
    assert only_span(monitor).correlation_id == "closing-call-1"


def test_the_wrapped_body_is_one_pass_however_often_it_is_iterated(monitor: Monitor) -> None:
    """A server that calls iter() on the body again continues where it was, as on the app's
    own iterator: the chunks are never sent twice."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a", b"b"]

    result = WSGIMiddleware(app, monitor=monitor, health=False)(wsgi_environ("/"),
                                                                  lambda *args: None)
    assert next(iter(result)) == b"a"
    assert list(result) == [b"b"]
    assert list(result) == []
    result.close()  # type: ignore[attr-defined]
    assert only_span(monitor).attributes["http.response.status_code"] == 200


def test_a_declared_body_over_the_limit_gets_413_unread(monitor: Monitor) -> None:
    environ = wsgi_environ("/upload", method="POST", body=b"x" * (LIMIT + 1))
    reply = call_wsgi(_flask(monitor), environ)
    assert reply.status is not None
    assert reply.status.startswith("413 ")
    assert environ["wsgi.input"].tell() == 0
    assert [e.event_type for e in stored_events(monitor)] == ["request_too_large"]


def test_a_chunked_body_is_cut_at_the_limit(monitor: Monitor) -> None:
    """Without Content-Length the input is counted; Flask's own 500 is replaced by 413."""
    environ = wsgi_environ("/upload", method="POST", HTTP_TRANSFER_ENCODING="chunked")
    environ["wsgi.input"].write(b"y" * 5000)
    environ["wsgi.input"].seek(0)
    environ["wsgi.input_terminated"] = True
    reply = call_wsgi(_flask(monitor), environ)
    assert (reply.status or "")[:4] == "413 "
    assert reply.body == b"Request body too large"
    assert reply.start_calls == 1
    assert environ["wsgi.input"]._input.tell() <= LIMIT + 1
    assert [e.event_type for e in stored_events(monitor)] == ["request_too_large"]
    assert only_span(monitor).attributes["http.response.status_code"] == 413


def test_a_chunked_body_declaring_a_small_length_is_counted_too(monitor: Monitor) -> None:
    """A server that passes both headers on and follows the chunks (it says so with
    ``wsgi.input_terminated``) gets the body counted, and the pair recorded."""
    environ = wsgi_environ("/upload", method="POST", HTTP_TRANSFER_ENCODING="chunked",
                           CONTENT_LENGTH="10")
    environ["wsgi.input"].write(b"y" * 5000)
    environ["wsgi.input"].seek(0)
    environ["wsgi.input_terminated"] = True
    reply = call_wsgi(_flask(monitor), environ)
    assert (reply.status or "")[:4] == "413 "
    assert environ["wsgi.input"]._input.tell() <= LIMIT + 1
    assert sorted(e.event_type for e in stored_events(monitor)) == [
        "input_validation_fail", "request_too_large"]


def test_hostile_targets_are_seen_through_the_decoded_environ(monitor: Monitor) -> None:
    """PATH_INFO is decoded once by the server; the double encoding underneath still shows."""
    environ = wsgi_environ("/static/%2e%2e/%2e%2e/etc/passwd",
                           REQUEST_URI="/static/%252e%252e/%252e%252e/etc/passwd")
    reply = call_wsgi(_flask(monitor, reject_malicious=True), environ)
    assert reply.status == "400 Bad Request"
    assert [e.event_type for e in stored_events(monitor)] == ["malicious_path_traversal"]


@pytest.mark.parametrize(("value", "event_type"), [
    ("en\r\nSet-Cookie: admin=1", "malicious_header_injection"),
    ("abc\x00def", "input_validation_fail"),
    ("x" * 9000, "input_validation_fail"),
])
def test_hostile_header_values_are_recorded(monitor: Monitor, value: str,
                                            event_type: str) -> None:
    """CR/LF, NUL and oversized header values in the environ; the value is not stored."""
    environ = wsgi_environ("/items/1", HTTP_ACCEPT_LANGUAGE=value, HTTP_X_OTHER="fine")
    call_wsgi(_flask(monitor), environ)
    [event] = stored_events(monitor)
    assert (event.event_type, event.metadata["location"]) == (event_type,
                                                              "header:accept-language")
    assert "Set-Cookie" not in repr(event)


def test_content_type_is_inspected_like_any_header(monitor: Monitor) -> None:
    """CGI names Content-Type and Content-Length without HTTP_; they are headers all the same
    (the ASGI side sees them among the rest)."""
    call_wsgi(_flask(monitor), wsgi_environ("/items/1", CONTENT_TYPE="text/plain\x00x"))
    [event] = stored_events(monitor)
    assert (event.event_type, event.metadata["location"]) == ("input_validation_fail",
                                                              "header:content-type")


def test_headers_large_only_together_are_not_findings(monitor: Monitor) -> None:
    """Many headers under the per-header limit add up past it: nothing is recorded."""
    headers = {f"HTTP_X_PART_{i}": "v" * 4000 for i in range(4)}
    call_wsgi(_flask(monitor), wsgi_environ("/items/1", **headers))
    assert stored_events(monitor) == []


def test_server_variables_are_never_header_findings(monitor: Monitor) -> None:
    """wsgiref copies the process environment into every request: a multi-line variable (a
    certificate) and a long one are not headers. A hostile header beside them still is."""
    server_variables = {"TLS_CERT": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END-----",
                        "LONG_PATH": "/opt/bin:" * 2000}
    call_wsgi(_flask(monitor), wsgi_environ("/items/1", **server_variables))
    assert stored_events(monitor) == []
    call_wsgi(_flask(monitor), wsgi_environ("/items/1", HTTP_X_NOTE="a\r\nb",
                                            **server_variables))
    [event] = stored_events(monitor)
    assert (event.event_type, event.metadata["location"]) == ("malicious_header_injection",
                                                              "header:x-note")


# -- under waitress -------------------------------------------------------------------------

@pytest.mark.network
def test_flask_under_waitress_keeps_concurrent_ids_apart(monitor: Monitor) -> None:
    with waitress_server(_flask(monitor)) as base, httpx.Client(base_url=base,
                                                                 timeout=10) as client:
        def fetch(n: int) -> httpx.Response:
            return client.get(f"/items/{n}", headers={"X-Request-ID": f"waitress-{n:04d}"})

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(fetch, range(32)))
    for n, response in enumerate(responses):
        assert response.headers["x-request-id"] == f"waitress-{n:04d}"
        assert response.text == f"{n} waitress-{n:04d}"
    spans = stored_spans(monitor)
    assert sorted(s.correlation_id or "" for s in spans) == [f"waitress-{n:04d}"
                                                             for n in range(32)]


@pytest.mark.network
def test_a_raw_wsgi_failure_reaches_waitress_after_the_500(
        monitor: Monitor, caplog: pytest.LogCaptureFixture) -> None:
    """Waitress logs the app's exception; the client already has a 500 with its ID."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise LookupError("no such tenant")

    caplog.set_level(logging.ERROR, logger="waitress")
    with waitress_server(WSGIMiddleware(app, monitor=monitor, health=False)) as base:
        response = httpx.get(base, headers={"X-Request-ID": "waitress-fail-1"}, timeout=10)
        wait_until(lambda: any(r.exc_info for r in caplog.records), what="waitress error log")
    assert (response.status_code, response.headers["x-request-id"]) == (500, "waitress-fail-1")
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert any(isinstance(e, LookupError) for e in logged)


def _pipelined(base: str, *requests: bytes) -> bytes:
    """Send ``requests`` at once on one connection; everything until the last response's
    body (a health+json document) is complete."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        data = b""
        while not data.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    return data


@pytest.mark.network
def test_the_middlewares_own_answers_to_head_have_no_body(monitor: Monitor) -> None:
    """waitress leaves HEAD's empty content to the app: the middleware's 400 and 500 carry
    no body, or the next response on the connection starts after stray bytes."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise LookupError("no such tenant")

    wrapped = WSGIMiddleware(app, monitor=monitor, reject_malicious=True)
    with waitress_server(wrapped) as base:
        data = _pipelined(base, b"HEAD /a/%2e%2e/etc HTTP/1.1\r\nHost: x\r\n\r\n",
                          b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 400 "), first
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:40]
    failed = call_wsgi(wrapped, wsgi_environ("/fails", method="HEAD"))
    assert (failed.status, failed.body, type(failed.error)) == (
        "500 Internal Server Error", b"", LookupError)


@pytest.mark.network
def test_waitress_closes_the_body_and_streams_it_unbuffered(monitor: Monitor) -> None:
    """The first chunk arrives while the app waits for it; close() runs afterwards."""
    released = threading.Event()
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"first;"
            yield b"second" if released.wait(5) else b"never released"

        def close(self) -> None:
            closed.set()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    with waitress_server(WSGIMiddleware(app, monitor=monitor, health=False)) as base:
        address = urlsplit(base)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=3)
        connection.request("GET", "/")
        response = connection.getresponse()
        first = response.read1()
        released.set()
        rest = response.read()
        connection.close()
        wait_until(closed.is_set, what="close() of the app's body")
    assert (first, rest) == (b"first;", b"second")
    assert response.getheader("X-Request-ID")
    assert len(stored_spans(monitor)) == 1


@pytest.mark.network
def test_a_declared_body_over_the_limit_gets_413_from_waitress(monitor: Monitor) -> None:
    with waitress_server(_flask(monitor)) as base:
        response = httpx.post(f"{base}/upload", content=b"x" * (LIMIT + 1), timeout=10)
    assert response.status_code == 413
    assert response.headers["x-request-id"]


def test_an_environ_the_middleware_cannot_read_is_passed_on(
        monitor: Monitor, caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        return [b"still served"]

    environ = wsgi_environ("/")
    environ["PATH_INFO"] = b"/not-a-native-string"
    reply = call_wsgi(WSGIMiddleware(app, monitor=monitor, health=False), environ)
    assert (reply.status, reply.body) == ("200 OK", b"still served")
    assert stored_spans(monitor) == []
    assert "could not read a request" in caplog.text


def test_a_failure_after_write_cannot_be_replaced(monitor: Monitor) -> None:
    """Headers sent through the legacy write() are final: the exception only propagates."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"early")
        raise ValueError("late failure")

    sent: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None and sent:
            raise exc_info[1]
        return sent.append

    wrapped = WSGIMiddleware(app, monitor=monitor, health=False)
    with pytest.raises(ValueError, match="late failure"):
        wrapped(wsgi_environ("/"), start_response)
    assert sent == [b"early"]
    assert only_span(monitor).error_type == "ValueError"


def test_the_limited_input_counts_lines_too(monitor: Monitor) -> None:
    """readline() and iteration are counted like read(): a line-reading app is cut as well."""
    seen: list[int] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        stream = environ["wsgi.input"]
        seen.append(len(stream.readline()))
        for line in stream:
            seen.append(len(line))
        start_response("200 OK", [])
        return [b"done"]

    environ = wsgi_environ("/upload", method="POST", HTTP_TRANSFER_ENCODING="chunked")
    environ["wsgi.input"].write(b"line\n" * 400)
    environ["wsgi.input"].seek(0)
    reply = call_wsgi(WSGIMiddleware(app, monitor=monitor, health=False, max_body_bytes=LIMIT),
                      environ)
    assert (reply.status or "")[:4] == "413 "
    assert sum(seen) <= LIMIT
    assert [e.event_type for e in stored_events(monitor)] == ["request_too_large"]


def test_interpreter_exits_pass_through_and_end_the_span(monitor: Monitor) -> None:
    """SystemExit is not an app error: no 500, no event, but the span is not lost."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        WSGIMiddleware(app, monitor=monitor, health=False)(wsgi_environ("/"),
                                                           lambda *a: None)
    assert len(stored_spans(monitor)) == 1
    assert stored_events(monitor) == []


def test_a_generator_app_answering_after_the_cut_gets_413(monitor: Monitor) -> None:
    """The app reads (and is cut) inside its generator, catches it and answers: 413 wins."""
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        try:
            environ["wsgi.input"].read()
        except Exception:
            start_response("500 Internal Server Error", [])
            yield b"could not read"
            return
        start_response("200 OK", [])
        yield b"read"

    environ = wsgi_environ("/upload", method="POST", HTTP_TRANSFER_ENCODING="chunked")
    environ["wsgi.input"].write(b"z" * 5000)
    environ["wsgi.input"].seek(0)
    reply = call_wsgi(WSGIMiddleware(app, monitor=monitor, health=False, max_body_bytes=LIMIT),
                      environ)
    assert (reply.status or "")[:4] == "413 "
    assert (reply.body, reply.start_calls) == (b"Request body too large", 1)
    assert only_span(monitor).attributes["http.response.status_code"] == 413
