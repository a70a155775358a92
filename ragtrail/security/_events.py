"""How the security part reaches the monitor: resolve it late, and never let recording fail.

Resolving at use time (not at construction) means a validator built at import time still
reports to the monitor that ``ragtrail.configure()`` set up later.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from ragtrail._records import SecurityEvent, Severity
from ragtrail._settings import Settings

if TYPE_CHECKING:
    from ragtrail.instrument._redaction import Redactor

__all__ = ["EventSink", "current_correlation_id", "record_event", "resolve_monitor"]

logger = logging.getLogger("ragtrail.security")


class EventSink(Protocol):
    """What the security part needs of a ``ragtrail.instrument.Monitor``."""

    @property
    def settings(self) -> Settings: ...

    @property
    def redactor(self) -> Redactor: ...

    def security_event(
        self,
        event_type: str,
        severity: Severity | str,
        source: str,
        description: str,
        metadata: dict[str, Any] | None = None,
    ) -> SecurityEvent | None: ...


def resolve_monitor(monitor: EventSink | None) -> EventSink:
    if monitor is not None:
        return monitor
    from ragtrail.instrument import get_monitor

    return get_monitor()


def current_correlation_id() -> str | None:
    from ragtrail.instrument import correlation_id

    return correlation_id()


def record_event(
    monitor: EventSink | None,
    event_type: str,
    severity: Severity,
    source: str,
    description: str,
    metadata: dict[str, Any],
) -> None:
    """Record a security event; a failure is logged, never raised into the caller."""
    try:
        resolve_monitor(monitor).security_event(
            event_type, severity, source, description, metadata)
    except Exception:
        logger.exception("ragtrail could not record a %s security event", event_type)
