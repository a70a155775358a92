"""Building a ``SecurityEvent`` that is safe to store, export, log and send.

Everything in an event may come from an attacker (a header, a file name, an exception message),
so every text field is redacted, length-capped and has its control characters escaped: a value
can neither leak a secret nor forge a line in a log file (OWASP Logging Cheat Sheet, "event
data ... sanitized to prevent log injection").
"""

from __future__ import annotations

import functools
import os
import re
import socket
from collections.abc import Mapping
from time import time_ns
from typing import Any

from ragtrail._records import SecurityEvent, Severity
from ragtrail._settings import Settings
from ragtrail.instrument._correlation import _correlation_id
from ragtrail.instrument._redaction import Redactor, escape_controls

__all__ = [
    "MAX_DESCRIPTION_CHARS",
    "MAX_METADATA_BYTES",
    "MAX_SOURCE_CHARS",
    "build_security_event",
    "clean_text",
    "event_type_name",
]

MAX_EVENT_TYPE_CHARS = 64
MAX_SOURCE_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
MAX_METADATA_BYTES = 4096
_MAX_ID_CHARS = 128

_NOT_IN_EVENT_TYPE = re.compile(r"[^a-z0-9_.:-]+")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")


def build_security_event(
    settings: Settings,
    redactor: Redactor,
    event_type: str,
    severity: Severity | str,
    source: str,
    description: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    correlation_id: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> SecurityEvent:
    """A validated, redacted, escaped event stamped with now, this service, host and process.

    Raises ``ValueError`` for a severity other than low/medium/high/critical (naming them) and
    for an event type with no identifier characters. ``correlation_id`` defaults to the
    current one; malformed trace or span IDs are dropped.

    >>> event = build_security_event(Settings(), Redactor(Settings()), "authz_fail", "High",
    ...                              "10.0.0.7", "denied\\r\\nFAKE LINE", {"token": "abc"})
    >>> event.severity, event.description, event.metadata
    (<Severity.HIGH: 30>, 'denied\\\\r\\\\nFAKE LINE', {'token': '[REDACTED]'})
    """
    level = Severity.from_name(severity)
    name = event_type_name(event_type, redactor)
    if correlation_id is None:
        correlation_id = _correlation_id.get()
    if metadata is None:
        details: dict[str, Any] = {}
    else:
        if not isinstance(metadata, Mapping):
            metadata = {"value": metadata}
        details = redactor.redact(metadata, max_bytes=MAX_METADATA_BYTES, escape=True)
        if not isinstance(details, dict):  # the redactor's marker for an unreadable mapping
            details = {"value": details}
    return SecurityEvent(
        event_type=name,
        severity=level,
        source=clean_text(redactor, source, MAX_SOURCE_CHARS) or "unknown",
        description=clean_text(redactor, description, MAX_DESCRIPTION_CHARS),
        time_us=time_ns() // 1000,
        correlation_id=(clean_text(redactor, correlation_id, _MAX_ID_CHARS)
                        if correlation_id else None),
        trace_id=trace_id if trace_id and _TRACE_ID.fullmatch(trace_id) else None,
        span_id=span_id if span_id and _SPAN_ID.fullmatch(span_id) else None,
        metadata=details,
        service=settings.service_name,
        host=_hostname(),
        pid=os.getpid(),
    )


def event_type_name(event_type: str, redactor: Redactor | None = None) -> str:
    """The stored form of an event type: lowercase, ``[a-z0-9_.:-]``, at most 64 characters.

    >>> event_type_name("  AuthN Login-Fail ")
    'authn_login-fail'
    """
    raw = event_type if isinstance(event_type, str) else str(event_type)
    if redactor is not None:  # "authn_login_fail:ana@example.org" must not keep the address
        raw = redactor.redact_text(raw, limit=4 * MAX_EVENT_TYPE_CHARS)
    name = _NOT_IN_EVENT_TYPE.sub("_", raw.strip().lower()).strip("_")[:MAX_EVENT_TYPE_CHARS]
    if not name:
        raise ValueError(
            f"event_type must be a short identifier such as 'authz_fail' or "
            f"'input_validation_fail'; got {escape_controls(repr(event_type)[:80])}")
    return name


def clean_text(redactor: Redactor, text: object, limit: int) -> str:
    """Redacted, cut to ``limit`` characters (with a marker) and with control characters
    escaped, so the result fits on one log line."""
    raw = text if isinstance(text, str) else str(text)
    cleaned = escape_controls(redactor.redact_text(raw, limit=limit))
    if len(cleaned) > limit + 40:  # escapes can lengthen it; keep the cap a cap
        cleaned = cleaned[:limit] + "...[truncated]"
    return cleaned


@functools.cache
def _hostname() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return ""
