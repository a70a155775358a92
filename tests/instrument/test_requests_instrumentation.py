"""``instrument_requests()`` against a real HTTP server on 127.0.0.1 that echoes headers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from instrument_support import only_span, stored_spans

from ragtrail.instrument import (
    Monitor,
    correlation_scope,
    instrument_requests,
    monitored,
    uninstrument_requests,
)

pytestmark = pytest.mark.network

CORRELATION = "d15ea5ed15ea5ed15ea5ed15ea5ed15e"


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers every GET with the request headers as JSON; ``/fail`` answers 500."""

    def do_GET(self) -> None:
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    # A short poll: shutdown() waits up to one poll interval (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def instrumented() -> Iterator[None]:
    instrument_requests()
    yield
    uninstrument_requests()


def test_outgoing_request_carries_request_id_and_traceparent(
        monitor: Monitor, echo_url: str, instrumented: None) -> None:
    """The server receives X-Request-ID and a traceparent naming the client span."""
    @monitored(name="fetch")
    def fetch() -> dict[str, str]:
        return requests.get(f"{echo_url}/docs", timeout=5).json()

    with correlation_scope(CORRELATION):
        received = fetch()
    client = only_span(monitor, "GET")
    assert received["x-request-id"] == CORRELATION
    assert received["traceparent"] == f"00-{client.trace_id}-{client.span_id}-01"
    assert client.parent_span_id == only_span(monitor, "fetch").span_id
    assert (client.kind, client.status, client.correlation_id) == ("client", "ok", CORRELATION)


def test_client_span_attributes_without_credentials_or_query(
        monitor: Monitor, echo_url: str, instrumented: None) -> None:
    """``url.full`` drops user info and query; method, address, port and status are set."""
    port = int(echo_url.rsplit(":", 1)[1])
    url = f"http://user:s3cret-canary@127.0.0.1:{port}/search?q=private&token=abc#frag"
    requests.get(url, timeout=5)
    attributes = only_span(monitor, "GET").attributes
    assert attributes["url.full"] == f"http://127.0.0.1:{port}/search"
    assert attributes["http.request.method"] == "GET"
    assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", port)
    assert attributes["http.response.status_code"] == 200
    assert "s3cret-canary" not in json.dumps(attributes)


def test_callers_own_headers_are_not_overwritten(
        monitor: Monitor, echo_url: str, instrumented: None) -> None:
    """A traceparent or X-Request-ID set by the caller reaches the server unchanged."""
    theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with correlation_scope(CORRELATION):
        received = requests.get(echo_url, timeout=5, headers={
            "traceparent": theirs, "X-Request-ID": "their-id"}).json()
    assert (received["traceparent"], received["x-request-id"]) == (theirs, "their-id")


def test_server_error_marks_the_client_span(
        monitor: Monitor, echo_url: str, instrumented: None) -> None:
    """A 5xx answer is an error on the client span, with ``error.type`` the status code."""
    response = requests.get(f"{echo_url}/fail", timeout=5)
    assert response.status_code == 500
    span = only_span(monitor, "GET")
    assert (span.status, span.error_type) == ("error", "500")


def test_connection_failure_is_recorded_and_reraised(monitor: Monitor,
                                                     instrumented: None) -> None:
    """A refused connection raises the same requests exception and fails the span."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    span = only_span(monitor, "GET")
    assert span.status == "error"
    assert span.error_type == "requests.exceptions.ConnectionError"


def test_uninstrument_restores_plain_requests(monitor: Monitor, echo_url: str) -> None:
    """After ``uninstrument_requests()`` no headers are added and no span is recorded."""
    instrument_requests()
    instrument_requests()  # idempotent
    uninstrument_requests()
    uninstrument_requests()
    with correlation_scope(CORRELATION):
        received = requests.get(echo_url, timeout=5).json()
    assert "traceparent" not in received
    assert "x-request-id" not in received
    assert stored_spans(monitor) == []


_CHILD = """
import json, logging, sys
import requests
import ragtrail
from ragtrail.instrument import instrument_requests, monitored
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
ragtrail.configure(store_url=sys.argv[2])
instrument_requests()
step = monitored(name="fetch")(lambda: requests.get(sys.argv[1], timeout=10).json())
print(json.dumps(step()))
"""


@pytest.mark.parametrize("propagators", ["b3", "tracecontext, Baggage"])
def test_an_unloadable_otel_propagators_falls_back_to_w3c(
        echo_url: str, tmp_path: Path, propagators: str) -> None:
    """OTEL_PROPAGATORS naming a propagator that is not installed (or capitalised) made the
    OTel API raise inside ``import ragtrail``; now one warning, and W3C headers go out."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, echo_url, f"sqlite:///{tmp_path / 'audit.db'}"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "OTEL_PROPAGATORS": propagators})
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    assert sent["traceparent"].startswith("00-")
    assert "OTEL_PROPAGATORS is not usable" in done.stderr
    assert done.stderr.count("OTEL_PROPAGATORS is not usable") == 1
