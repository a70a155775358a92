"""SpanRecord to OpenTelemetry ReadableSpan, on the export thread only.

Building an SDK span costs tens of microseconds; ragtrail's caller thread only makes a small
``SpanRecord`` and this module turns batches of them into what OTel span processors and
exporters expect, off the request path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.types import AttributeValue

from ragtrail._records import SpanRecord
from ragtrail.instrument._attributes import CORRELATION_ID, PARENT_IS_REMOTE, SAMPLED, TRACE_STATE

__all__ = ["CORRELATION_ID_KEY", "SAMPLED_KEY", "SpanConverter"]

# The names other modules import from here (spans, tests); the keys live in _attributes.
CORRELATION_ID_KEY = CORRELATION_ID
SAMPLED_KEY = SAMPLED

_SPAN_KINDS = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_PRIMITIVES = (str, bool, int, float)
_MAX_STRING = 4096  # a value that is not an OTel attribute type becomes JSON, capped
_RESERVED = (SAMPLED, TRACE_STATE, PARENT_IS_REMOTE)  # record attributes that are not exported
_TRACE_STATES_CACHED = 64  # the spans of a request share one tracestate: parse it once


class SpanConverter:
    """Converts records under one Resource and the ``ragtrail`` instrumentation scope, within
    the OTel span limits (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` and the like, or those of the
    app's provider), dropped counts set, as the SDK does for its own spans."""

    __slots__ = ("_limits", "_resource", "_scope", "_trace_states")

    def __init__(self, resource: Resource, version: str,
                 limits: SpanLimits | None = None) -> None:
        self._resource = resource
        self._scope = InstrumentationScope("ragtrail", version)
        self._limits = limits or SpanLimits()
        self._trace_states: dict[str, TraceState] = {}

    @property
    def resource(self) -> Resource:
        return self._resource

    def _trace_state(self, header: Any) -> TraceState | None:
        """The tracestate a record carries (its W3C header), parsed once per distinct value."""
        if not isinstance(header, str):
            return None
        parsed = self._trace_states.get(header)
        if parsed is None:
            if len(self._trace_states) >= _TRACE_STATES_CACHED:
                self._trace_states.clear()
            parsed = self._trace_states[header] = TraceState.from_header([header])
        return parsed

    def convert(self, record: SpanRecord) -> ReadableSpan:
        """The finished OTel span for ``record``, marked sampled (it is being exported)."""
        trace_id = int(record.trace_id, 16)
        header = record.attributes.get(TRACE_STATE)
        context = SpanContext(trace_id, int(record.span_id, 16), is_remote=False,
                              trace_flags=_SAMPLED,
                              trace_state=self._trace_state(header) if header else None)
        parent = None
        if record.parent_span_id:
            # The OTLP exporters set the span's flags from the parent's is_remote (SpanFlags
            # HAS_IS_REMOTE, and IS_REMOTE for a parent from another process).
            parent = SpanContext(trace_id, int(record.parent_span_id, 16),
                                 is_remote=record.attributes.get(PARENT_IS_REMOTE) is True,
                                 trace_flags=_SAMPLED)
        start_ns = record.start_us * 1000
        limits = self._limits
        attributes: Mapping[str, AttributeValue] = span_attributes(record)
        attributes = _bounded(attributes, limits.max_span_attributes,
                              limits.max_span_attribute_length)
        events: Sequence[Event] = tuple(
            Event(event.name, _bounded(otel_attributes(event.attributes),
                                       limits.max_event_attributes, limits.max_attribute_length),
                  event.time_us * 1000)
            for event in record.events)
        if limits.max_events is not None and len(events) > limits.max_events:  # newest kept
            events = BoundedList.from_seq(limits.max_events, events)
        return ReadableSpan(
            name=record.name,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            events=events,
            kind=_SPAN_KINDS.get(record.kind, SpanKind.INTERNAL),
            status=_status(record),
            start_time=start_ns,
            end_time=start_ns + record.duration_us * 1000,
            instrumentation_scope=self._scope,
        )


def _bounded(attributes: Mapping[str, AttributeValue], most: int | None,
             longest: int | None) -> Mapping[str, AttributeValue]:
    """``attributes`` within the limits (dropped count set), or as they are when within."""
    if (most is not None and len(attributes) > most) or (
            longest is not None and _any_longer(attributes, longest)):
        return BoundedAttributes(most, attributes, max_value_len=longest)
    return attributes


def _any_longer(attributes: Mapping[str, AttributeValue], length: int) -> bool:
    return any(
        len(value) > length if isinstance(value, str)
        else isinstance(value, tuple) and any(isinstance(v, str) and len(v) > length
                                              for v in value)
        for value in attributes.values())


def span_attributes(record: SpanRecord) -> dict[str, AttributeValue]:
    """The record's attributes as OTel values, plus correlation ID and ``error.type``."""
    attributes = otel_attributes(record.attributes)
    for reserved in _RESERVED:
        attributes.pop(reserved, None)
    if record.correlation_id is not None:
        attributes.setdefault(CORRELATION_ID, record.correlation_id)
    if record.status == "error" and record.error_type:
        # OTel semantic conventions: error.type on every span that ends with an error.
        attributes.setdefault("error.type", record.error_type)
    return attributes


def otel_attributes(values: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Keep OTel attribute types as they are; None is dropped, anything else becomes JSON."""
    converted: dict[str, AttributeValue] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, str):
            converted[key] = _encodable(value)
        elif isinstance(value, _PRIMITIVES):
            converted[key] = value
        elif _is_homogeneous_sequence(value):
            converted[key] = tuple(_encodable(item) if isinstance(item, str) else item
                                   for item in value)
        else:
            converted[key] = _encodable(_as_json(value))
    return converted


def _encodable(text: str) -> str:
    """``text`` as OTLP can carry it: a lone surrogate (``os.fsdecode`` of a file name that is
    not UTF-8) becomes its ``\\udcff`` escape, where the exporter would drop the attribute
    and log an error with a traceback for every span."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _is_homogeneous_sequence(value: Any) -> bool:
    # OTel attribute arrays hold one primitive type (spec: common/#attribute).
    if not isinstance(value, (list, tuple)) or not value:
        return False
    first = type(value[0])
    return first in _PRIMITIVES and all(type(item) is first for item in value)


def _as_json(value: Any) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):  # circular structures
        text = repr(value)
    return text if len(text) <= _MAX_STRING else text[:_MAX_STRING] + "..."


def _status(record: SpanRecord) -> Status:
    if record.status != "error":
        # OTel trace API: instrumentation leaves a successful span UNSET, not OK.
        return Status(StatusCode.UNSET)
    parts: Sequence[str] = [p for p in (record.error_type, record.error_message) if p]
    return Status(StatusCode.ERROR, ": ".join(parts) or None)
