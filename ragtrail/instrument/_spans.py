"""ragtrail's own span: an OpenTelemetry ``Span`` that costs a few microseconds, not thirty.

The caller's thread only takes the clock, draws random IDs, puts the span in the OTel context
and, at the end, hands a frozen ``SpanRecord`` to the monitor. Building the SDK's
``ReadableSpan`` for export happens later on the export pipeline's thread. Because the span is
a real ``opentelemetry.trace.Span`` placed in the real OTel context, spans of other OTel
instrumentations (SDK tracer, httpx, database drivers) nest under it, and it nests under theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from time import time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util import types

from ragtrail._records import SpanEvent, SpanStatus
from ragtrail._rng import getrandbits
from ragtrail.instrument._attributes import PARENT_IS_REMOTE, TRACE_STATE
from ragtrail.instrument._correlation import _correlation_id
from ragtrail.instrument._exception_text import describe, qualified_name, stack_trace
from ragtrail.instrument._export_convert import SAMPLED_KEY
from ragtrail.instrument._otel_context import attach, detach, get_current
from ragtrail.instrument._secrets import escape_controls
from ragtrail.instrument._span_record import span_record
from ragtrail.instrument._trace_ids import new_trace_id

if TYPE_CHECKING:
    from contextvars import Token

    from ragtrail.instrument._monitor import Monitor

# new_trace_id is re-exported: the middleware starts its requests' traces with it.
__all__ = ["LiveSpan", "new_trace_id", "open_span", "span_ids", "start_span"]

# The key OTel keeps the current span under is private; learn it through the public API.
(_SPAN_KEY,) = trace.set_span_in_context(trace.INVALID_SPAN, Context()).keys()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class LiveSpan(trace.Span):
    """A span in progress; ``end()`` turns it into a ``SpanRecord`` for the store and export.

    Attributes and events added after ``end()`` are ignored, as in the OTel SDK.
    """

    __slots__ = (
        "_attributes", "_context", "_correlation_id", "_ended", "_error_message",
        "_error_type", "_events", "_kind", "_monitor", "_name", "_own_attributes",
        "_parent_span_id", "_sampled", "_span_context", "_span_id", "_start_ns", "_status",
        "_token", "_trace_id", "_trace_int", "_trace_state", "_trace_state_header",
    )

    def __init__(
        self,
        monitor: Monitor,
        name: str,
        kind: str,
        trace_int: int,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        sampled: bool,
        correlation_id: str | None,
        attributes: dict[str, Any],
        start_ns: int,
    ) -> None:
        self._monitor = monitor
        self._name = name
        self._kind = kind
        # IDs are kept as the W3C hex the record needs: children reuse their parent's strings,
        # so a span formats only its own ID. The trace ID's integer is kept for sampling.
        self._trace_int = trace_int
        self._trace_id = trace_id
        self._span_id = span_id
        self._parent_span_id = parent_span_id
        self._sampled = sampled
        self._correlation_id = correlation_id
        # Shared with the decorator's precomputed attributes until the first write.
        self._attributes = attributes
        self._own_attributes = False
        self._events: list[SpanEvent] | None = None
        self._status: SpanStatus = "ok"
        self._error_type: str | None = None
        self._error_message: str | None = None
        self._span_context: SpanContext | None = None
        # A remote parent's W3C tracestate (vendors' entries), carried down to every child so
        # outgoing calls forward it and the export carries it; None (the usual case) for none.
        # Its header form is made once per request and shared by the spans under it.
        self._trace_state: TraceState | None = None
        self._trace_state_header: str | None = None
        self._context: Context | None = None
        self._token: Token[Context] | None = None
        self._ended = False
        self._start_ns = start_ns

    # -- identity -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def start_ns(self) -> int:
        return self._start_ns

    @property
    def trace_id_hex(self) -> str:
        return self._trace_id

    @property
    def span_id_hex(self) -> str:
        return self._span_id

    @property
    def context(self) -> Context:
        """The OTel context with this span current (what generators attach at each step)."""
        if self._context is None:
            self._context = trace.set_span_in_context(self)
        return self._context

    def get_span_context(self) -> SpanContext:
        # Built on demand: most spans are never asked (only propagators and OTel children ask).
        if self._span_context is None:
            self._span_context = SpanContext(
                self._trace_int, int(self._span_id, 16), is_remote=False,
                trace_flags=_SAMPLED if self._sampled else _NOT_SAMPLED,
                trace_state=self._trace_state)
        return self._span_context

    def is_recording(self) -> bool:
        return not self._ended

    # -- annotations ----------------------------------------------------------------------
    # The OTel API methods are how application code annotates ragtrail's spans
    # (``trace.get_current_span().set_attribute(...)``), so their values pass the redactor
    # like everything else stored or exported. ragtrail's own code, whose values are
    # redacted already or are its own numbers and templates, uses the underscored twins.

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if not self._ended:
            self._set(key, self._monitor.redactor.redact_attribute(key, value))

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if not self._ended:
            self._update(self._monitor.redactor.redact_attributes(attributes))

    def _set(self, key: str, value: Any) -> None:
        """Set an attribute as it is: a value ragtrail made or redacted itself."""
        if not self._ended:
            self._writable()[key] = value

    def _update(self, attributes: Mapping[str, Any]) -> None:
        """Set attributes as they are: values ragtrail made or redacted itself."""
        if not self._ended:
            self._writable().update(attributes)

    def _writable(self) -> dict[str, Any]:
        if not self._own_attributes:  # the decorator's shared dict: copy on the first write
            self._attributes = dict(self._attributes)
            self._own_attributes = True
        return self._attributes

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        if not self._ended:
            self._add_event(name, self._monitor.redactor.redact_attributes(attributes)
                            if attributes else None, timestamp)

    def _add_event(self, name: str, attributes: Mapping[str, Any] | None,
                   timestamp: int | None = None) -> None:
        """Add an event whose attributes ragtrail made or redacted itself."""
        if self._ended:
            return
        event = SpanEvent(name, (timestamp if timestamp is not None else time_ns()) // 1000,
                          dict(attributes) if attributes else {})
        if self._events is None:
            self._events = [event]
        else:
            self._events.append(event)

    def update_name(self, name: str) -> None:
        if not self._ended:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended:
            return
        if isinstance(status, Status):
            description = status.description if description is None else description
            status = status.status_code
        if status is StatusCode.ERROR:
            self._status = "error"
            if description is not None:
                self._error_message = escape_controls(
                    self._monitor.redactor.redact_text(description))
        elif status is StatusCode.OK:
            self._status = "ok"

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Add the OTel ``exception`` event; message and stack trace pass the redactor."""
        if self._ended:
            return
        message = self._monitor.redactor.redact_text(describe(exception))
        self._exception_event(exception, message, attributes=attributes, timestamp=timestamp,
                              escaped=escaped)

    def fail(self, exception: BaseException, *, timestamp: int | None = None) -> None:
        """Mark the span failed by ``exception``: error status, type, redacted message, event
        (at ``timestamp``, ns since the epoch, when given: the span's end, not after it)."""
        if self._ended:
            return
        message = self._monitor.redactor.redact_text(describe(exception))
        self._exception_event(exception, message, escaped=True, timestamp=timestamp)
        self._mark_error(qualified_name(type(exception)), message)

    def set_error(self, error_type: str, message: str | None = None) -> None:
        """Error status with ``error_type`` (OTel ``error.type``) and a redacted message."""
        if self._ended:
            return
        redacted = None if message is None else self._monitor.redactor.redact_text(message)
        self._mark_error(error_type, redacted)

    def _exception_event(self, exception: BaseException, message: str, *,
                         attributes: types.Attributes = None, timestamp: int | None = None,
                         escaped: bool) -> None:
        event_attributes: dict[str, Any] = {
            "exception.type": qualified_name(type(exception)),
            "exception.message": message,
            "exception.stacktrace": self._monitor.redactor.redact_text(stack_trace(exception)),
            "exception.escaped": escaped,
        }
        if attributes:
            event_attributes.update(self._monitor.redactor.redact_attributes(attributes))
        self._add_event("exception", event_attributes, timestamp)

    def _mark_error(self, error_type: str, redacted_message: str | None) -> None:
        self._status = "error"
        self._error_type = error_type
        if redacted_message is not None:
            # A one-line column read by people and log shippers: controls escaped.
            self._error_message = escape_controls(redacted_message)

    # -- context --------------------------------------------------------------------------

    def attach(self) -> None:
        """Make this span current in the caller's context until ``end()``."""
        self._token = attach(self.context)

    def end(self, end_time: int | None = None) -> None:
        """Detach (if this context attached it), record the span. A second call does nothing."""
        if self._ended:
            return
        self._ended = True
        end_ns = time_ns() if end_time is None else end_time
        context, self._context = self._context, None  # it refers back to this span: freeing
        token = self._token                              # it here spares the cyclic GC
        if token is not None:
            self._token = None
            # Only the context that attached the span may detach it; ending it elsewhere (a
            # span handed to another task) leaves that context alone rather than log an error.
            if get_current() is context:
                detach(token)
        attributes = self._attributes if self._own_attributes else dict(self._attributes)
        attributes[SAMPLED_KEY] = self._sampled
        start_ns = self._start_ns
        # Positional, in SpanRecord's field order: keywords cost a measurable 0.4 us here.
        self._monitor.record_span(span_record(
            self._trace_id, self._span_id, self._name, self._kind, start_ns // 1000,
            max(0, end_ns - start_ns) // 1000, self._parent_span_id, self._status,
            self._error_type, self._error_message, self._correlation_id, attributes,
            () if self._events is None else tuple(self._events)))

    def __repr__(self) -> str:
        return (f"LiveSpan(name={self._name!r}, kind={self._kind!r}, "
                f"trace_id={self.trace_id_hex}, span_id={self.span_id_hex})")


def open_span(
    monitor: Monitor,
    name: str,
    kind: str,
    attributes: dict[str, Any],
    parent: Context | None = None,
    correlation_id: str | None = None,
    trace_int: int | None = None,
    trace_hex: str | None = None,
) -> LiveSpan:
    """Create a span under ``parent`` (default: the current context); ``attach()`` it next.

    ``attributes`` is shared, not copied, until the span's first write: pass a dict nobody
    changes afterwards (``@monitored`` passes its precomputed one). ``trace_int`` is the
    trace ID to use if the span starts a trace (from ``new_trace_id()``; default: a new one),
    ``trace_hex`` its hex if the caller made it already.
    The hot path of ``@monitored``: IDs from ragtrail's own ``getrandbits``, the sampling
    decision only at the root of a trace (children follow their parent, as W3C Trace Context
    says).
    """
    base = get_current() if parent is None else parent
    parent_span = base.get(_SPAN_KEY)
    sampler = monitor.sampler
    trace_state: TraceState | None = None
    remote = False
    if type(parent_span) is LiveSpan:
        trace_int, trace_id = parent_span._trace_int, parent_span._trace_id
        parent_id: str | None = parent_span._span_id
        sampled = sampler.child(trace_int, parent_span._sampled)
        trace_state = parent_span._trace_state
    elif parent_span is None or not (parent_context := _valid_context(parent_span)):
        if trace_int is None:
            trace_int, trace_hex = new_trace_id(), None
        # to_bytes().hex() is the cheapest way from an int to fixed-width lowercase hex.
        trace_id, parent_id = trace_hex or trace_int.to_bytes(16, "big").hex(), None
        sampled = sampler.root(trace_int)
    else:  # another instrumentation's span, or a remote parent
        trace_int = parent_context.trace_id
        trace_id, parent_id = f"{trace_int:032x}", f"{parent_context.span_id:016x}"
        sampled = sampler.child(trace_int, parent_context.trace_flags.sampled)
        trace_state = parent_context.trace_state or None
        remote = parent_context.is_remote
    span = LiveSpan(
        monitor, name, kind, trace_int, trace_id,
        (getrandbits(64) or 1).to_bytes(8, "big").hex(), parent_id, sampled,
        _correlation_id.get() if correlation_id is None else correlation_id,
        attributes, time_ns())
    if trace_state is not None:
        # OTLP carries the tracestate on every span of the trace, as the SDK exporter sends it:
        # vendors read their entry there. The record carries it to the export thread.
        span._trace_state = trace_state
        span._trace_state_header = header = (
            parent_span._trace_state_header if type(parent_span) is LiveSpan
            else trace_state.to_header())
        span._set(TRACE_STATE, header)
    if remote:  # OTLP's span flags say the parent came over the wire (SpanFlags IS_REMOTE)
        span._set(PARENT_IS_REMOTE, True)
    # Everything else the caller's context carried (baggage, other instrumentations' keys)
    # stays visible under the span.
    span._context = Context({**base, _SPAN_KEY: span})
    return span


def _valid_context(span: object) -> SpanContext | None:
    if isinstance(span, trace.Span):
        context = span.get_span_context()
        if context.is_valid:
            return context
    return None


def start_span(
    name: str,
    kind: str,
    *,
    attributes: Mapping[str, Any] | None = None,
    parent: Context | None = None,
    correlation_id: str | None = None,
) -> LiveSpan:
    """Start a span and make it current; call ``end()`` on it (in the same context) when done.

    ``parent`` is an OTel context, e.g. one a W3C ``traceparent`` was extracted into; by
    default the current span is the parent. The span is recorded by the current monitor.

    >>> span = start_span("load index", "function")
    >>> span.end()
    """
    from ragtrail.instrument._monitor import get_monitor  # _monitor imports this module

    monitor = get_monitor()
    span = open_span(monitor, name, kind,
                     monitor.redactor.redact_attributes(attributes) if attributes else {},
                     parent, correlation_id)
    span._own_attributes = True
    span.attach()
    return span


def span_ids(span: trace.Span) -> tuple[str | None, str | None]:
    """The (trace_id, span_id) of any OTel span as lowercase hex, or (None, None) if invalid."""
    if type(span) is LiveSpan:
        return span._trace_id, span._span_id
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return None, None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"

