"""Log records that say which request and trace they belong to; structured JSON lines.

``CorrelationFilter`` stamps ``correlation_id``, ``trace_id`` and ``span_id`` on each record
when it is emitted (so a ``QueueHandler`` formatting later on another thread still has them).
``JsonFormatter`` writes one JSON object per line: newlines and control characters in a
message are escaped by JSON itself, so a user-supplied string cannot forge log lines, and the
message and extra fields pass the redactor.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace

from ragtrail._records import utc_iso
from ragtrail.instrument import _monitor
from ragtrail.instrument._correlation import _correlation_id
from ragtrail.instrument._spans import span_ids

__all__ = ["CorrelationFilter", "JsonFormatter"]

_FIELDS = ("correlation_id", "trace_id", "span_id")
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "ragtrail_ids", *_FIELDS}


class CorrelationFilter(logging.Filter):
    """Adds ``correlation_id``, ``trace_id`` and ``span_id`` (``default`` outside a scope).

    >>> handler.addFilter(CorrelationFilter())
    >>> handler.setFormatter(logging.Formatter("%(correlation_id)s %(message)s"))
    """

    def __init__(self, name: str = "", default: str | None = "-") -> None:
        super().__init__(name)
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id, span_id = span_ids(trace.get_current_span())
        correlation_id = _correlation_id.get()
        default = self.default
        record.correlation_id = default if correlation_id is None else correlation_id
        record.trace_id = default if trace_id is None else trace_id
        record.span_id = default if span_id is None else span_id
        record.ragtrail_ids = (correlation_id, trace_id, span_id)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, IDs, exception, extras.

    IDs come from ``CorrelationFilter`` when it ran, else from the formatting context.
    Uses the current monitor's redactor.
    """

    def format(self, record: logging.LogRecord) -> str:
        redactor = _monitor.current_redactor()
        ids = _record_ids(record)
        entry: dict[str, Any] = {
            "time": utc_iso(datetime.fromtimestamp(record.created, tz=timezone.utc),
                            "milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redactor.redact_text(record.getMessage()),
            **{name: value for name, value in zip(_FIELDS, ids, strict=True) if value is not None},
        }
        if record.exc_info:
            entry["exception"] = redactor.redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redactor.redact_text(self.formatStack(record.stack_info))
        extra = {key: value for key, value in vars(record).items() if key not in _STANDARD}
        if extra:
            entry["extra"] = redactor.redact(extra, escape=True)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _record_ids(record: logging.LogRecord) -> tuple[str | None, ...]:
    stamped: tuple[str | None, ...] | None = getattr(record, "ragtrail_ids", None)
    if stamped is not None:
        return stamped
    trace_id, span_id = span_ids(trace.get_current_span())
    return _correlation_id.get(), trace_id, span_id
