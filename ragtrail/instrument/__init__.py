"""Spans, ``@monitored``, correlation IDs, the process-wide monitor and its integrations."""

from ragtrail.instrument._correlation import (
    correlation_id,
    correlation_scope,
    new_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)
from ragtrail.instrument._decorator import monitored
from ragtrail.instrument._logging import CorrelationFilter, JsonFormatter
from ragtrail.instrument._monitor import (
    Monitor,
    configure,
    get_monitor,
    on_alert,
    security_event,
    shutdown,
)
from ragtrail.instrument._propagation import propagate
from ragtrail.instrument._requests import instrument_requests, uninstrument_requests
from ragtrail.instrument._spans import LiveSpan, start_span
from ragtrail.instrument._webhook import WebhookAlert

__all__ = [
    "CorrelationFilter",
    "JsonFormatter",
    "LiveSpan",
    "Monitor",
    "WebhookAlert",
    "configure",
    "correlation_id",
    "correlation_scope",
    "get_monitor",
    "instrument_requests",
    "monitored",
    "new_correlation_id",
    "on_alert",
    "propagate",
    "reset_correlation_id",
    "security_event",
    "set_correlation_id",
    "shutdown",
    "start_span",
    "uninstrument_requests",
]
