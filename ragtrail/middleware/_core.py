"""How the middleware begins a request, whatever the framework: one core, two adapters.

The ASGI and WSGI adapters only translate their protocol into a ``RequestHead`` and report
the response status; choosing the correlation ID, starting the span and inspecting the
request happen here, and the ``Exchange`` begun here ends it, so both behave the same.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context

from ragtrail._records import Severity
from ragtrail.instrument import _textmap as textmap
from ragtrail.instrument._correlation import unpredictable_bits
from ragtrail.instrument._spans import new_trace_id, open_span
from ragtrail.middleware._attributes import add_captured_headers, request_attributes
from ragtrail.middleware._bursts import FailureBursts
from ragtrail.middleware._exchange import Exchange
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
    from ragtrail.instrument import Monitor

__all__ = ["MiddlewareCore", "RequestHead", "is_valid_id"]

log = logging.getLogger("ragtrail.middleware")

# The correlation ID format (issue 4): 8-128 characters, none of them a delimiter, quote,
# space or control character, so an ID is safe in logs, headers and URLs. fullmatch, not
# "^...$", because "$" also matches before a trailing newline.
is_valid_id = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{7,127}").fullmatch

_BAGGAGE_LIMIT = 1024  # characters of inbound baggage parsed (a few dozen members)
# A credential in an ID's own alphabet, which allows ":" and "=": "Bearer:abc", "pass=abc".
_CREDENTIAL_IN_ID = re.compile(
    r"(?:bearer|basic|digest|pass|pwd?|secret|token|key|auth\w*|session|cookie|sig|hmac)[:=]",
    re.IGNORECASE)
_ATTRIBUTES_CACHED = 1024  # distinct (path, agent, host, ...) combinations kept per middleware
_CACHED_TEXT = 1024  # requests whose path, agent and host are longer are built, not cached
_CLEAN_TARGETS_CACHED = 1024  # distinct clean (path, query) pairs remembered per middleware


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

    __slots__ = ("_clean_targets", "_shared_attributes", "bursts", "health", "monitor", "options")

    def __init__(self, monitor: Monitor, options: MiddlewareOptions,
                 health: HealthService | None) -> None:
        self.monitor = monitor
        self.options = options
        self.health = health
        self.bursts = FailureBursts(options.burst_threshold, options.burst_window)
        # (method, path, scheme, protocol, agent, host, server) -> the span attributes they
        # make: requests repeat them, and building them (escaping, redacting) cost 1.4 us.
        self._shared_attributes: dict[tuple[Any, ...], dict[str, Any]] = {}
        # (raw path, query) of targets whose scan found nothing: requests repeat them, and a
        # set lookup costs a tenth of the scan (2.7k instructions for "/").
        self._clean_targets: set[tuple[bytes, bytes]] = set()

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
        target = (head.raw_path, head.query)
        if target in self._clean_targets:
            findings: list[Finding] = []
        else:
            findings = target_findings(*target)
            if not findings and len(target[0]) + len(target[1]) <= _CACHED_TEXT:
                if len(self._clean_targets) >= _CLEAN_TARGETS_CACHED:
                    self._clean_targets.clear()  # clients can send any target: bounded
                self._clean_targets.add(target)
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
            shared = request_attributes(head, agent, host, self.monitor.redactor)
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
            add_captured_headers(attributes, "http.request.header.", head.captured,
                                 self.monitor.redactor)
        return attributes


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

