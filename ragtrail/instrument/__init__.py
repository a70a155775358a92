"""Spans, ``@monitored``, correlation IDs and the process-wide monitor."""

from ragtrail.instrument._correlation import (
    correlation_id,
    correlation_scope,
    new_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)
from ragtrail.instrument._monitor import Monitor, configure, get_monitor, shutdown
from ragtrail.instrument._spans import LiveSpan, start_span

__all__ = [
    "LiveSpan",
    "Monitor",
    "configure",
    "correlation_id",
    "correlation_scope",
    "get_monitor",
    "new_correlation_id",
    "reset_correlation_id",
    "set_correlation_id",
    "shutdown",
    "start_span",
]
