"""WebhookAlert against a real HTTP server on 127.0.0.1: payload, retries, timeouts."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from redaction_canaries import CANARIES, leaked

from ragtrail._records import SecurityEvent, Severity
from ragtrail._settings import Settings
from ragtrail.instrument._alerts import AlertDispatcher
from ragtrail.instrument._webhook import WebhookAlert, WebhookError

pytestmark = pytest.mark.network

SECRET_PATH = "/services/T000/B000/CanaryWebhookSecretPath"

Action = Any  # an int status, ("status", {headers}), "hang" or "endless"


class Receiver:
    """An HTTP server answering POSTs from a script of statuses (then 200s)."""

    def __init__(self) -> None:
        self.script: list[Action] = []
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.hung_up = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body})
                action = receiver.script.pop(0) if receiver.script else 200
                if action == "hang":
                    receiver.release.wait(10)
                    return
                if action == "endless":  # 200, then a body that never ends
                    self.send_response(200)
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        while not receiver.release.is_set():
                            self.wfile.write(chunk)
                    except OSError:  # the client hung up: what it should do
                        receiver.hung_up.set()
                    return
                status, headers = action if isinstance(action, tuple) else (action, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def json(self, index: int = 0) -> Any:
        return json.loads(self.requests[index]["body"])

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


class Sleeps(list[float]):
    """Records back-off waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def security_event(**changes: Any) -> SecurityEvent:
    fields: dict[str, Any] = {
        "event_type": "authz_fail", "severity": Severity.HIGH, "source": "10.0.0.7",
        "description": "denied <!channel> & more", "time_us": 1_764_201_600_000_000,
        "correlation_id": "c0ffee00c0ffee00c0ffee00c0ffee00", "service": "rag-api",
        "host": "web-1", "pid": 42, "metadata": {"path": "/admin", "api_key": "sk-x"},
    }
    fields.update(changes)
    return SecurityEvent(**fields)


def test_posts_the_event_as_json_with_a_slack_text(receiver: Receiver) -> None:
    """One POST with the event's fields, redacted metadata and an escaped Slack text."""
    WebhookAlert(receiver.url, headers={"X-Team": "sec"})(security_event())
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["path"] == SECRET_PATH
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Team"] == "sec"
    body = receiver.json()
    assert body["text"] == ("[HIGH] authz_fail from 10.0.0.7 (rag-api on web-1): "
                            "denied &lt;!channel&gt; &amp; more")
    assert {k: body[k] for k in ("event_type", "severity", "source", "correlation_id",
                                 "service", "host", "pid", "count", "time_us")} == {
        "event_type": "authz_fail", "severity": "high", "source": "10.0.0.7",
        "correlation_id": "c0ffee00c0ffee00c0ffee00c0ffee00", "service": "rag-api",
        "host": "web-1", "pid": 42, "count": 1, "time_us": 1_764_201_600_000_000}
    assert body["time"] == "2025-11-27T00:00:00+00:00"
    assert body["metadata"] == {"path": "/admin", "api_key": "[REDACTED]"}


def test_suppressed_count_is_shown_in_the_text(receiver: Receiver) -> None:
    """A coalesced alert says how many similar events it stands for."""
    WebhookAlert(receiver.url)(security_event(metadata={"suppressed_count": 12}))
    assert receiver.json()["text"].endswith("(+12 similar suppressed)")


def test_canary_secrets_never_reach_the_receiver(receiver: Receiver) -> None:
    """Even a hand-built, unredacted event is redacted before it is sent."""
    secrets = " ".join(c.text for c in CANARIES)
    event = security_event(description=secrets, source=CANARIES[-1].text,
                           metadata={"detail": secrets, CANARIES[0].text: "k"})
    WebhookAlert(receiver.url)(event)
    assert leaked(receiver.requests[0]["body"]) == []


def test_retries_a_server_error_then_succeeds(receiver: Receiver) -> None:
    """A 500 is retried after the back-off; the second answer (200) ends it."""
    receiver.script = [500, 200]
    sleeps = Sleeps()
    WebhookAlert(receiver.url, backoff=0.5, sleep=sleeps)(security_event())
    assert len(receiver.requests) == 2
    assert receiver.json(0) == receiver.json(1)
    assert sleeps == [0.5]


def test_gives_up_after_the_retries_naming_only_the_host(receiver: Receiver) -> None:
    """retries=2 means three attempts with doubling back-off, then a WebhookError."""
    receiver.script = [503, 502, 500, 200]
    sleeps = Sleeps()
    with pytest.raises(WebhookError, match=r"127\.0\.0\.1 failed after 3 attempt\(s\): HTTP 500"
                       ) as raised:
        WebhookAlert(receiver.url, retries=2, backoff=0.25, sleep=sleeps)(security_event())
    assert len(receiver.requests) == 3
    assert sleeps == [0.25, 0.5]
    assert "Canary" not in str(raised.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_other_client_errors_are_not_retried(receiver: Receiver, status: int) -> None:
    """A 4xx other than 429 will not get better: one attempt, then an error."""
    receiver.script = [status]
    with pytest.raises(WebhookError, match=f"refused the alert: HTTP {status}"):
        WebhookAlert(receiver.url, sleep=Sleeps())(security_event())
    assert len(receiver.requests) == 1


def test_429_waits_for_retry_after(receiver: Receiver) -> None:
    """Rate limited: the server's Retry-After (seconds) is honoured, capped at 10 s."""
    receiver.script = [(429, {"Retry-After": "2"}), (429, {"Retry-After": "3600"}), 200]
    sleeps = Sleeps()
    WebhookAlert(receiver.url, backoff=0.1, sleep=sleeps)(security_event())
    assert sleeps == [2.0, 10.0]


class FakeTime:
    """A clock the webhook's waits advance (nothing really sleeps)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_retries_stop_within_the_total_timeout(receiver: Receiver) -> None:
    """A receiver answering 429 with Retry-After: 10 every time: 4 attempts and three 10 s
    waits took 70 s in the worst case, past the alert pool's 30 s callback timeout (which then
    dropped the callback's other alerts). No wait starts that would end past total_timeout."""
    receiver.script = [(429, {"Retry-After": "10"})] * 3 + [200]
    fake = FakeTime()
    alert = WebhookAlert(receiver.url, total_timeout=25, sleep=fake.sleep,
                         clock=lambda: fake.now)
    with pytest.raises(WebhookError, match=r"after 3 attempt\(s\): HTTP 429"):
        alert(security_event())
    assert fake.sleeps == [10.0, 10.0]
    assert len(receiver.requests) == 3


def test_the_answers_body_is_never_read(receiver: Receiver) -> None:
    """200 and a body that never ends: the alert is delivered and the connection dropped (the
    whole body was read into the app's memory: 12 GiB in 90 s for an endless one)."""
    receiver.script = ["endless"]
    delivered = threading.Thread(
        target=WebhookAlert(receiver.url, timeout=2.0, sleep=Sleeps()), args=(security_event(),))
    delivered.start()
    delivered.join(10)
    assert not delivered.is_alive()
    assert receiver.hung_up.wait(10)
    assert len(receiver.requests) == 1


def test_hanging_server_is_cut_off_by_the_timeout(receiver: Receiver) -> None:
    """A server that never answers costs at most timeout per attempt."""
    receiver.script = ["hang", "hang"]
    started = time.monotonic()
    with pytest.raises(WebhookError, match="ReadTimeout"):
        WebhookAlert(receiver.url, timeout=0.3, retries=1, sleep=Sleeps())(security_event())
    assert time.monotonic() - started < 3.0
    assert len(receiver.requests) == 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_refused_is_retried_then_reported() -> None:
    """No server at all: each attempt fails fast, is retried, then reported."""
    sleeps = Sleeps()
    with pytest.raises(WebhookError, match="ConnectionError"):
        WebhookAlert(f"http://127.0.0.1:{free_port()}/hook", retries=2,
                     sleep=sleeps)(security_event())
    assert len(sleeps) == 2


def test_hanging_webhook_never_holds_up_the_app(receiver: Receiver) -> None:
    """Through the dispatcher, submit returns at once; the failure is counted later."""
    receiver.script = ["hang"]
    dispatcher = AlertDispatcher(Settings())
    try:
        dispatcher.register(WebhookAlert(receiver.url, timeout=1.0, retries=0))
        started = time.perf_counter()
        dispatcher.submit(security_event())
        # Waiting on the webhook would take its 1 s timeout; the bound leaves a loaded
        # machine room to start the alert threads.
        assert time.perf_counter() - started < 0.5
        deadline = time.monotonic() + 10
        while dispatcher.health()["failed"] < 1:
            assert time.monotonic() < deadline, "the webhook failure was never counted"
            time.sleep(0.01)
        assert dispatcher.health()["timed_out"] == 0
    finally:
        receiver.release.set()
        dispatcher.shutdown(timeout=5)


def test_repr_never_shows_the_url() -> None:
    """The webhook URL is a credential: repr (used in logs) shows only the host."""
    alert = WebhookAlert("https://hooks.slack.com" + SECRET_PATH, min_severity="critical")
    assert repr(alert) == "WebhookAlert(host='hooks.slack.com', min_severity='critical')"
    assert alert.min_severity is Severity.CRITICAL


@pytest.mark.parametrize(("url", "kwargs"), [
    ("ftp://example.com/hook", {}), ("not a url", {}), ("https:///nohost", {}),
    ("https://example.com/hook", {"timeout": 0}), ("https://example.com/hook", {"retries": -1}),
])
def test_invalid_configuration_is_rejected(url: str, kwargs: dict[str, Any]) -> None:
    """A webhook that could never work fails at construction."""
    with pytest.raises(ValueError, match="webhook"):
        WebhookAlert(url, **kwargs)


def test_urllib3_debug_lines_never_show_the_secret_path(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """An app logging at DEBUG wrote the Slack secret (path and query) in urllib3's request
    line; the host and status still show."""
    with caplog.at_level(logging.DEBUG):
        WebhookAlert(receiver.url + "?token=CanaryQuerySecret")(security_event())
    assert receiver.requests[0]["path"] == SECRET_PATH + "?token=CanaryQuerySecret"  # sent
    lines = [record.getMessage() for record in caplog.records]
    request_line = next(line for line in lines if '"POST ' in line)
    assert "127.0.0.1" in request_line
    assert " 200 " in request_line
    assert "webhook path hidden" in request_line
    assert not [line for line in lines if "Canary" in line]


def test_other_requests_paths_stay_in_urllib3s_lines(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """Only the webhook's own request line is changed: hiding "/hook" as a substring made an
    app's request to "/hooks/github" read "/[webhook path hidden]s/github"."""
    base = receiver.url.removesuffix(SECRET_PATH)
    WebhookAlert(base + "/hook")
    with caplog.at_level(logging.DEBUG):
        requests.post(base + "/hooks/github", data=b"{}", timeout=5)
    assert any('"POST /hooks/github ' in record.getMessage() for record in caplog.records)
