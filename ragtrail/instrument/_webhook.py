"""``WebhookAlert``: an alert callback that POSTs the event as JSON (Slack-compatible).

It runs on the alert pool, never on the application's thread, so it may block for its timeout;
every attempt is bounded by ``timeout``, the number of attempts by ``retries``, and all of them
with their waits by ``total_timeout``. The URL is a
secret (a Slack incoming-webhook URL is its own credential), so messages name only its host,
and urllib3's DEBUG lines (``"POST /services/T0/B0/XXXX HTTP/1.1" 200``) have its path and query
replaced.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from ragtrail._records import SecurityEvent, Severity
from ragtrail._setting_values import is_web_url
from ragtrail._settings import Settings
from ragtrail.instrument._events import MAX_DESCRIPTION_CHARS, MAX_METADATA_BYTES
from ragtrail.instrument._redaction import Redactor

__all__ = ["WebhookAlert", "WebhookError"]

_MAX_RETRY_AFTER = 10.0
# The logger that writes a request's path, at DEBUG, which apps turn on when chasing a problem
# (requests does not let urllib3 retry, so its retry lines never come).
_URL_LOGGER = "urllib3.connectionpool"
_HIDDEN_PATH = "/[webhook path hidden]"
# Slack mrkdwn treats these as control characters ("<!channel>" pings everyone); escaping them
# is what Slack's formatting reference asks of untrusted text.
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


class WebhookError(RuntimeError):
    """The webhook did not accept the alert (after retries, when retrying made sense)."""


class _HiddenPaths(logging.Filter):
    """Replaces a registered webhook path where it is a whole argument of a line (the request
    line's URL argument is the path and query exactly; other requests' paths stay)."""

    def __init__(self) -> None:
        super().__init__()
        self._paths: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def hide(self, path: str) -> None:
        with self._lock:
            self._paths = self._paths | {path}
        logger = logging.getLogger(_URL_LOGGER)
        if self not in logger.filters:
            logger.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        args, paths = record.args, self._paths
        if isinstance(args, tuple) and any(type(a) is str and a in paths for a in args):
            record.args = tuple(_HIDDEN_PATH if type(a) is str and a in paths else a
                                for a in args)
        return True


_HIDDEN_PATHS = _HiddenPaths()


class WebhookAlert:
    """Alert callback posting ``{"text": ..., "event_type": ..., ...}`` to ``url``.

    Retries connection errors, timeouts, 5xx and 429 answers up to ``retries`` times, waiting
    ``backoff`` seconds, doubling each time (or the server's ``Retry-After``, up to 10 s), all
    within ``total_timeout``; another 4xx fails at once. The answer's body is never read.
    Raises ``WebhookError`` on failure, which the alert dispatcher logs and counts.

    >>> import ragtrail
    >>> ragtrail.get_monitor().register_alert_callback(  # doctest: +SKIP
    ...     WebhookAlert("https://hooks.slack.com/services/T0/B0/XXXX", min_severity="high"))
    """

    def __init__(self, url: str, *, timeout: float = 5.0, retries: int = 3,
                 backoff: float = 0.5, total_timeout: float = 25.0,
                 headers: Mapping[str, str] | None = None,
                 min_severity: Severity | str | int = "high", redactor: Redactor | None = None,
                 sleep: Callable[[float], object] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not is_web_url(url):
            raise ValueError("webhook url must be an http:// or https:// URL with a host")
        if timeout <= 0 or total_timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("webhook timeout and total_timeout must be > 0, retries and "
                             "backoff >= 0")
        self._url = url
        self.host = urlsplit(url).hostname
        sent_path = requests.Request("POST", url).prepare().path_url  # as urllib3 logs it
        if sent_path != "/":
            _HIDDEN_PATHS.hide(sent_path)
        self.timeout = timeout
        # Under the alert pool's 30 s callback timeout: past it the dispatcher gives up on the
        # callback and drops its other alerts (4 attempts of 5 + 5 s and three waits of up to
        # 10 s for a 429's Retry-After made 70 s).
        self.total_timeout = total_timeout
        self._clock = clock
        self.retries = retries
        self.backoff = backoff
        self.min_severity = Severity.parse(min_severity)
        self._headers = {"Content-Type": "application/json", "User-Agent": "ragtrail-webhook",
                         **(headers or {})}
        self._redactor = redactor or Redactor(Settings())
        self._sleep = sleep

    def __repr__(self) -> str:  # never the URL: it is a credential
        return f"WebhookAlert(host={self.host!r}, min_severity={str(self.min_severity)!r})"

    def __call__(self, event: SecurityEvent) -> None:
        body = json.dumps(self.payload(event)).encode("utf-8")
        deadline = self._clock() + self.total_timeout
        last = ""
        attempt = 0
        while True:
            attempt += 1
            retry_after = 0.0
            wait = min(self.timeout, deadline - self._clock())
            try:
                # stream=True: the status line and headers are all an alert needs; the body
                # (2 GiB, or endless) is never read into the application's memory.
                response = requests.post(self._url, data=body, headers=self._headers,
                                         timeout=(wait, wait), allow_redirects=False,
                                         stream=True)
            except requests.RequestException as exc:  # its text may hold the URL: name only
                last = type(exc).__name__
            else:
                status = response.status_code
                response.close()
                if 200 <= status < 300:
                    return
                last = f"HTTP {status}"
                if status != 429 and status < 500:
                    raise WebhookError(f"webhook {self.host} refused the alert: {last}")
                retry_after = _seconds(response.headers.get("Retry-After"))
            pause = max(self.backoff * 2 ** (attempt - 1), retry_after)
            if attempt > self.retries or self._clock() + pause >= deadline:
                break
            self._sleep(pause)
        raise WebhookError(f"webhook {self.host} failed after {attempt} attempt(s): {last}")

    def payload(self, event: SecurityEvent) -> dict[str, Any]:
        """The JSON body: the event's fields, redacted again (events may be built by hand),
        plus ``text`` for Slack and Slack-compatible receivers."""
        redact = self._redactor
        description = redact.redact_text(event.description, limit=MAX_DESCRIPTION_CHARS)
        source = redact.redact_text(event.source, limit=200)
        metadata = redact.redact(event.metadata, max_bytes=MAX_METADATA_BYTES)
        suppressed = event.metadata.get("suppressed_count")
        text = (f"[{event.severity.name}] {event.event_type} from {source} "
                f"({event.service or 'unknown service'} on {event.host or 'unknown host'}): "
                f"{description}")
        if isinstance(suppressed, int) and suppressed > 0:
            text += f" (+{suppressed} similar suppressed)"
        return {
            "text": text.translate(_SLACK_ESCAPES),
            "event_type": event.event_type,
            "severity": str(event.severity),
            "source": source,
            "description": description,
            "time": event.timestamp.isoformat(),
            "time_us": event.time_us,
            "correlation_id": event.correlation_id,
            "trace_id": event.trace_id,
            "span_id": event.span_id,
            "service": event.service,
            "host": event.host,
            "pid": event.pid,
            "count": event.count,
            "metadata": metadata,
        }


def _seconds(value: str | None) -> float:
    """Retry-After as delay-seconds (RFC 9110 10.2.3); an HTTP date is ignored."""
    try:
        return min(max(float(value or 0), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        return 0.0
