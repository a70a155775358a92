"""Attribute keys ragtrail writes on spans, span events and metrics, each named once.

A key written in one module and read in another (the monitor writes an event's severity, the
export thread reads it to keep the trace) must not drift apart as two copies of a string.
Keys of the OpenTelemetry and OpenInference conventions live with the code that applies them
(``_rag_attributes``); these are ragtrail's own, under the ``ragtrail.`` prefix.
"""

from __future__ import annotations

__all__ = [
    "CALL_KIND",
    "CALL_NAME",
    "CORRELATION_ID",
    "EVENT_DESCRIPTION",
    "EVENT_SEVERITY",
    "EVENT_SOURCE",
    "EVENT_TYPE",
    "PARENT_IS_REMOTE",
    "SAMPLED",
    "TRACE_STATE",
]

CORRELATION_ID = "ragtrail.correlation_id"
"""Span attribute carrying ``SpanRecord.correlation_id`` (the request's correlation ID)."""

SAMPLED = "ragtrail.sampled"
"""Reserved record attribute: the head-sampling decision made when the span started.

Read by the export pipeline and never exported; absent means "decide from the trace ID".
"""

TRACE_STATE = "ragtrail.trace_state"
"""Reserved record attribute: the W3C ``tracestate`` a remote parent brought, on that span and
every span under it. The export pipeline moves it into the OTLP span's ``trace_state``."""

PARENT_IS_REMOTE = "ragtrail.parent_is_remote"
"""Reserved record attribute: True on a span whose parent came over the wire (``traceparent``).
The export pipeline moves it into the OTLP span's flags (``SPAN_FLAGS_CONTEXT_IS_REMOTE``)."""

# On the span event the monitor attaches for a security event; the export pipeline keeps a
# trace whose span has an event of high or critical severity even when head sampling dropped it.
EVENT_SEVERITY = "ragtrail.event.severity"
EVENT_SOURCE = "ragtrail.event.source"
EVENT_DESCRIPTION = "ragtrail.event.description"

# On the OTel metrics: the security-event counter and the @monitored duration histogram.
EVENT_TYPE = "ragtrail.event.type"
CALL_NAME = "ragtrail.call.name"
CALL_KIND = "ragtrail.call.kind"
