"""One request in flight, from the moment its correlation ID is chosen to the end of its
span: what the response said, the security events it caused, the ID echoed back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from time import monotonic
from typing import TYPE_CHECKING, Any, AnyStr

from ragtrail._records import Severity
from ragtrail.instrument._correlation import _correlation_id
from ragtrail.middleware._attributes import (
    KNOWN_METHODS,
    META_PATH_LIMIT,
    add_captured_headers,
    clean_text,
)
from ragtrail.middleware._inspection import printable

if TYPE_CHECKING:
    from ragtrail.instrument import LiveSpan
    from ragtrail.middleware._core import MiddlewareCore, RequestHead

__all__ = ["Exchange", "with_echo"]

log = logging.getLogger("ragtrail.middleware")

SOURCE_UNKNOWN = "unknown"


class Exchange:
    """One request in flight: its ID, its span, what the response said. Never shared."""

    __slots__ = (
        "_token",
        "body_cut",
        "client",
        "core",
        "correlation_id",
        "head",
        "method_name",
        "no_verdict",
        "rejection",
        "responded_ns",
        "route",
        "span",
        "status",
    )

    def __init__(self, core: MiddlewareCore, head: RequestHead, cid: str,
                 client: str | None, kind: str) -> None:
        self.core = core
        self.head = head
        self.correlation_id = cid
        self.client = client
        # Span names: "GET /items/{id}", "HTTP" for unknown methods (OTel HTTP semconv).
        if kind == "websocket":
            self.method_name = "WEBSOCKET"
        else:
            self.method_name = head.method if head.method in KNOWN_METHODS else "HTTP"
        self.span: LiveSpan | None = None
        self.rejection: int | None = None  # 400 or 413: answer without calling the app
        self.status: int | None = None
        self.route: str | None = None
        self.body_cut = False  # the body outgrew max_body_bytes while the app read it
        # When the response's last byte went to the server (ASGI): the span ends there, not
        # when the app's call returns after running a response's background tasks.
        self.responded_ns: int | None = None
        # The status is no verdict of the app's (a health route's answer, a websocket nothing
        # accepted): no server_error or access-failure event.
        self.no_verdict = False
        self._token = _correlation_id.set(cid)

    def response_started(self, status: int, headers: Iterable[tuple[str, str]] | None) -> None:
        """The app (or the middleware) started the response: remember status and headers."""
        self.status = status
        capture = self.core.options.capture_headers
        if headers is None or not capture or self.span is None:
            return
        captured: dict[str, list[str]] = {}
        for name, value in headers:
            lowered = name.lower()
            if lowered in capture:
                captured.setdefault(lowered, []).append(value)
        attributes: dict[str, Any] = {}
        add_captured_headers(attributes, "http.response.header.", captured,
                             self.core.monitor.redactor)
        self.span._update(attributes)

    def cut_body(self) -> None:
        """The streamed body passed ``max_body_bytes``: record it once; the adapter answers 413."""
        if not self.body_cut:
            self.body_cut = True
            self.event("request_too_large", Severity.MEDIUM,
                       "streamed request body larger than the limit",
                       {"limit_bytes": self.core.options.max_body_bytes})

    def event(self, event_type: str, severity: Severity, description: str,
              details: dict[str, Any]) -> None:
        head = self.head
        metadata = {"method": printable(head.method, 64),
                    "path": clean_text(self.core.monitor.redactor, head.path, META_PATH_LIMIT),
                    **details}
        self.core.monitor.security_event(event_type, severity, self.client or SOURCE_UNKNOWN,
                                         description, metadata)

    def finish(self, error: BaseException | None = None) -> None:
        """Status attributes, error and access-failure events, end the span, restore the ID."""
        span = self.span
        try:
            status = self.status
            if span is not None:
                if status is not None:
                    span._set("http.response.status_code", status)
                route = self.route  # a template from the app's code, not from the client
                if route:
                    span._set("http.route", route)
                    span.update_name(f"{self.method_name} {route}")
            # A health route's 503 is not a server error, and health records its own 401s.
            if self.no_verdict:
                return
            if error is not None:
                # The client had its whole answer, a success (a background task failed after
                # it): the span keeps that answer. After a 500 the app answered its own
                # failure, then raised it: a failed request.
                answered = self.responded_ns is not None and status is not None and status < 500
                if span is not None and not answered:
                    span.fail(error)
                self.event("server_error", Severity.HIGH,
                           "unhandled exception after the response was sent (a background "
                           "task)" if answered else "unhandled exception in the app",
                           {"exception_type": type(error).__qualname__})
            elif status is not None and status >= 500:
                if span is not None:  # the status code is the error type (HTTP semconv)
                    span.set_error(str(status), f"the app answered {status}")
                    span._set("error.type", str(status))
                self.event("server_error", Severity.HIGH, f"the app answered {status}",
                           {"status": status})
            elif status == 401 or status == 403:
                self._access_failure(status)
        except Exception:  # instrumentation never breaks the request
            log.warning("ragtrail middleware failed to finish a request", exc_info=True)
        finally:
            if span is not None:
                span.end(self.responded_ns)
            # Finished in another context than it began (ValueError): nothing there to undo.
            try:  # noqa: SIM105 (suppress() builds a context manager per request)
                _correlation_id.reset(self._token)
            except ValueError:
                pass

    def _access_failure(self, status: int) -> None:
        # OWASP logging vocabulary: authn_login_fail (401), authz_fail (403).
        burst = self.core.bursts.failed(self.client or SOURCE_UNKNOWN, monotonic())
        event_type = "authn_login_fail" if status == 401 else "authz_fail"
        options = self.core.options
        description = (f"{options.burst_threshold}+ access failures from one client in "
                       f"{options.burst_window:g} s" if burst else f"the app answered {status}")
        self.event(event_type, Severity.HIGH if burst else Severity.MEDIUM, description,
                   {"status": status, "burst": burst})


def with_echo(headers: Iterable[tuple[AnyStr, AnyStr]],
              echo: tuple[AnyStr, AnyStr]) -> list[tuple[AnyStr, AnyStr]]:
    """The app's response headers and the correlation ID's, unless the app sent that header
    itself (RFC 9110 5.3: no second line for a field that is not a list; the app's value
    wins). ASGI headers are bytes, WSGI's text."""
    listed = list(headers)
    name = echo[0].lower()
    for each, _ in listed:
        if each.lower() == name:
            return listed
    listed.append(echo)
    return listed
