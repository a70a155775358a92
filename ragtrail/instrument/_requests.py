"""Outgoing ``requests`` calls: correlation and trace headers out, a client span recorded.

``instrument_requests()`` wraps ``requests.Session.send`` (which every ``requests.get`` and
session call goes through) with wrapt; ``uninstrument_requests()`` puts the original back.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import wrapt

from ragtrail.instrument import _monitor
from ragtrail.instrument._correlation import _correlation_id
from ragtrail.instrument._spans import open_span
from ragtrail.instrument._textmap import inject

__all__ = ["instrument_requests", "uninstrument_requests"]

REQUEST_ID_HEADER = "X-Request-ID"
_lock = threading.Lock()


def instrument_requests() -> None:
    """Patch ``requests`` (idempotent): every request gets ``X-Request-ID`` (the current
    correlation ID) and W3C ``traceparent`` unless the caller set them, and a client span."""
    with _lock:
        if not isinstance(requests.Session.__dict__["send"], wrapt.FunctionWrapper):
            wrapt.wrap_function_wrapper(requests.Session, "send", _traced_send)


def uninstrument_requests() -> None:
    """Undo ``instrument_requests()`` (idempotent)."""
    with _lock:
        send = requests.Session.__dict__["send"]
        if isinstance(send, wrapt.FunctionWrapper):
            requests.Session.send = send.__wrapped__  # type: ignore[method-assign]


def _traced_send(wrapped: Any, instance: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
    monitor = _monitor._active or _monitor.monitor_for_calls()
    if monitor is None or not monitor.enabled:
        return wrapped(*args, **kwargs)
    request: requests.PreparedRequest = args[0] if args else kwargs["request"]
    try:
        method = (request.method or "GET").upper()
        span = open_span(monitor, method, "client", _request_attributes(method, request.url))
        span.attach()
        headers = request.headers
        correlation_id = _correlation_id.get()
        if correlation_id is not None and REQUEST_ID_HEADER not in headers:
            headers[REQUEST_ID_HEADER] = correlation_id
        if "traceparent" not in headers:  # a caller's own trace context wins
            # The global propagator: W3C traceparent/tracestate and baggage by default, or
            # whatever OTEL_PROPAGATORS chose for this app.
            inject(headers, span.context)
    except Exception:
        monitor.report_failure("requests")
        return wrapped(*args, **kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as error:
        if isinstance(error, Exception):
            span.fail(error)
        span.end()
        raise
    try:
        status = response.status_code
        span._set("http.response.status_code", status)
        if status >= 400:
            # OTel HTTP semantic conventions: 4xx and 5xx are errors for a client span.
            span.set_error(str(status))
    except Exception:
        monitor.report_failure("requests")
    span.end()
    return response


def _request_attributes(method: str, url: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"http.request.method": method}
    if not url:
        return attributes
    parts = urlsplit(url)
    host = parts.hostname or ""
    # url.full without credentials, query or fragment: they carry tokens and personal data.
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    attributes["url.full"] = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    attributes["server.address"] = host
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    if port is not None:
        attributes["server.port"] = port
    return attributes
