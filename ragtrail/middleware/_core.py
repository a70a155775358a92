"""What the middleware does for one request, whatever the framework: one core, two adapters.

The ASGI and WSGI adapters only translate their protocol into a ``RequestHead`` and report
the response status; choosing the correlation ID, the span, and every security decision
happen here, so both behave the same.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any, AnyStr

from opentelemetry import trace
from opentelemetry.context import Context

from ragtrail._records import Severity
from ragtrail.instrument import _textmap as textmap
from ragtrail.instrument._correlation import _correlation_id, unpredictable_bits
from ragtrail.instrument._redaction import REDACTED, Redactor
from ragtrail.instrument._spans import new_trace_id, open_span
from ragtrail.middleware._bursts import FailureBursts
from ragtrail.middleware._inspection import (
    INVALID,
    Finding,
    ascii_int,
    id_digest,
    printable,
    target_findings,
)
from ragtrail.middleware._options import MiddlewareOptions

if TYPE_CHECKING:
    from ragtrail.health import HealthService
    from ragtrail.instrument import LiveSpan, Monitor

__all__ = ["Exchange", "MiddlewareCore", "RequestHead", "is_valid_id", "with_echo"]

log = logging.getLogger("ragtrail.middleware")

# The correlation ID format (issue 4): 8-128 characters, none of them a delimiter, quote,
# space or control character, so an ID is safe in logs, headers and URLs. fullmatch, not
# "^...$", because "$" also matches before a trailing newline.
is_valid_id = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{7,127}").fullmatch

# OTel HTTP semantic conventions: other methods are reported as "_OTHER" (cardinality).
_KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"))
_PATH_LIMIT, _VALUE_LIMIT, _META_PATH_LIMIT = 2048, 512, 256
_BAGGAGE_LIMIT = 1024  # characters of inbound baggage parsed (a few dozen members)
# Header names whose values are secrets whatever the allowlist says (X-Functions-Key,
# Ocp-Apim-Subscription-Key, X-Shopify-Hmac-Sha256 as well as Authorization).
_SECRET_HEADER = re.compile(
    r"auth|cookie|token|secret|passw|pwd|api[-_]?key|[-_]key$|hmac|session|signature|credential",
    re.IGNORECASE)
# A credential in an ID's own alphabet, which allows ":" and "=": "Bearer:abc", "pass=abc".
_CREDENTIAL_IN_ID = re.compile(
    r"(?:bearer|basic|digest|pass|pwd?|secret|token|key|auth\w*|session|cookie|sig|hmac)[:=]",
    re.IGNORECASE)
_HOSTS: dict[str, tuple[str, int | None]] = {}
_HOSTS_CACHED = 256
_ATTRIBUTES_CACHED = 1024  # distinct (path, agent, host, ...) combinations kept per middleware
_CACHED_TEXT = 1024  # requests whose path, agent and host are longer are built, not cached
SOURCE_UNKNOWN = "unknown"


@dataclass(slots=True)
class RequestHead:
    """The request as the adapters hand it over: decoded text plus the undecoded target."""

    method: str
    path: str
    # The path below the app's mount point (ASGI root_path, WSGI SCRIPT_NAME), as the app's own
    # routes see it: health routes and exclude_paths match this one.
    app_path: str
    raw_path: bytes
    query: bytes
    scheme: str
    protocol: str
    peer: str | None
    server: tuple[str, int | None] | None
    headers: dict[str, str]  # the headers the options want, lowercase names, first value
    findings: list[Finding]  # hostile header values seen while reading them
    captured: dict[str, list[str]] | None = None  # allowlisted headers, every value


class MiddlewareCore:
    """The state shared by the requests of one middleware and monitor (never per request)."""

    __slots__ = ("_shared_attributes", "bursts", "health", "monitor", "options")

    def __init__(self, monitor: Monitor, options: MiddlewareOptions,
                 health: HealthService | None) -> None:
        self.monitor = monitor
        self.options = options
        self.health = health
        self.bursts = FailureBursts(options.burst_threshold, options.burst_window)
        # (method, path, scheme, protocol, agent, host, server) -> the span attributes they
        # make: requests repeat them, and building them (escaping, redacting) cost 1.4 us.
        self._shared_attributes: dict[tuple[Any, ...], dict[str, Any]] = {}

    def begin(self, head: RequestHead, *, kind: str = "http") -> Exchange:
        """Choose the correlation ID, make it current, start the server span, inspect."""
        options = self.options
        headers = head.headers
        inbound: str | None = None
        rejected: Sequence[tuple[str, str]] = ()
        for name in options.id_headers:
            if name in headers:  # most requests carry none: no call then
                inbound, rejected = _inbound_id(options.id_headers, headers,
                                                self.monitor.redactor.redact_text)
                break
        excluded = options.excluded(head.app_path)
        parent = None
        if options.trust_inbound and not excluded:
            for name in options.trace_headers:  # usually one: traceparent
                if name in headers:
                    parent = _remote_parent(headers)
                    break
        trace_int = trace_hex = None
        if inbound is not None and options.trust_inbound:
            cid = inbound
        elif parent is not None:  # no ID of its own: the trace ID it came with correlates
            cid = f"{trace.get_current_span(parent).get_span_context().trace_id:032x}"
        else:  # the new trace's ID correlates: one ID for the store and the trace backend
            trace_int = new_trace_id(unpredictable_bits())  # clients see it: not getrandbits
            cid = trace_hex = trace_int.to_bytes(16, "big").hex()
        proxies = options.proxies
        client = (head.peer if proxies is None
                  else proxies.client_address(head.peer, headers.get("x-forwarded-for")))
        exchange = Exchange(self, head, cid, client, kind)
        try:
            if not excluded:
                attributes = self._attributes(head, client)
                if inbound is not None and not options.trust_inbound:
                    attributes["ragtrail.inbound_correlation_id"] = inbound
                span = exchange.span = open_span(self.monitor, exchange.method_name, "server",
                                                 attributes, parent, cid, trace_int, trace_hex)
                span._own_attributes = True  # made for this span: no copy on the first write
                span.attach()
            for header, value in rejected:
                exchange.event(INVALID, Severity.LOW, "correlation ID header failed validation",
                               {"header": header, "value_sha256": id_digest(value),
                                "value_length": len(value)})
            self._inspect(exchange, head)
        except BaseException:
            exchange.finish()  # leave no span or ID behind in the caller's context
            raise
        return exchange

    def _inspect(self, exchange: Exchange, head: RequestHead) -> None:
        options = self.options
        declared = head.headers.get("content-length")
        if declared is not None:
            size = ascii_int(declared)
            if size is not None:
                if size > options.max_body_bytes:
                    exchange.rejection = 413
                    exchange.event("request_too_large", Severity.MEDIUM,
                                   "declared request body larger than the limit",
                                   {"declared_bytes": size, "limit_bytes": options.max_body_bytes})
            else:
                head.findings.append(
                    Finding(INVALID, "Content-Length is not a number", "header:content-length"))
            if "transfer-encoding" in head.headers:  # RFC 9112 6.1: the length is ignored
                head.findings.append(Finding(
                    INVALID, "Content-Length and Transfer-Encoding both sent (a request "
                    "smuggling pattern)", "header:transfer-encoding"))
        if not options.security:
            return
        findings = target_findings(head.raw_path, head.query)
        if head.findings:
            findings = head.findings + findings
        if not findings:
            return
        seen: set[str] = set()
        for finding in findings:
            if finding.event_type in seen:
                continue  # one event per kind and request; a flood of bad headers is one
            seen.add(finding.event_type)
            exchange.event(finding.event_type, Severity.HIGH, finding.description,
                           {"location": finding.location})
        if seen and options.reject_malicious and exchange.rejection is None:
            exchange.rejection = 400

    def _attributes(self, head: RequestHead, client: str | None) -> dict[str, Any]:
        """The server span's attributes: the request's shared ones (cached) plus the client's."""
        headers = head.headers
        agent, host, path = headers.get("user-agent"), headers.get("host"), head.path
        key = (head.method, path, head.scheme, head.protocol, agent, host, head.server)
        shared = self._shared_attributes.get(key)
        if shared is None:
            shared = self._request_attributes(head, agent, host)
            if len(path) + len(agent or "") + len(host or "") <= _CACHED_TEXT:
                if len(self._shared_attributes) >= _ATTRIBUTES_CACHED:
                    self._shared_attributes.clear()  # clients can send any path: bounded
                self._shared_attributes[key] = shared
        attributes = shared.copy()
        if client:
            attributes["client.address"] = printable(client, 64)
            if head.peer and client != head.peer:
                attributes["network.peer.address"] = printable(head.peer, 64)
        if head.captured:
            _capture(attributes, "http.request.header.", head.captured, self.monitor.redactor)
        return attributes

    def _request_attributes(self, head: RequestHead, agent: str | None,
                            host: str | None) -> dict[str, Any]:
        # OTel semantic conventions for HTTP server spans (semconv 1.26+ attribute names).
        # Client-controlled text is escaped (printable); the common clean case skips the call.
        # A secret in a path, agent or host must not reach the store: each is redacted.
        method = head.method
        redactor = self.monitor.redactor
        attributes: dict[str, Any] = {
            "http.request.method": method if method in _KNOWN_METHODS else "_OTHER",
            "url.path": _clean_text(redactor, head.path, _PATH_LIMIT),
            "url.scheme": head.scheme,
            "network.protocol.version": head.protocol,
        }
        if method not in _KNOWN_METHODS:
            attributes["http.request.method_original"] = printable(method, 64)
        if agent:
            attributes["user_agent.original"] = _clean_text(redactor, agent, _VALUE_LIMIT)
        server = head.server if host is None else _HOSTS.get(host) or _split_host(host)
        if server is not None:
            attributes["server.address"] = _clean_text(redactor, server[0], _VALUE_LIMIT)
            if server[1] is not None:
                attributes["server.port"] = server[1]
        return attributes


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
            self.method_name = head.method if head.method in _KNOWN_METHODS else "HTTP"
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
        _capture(attributes, "http.response.header.", captured, self.core.monitor.redactor)
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
                    "path": _clean_text(self.core.monitor.redactor, head.path, _META_PATH_LIMIT),
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


def _capture(attributes: dict[str, Any], prefix: str, headers: dict[str, list[str]],
             redactor: Redactor) -> None:
    """Allowlisted headers, secrets redacted by name (the header words above, then the
    redactor's rule for keys: X-Private-Key, Passphrase, X-Sig) and, for the rest, by value."""
    for name, values in headers.items():
        attributes[prefix + name] = (
            [REDACTED] * len(values) if _SECRET_HEADER.search(name)
            else [printable(str(redactor.redact_attribute(name, value)), _VALUE_LIMIT)
                  for value in values])


def _clean_text(redactor: Redactor, text: str, limit: int) -> str:
    """``text`` printable, redacted and cut to ``limit`` characters, for the store."""
    if len(text) <= limit and text.isprintable():
        redacted = redactor.redact(text, max_bytes=4 * limit + 64)  # never cut by the budget
        return redacted if isinstance(redacted, str) else str(redacted)
    # Escaped with room to spare, then redacted before it is cut (redact_text scans past the
    # cut), so a secret crossing the cut is replaced whole, never half kept.
    return redactor.redact_text(printable(text, 2 * limit), limit=limit)


def _inbound_id(names: tuple[str, ...], headers: dict[str, str],
                redact_text: Callable[[str], str],
                ) -> tuple[str | None, Sequence[tuple[str, str]]]:
    """The first valid ID among the configured headers, and the invalid values seen.

    An ID the redactor would change (``AKIA...``, ``password=...``), or shaped like a scheme
    or key and its value (``Bearer:...``, ``db_pass=...``), is invalid too: an ID is stored
    verbatim on every span and event of its request, so it must hold no secret."""
    rejected: list[tuple[str, str]] | None = None
    for name in names:
        value = headers.get(name)
        if value is None:
            continue
        if is_valid_id(value) and redact_text(value) == value and \
                not _CREDENTIAL_IN_ID.search(value):
            return value, rejected or ()
        if rejected is None:
            rejected = []
        rejected.append((name, value))
    return None, rejected or ()


def _remote_parent(headers: dict[str, str]) -> Context | None:
    """The context of a valid inbound trace context (with its tracestate and baggage), by
    the global propagator, else None.

    Baggage is a client's text: past ``_BAGGAGE_LIMIT`` characters it is not parsed at all
    (180 members cost about 1 ms, 20 times the middleware's own work, and each malformed one
    a log line). A propagator that raises on what it was sent costs the request its parent,
    never its span or its security checks.
    """
    carrier = headers
    baggage = headers.get("baggage")
    if baggage is not None and len(baggage) > _BAGGAGE_LIMIT:
        carrier = {name: value for name, value in headers.items() if name != "baggage"}
    try:
        context = textmap.extract(carrier)
    except Exception:
        log.debug("ragtrail: the propagator refused a request's trace headers", exc_info=True)
        return None
    if trace.get_current_span(context).get_span_context().is_valid:
        return context
    return None


def _split_host(host: str) -> tuple[str, int | None] | None:
    """``Host`` as (name, port): ``example.com``, ``example.com:8080``, ``[::1]:8000``."""
    name, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        name, port = host[1:end], host[end + 2:] if end > 0 else ""
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    if not name:
        return None
    number = ascii_int(port) if len(port) <= 5 else None
    split = (printable(name, 255), number)
    if len(_HOSTS) < _HOSTS_CACHED:  # a service answers to a few names; clients send any
        _HOSTS[host] = split
    return split
