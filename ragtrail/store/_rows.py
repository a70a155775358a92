"""Records to row tuples (in table column order, without the ID) and back.

Built on the writer thread, never the caller's. Tuples, not dicts, so SQLite's ``executemany``
takes them as they are; the JSON columns skip the encoder for the common empty mapping. Every
value is coerced to its column's type here, so a record holding the wrong types fails alone
(and is dropped) or is stored as text, instead of making the driver refuse a whole batch.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from ragtrail._records import MetricsSample, SecurityEvent, Severity, SpanEvent, SpanRecord

__all__ = ["RowBuilder", "event_from_row", "metrics_from_row", "span_from_row"]

Row = tuple[Any, ...]

_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _json_object(value: Any) -> str:
    return "{}" if not value else _encode(value)


def _span_events(events: Sequence[SpanEvent]) -> str:
    if not events:
        return "[]"
    return _encode([{"name": e.name, "time_us": e.time_us, "attributes": e.attributes}
                    for e in events])


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _without_nul(row: Row) -> Row:
    # PostgreSQL text cannot hold NUL (0x00); hostile input must not make a batch unwritable.
    return tuple(v.replace("\x00", "\ufffd") if type(v) is str and "\x00" in v else v
                 for v in row)


class RowBuilder:
    """Makes row tuples; fills ``host`` and ``pid`` of events that left them empty.

    ``strip_nul`` replaces NUL characters for databases whose text type refuses them.
    """

    def __init__(self, *, strip_nul: bool) -> None:
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._finish: Callable[[Row], Row] = _without_nul if strip_nul else tuple

    def event(self, rec: SecurityEvent) -> Row:
        """Without the trailing ``count``, which the writer adds at commit time."""
        return self._finish((
            int(rec.time_us), str(rec.event_type), int(Severity(rec.severity)), str(rec.source),
            str(rec.description), _text(rec.correlation_id), _text(rec.trace_id),
            _text(rec.span_id), _json_object(rec.metadata), str(rec.service or ""),
            str(rec.host or self.host), int(rec.pid or self.pid),
        ))

    def span(self, rec: SpanRecord) -> Row:
        return self._finish((
            str(rec.trace_id), str(rec.span_id), _text(rec.parent_span_id), str(rec.name),
            str(rec.kind), int(rec.start_us), int(rec.duration_us), str(rec.status),
            _text(rec.error_type), _text(rec.error_message), _text(rec.correlation_id),
            _json_object(rec.attributes), _span_events(rec.events),
        ))

    def metrics(self, rec: MetricsSample) -> Row:
        return (
            int(rec.time_us), float(rec.cpu_percent), float(rec.memory_percent),
            float(rec.disk_usage_percent), float(rec.net_sent_bytes_per_s),
            float(rec.net_recv_bytes_per_s), int(rec.active_connections),
            int(rec.queue_depth), int(rec.process_rss_bytes),
        )


def event_from_row(row: Any) -> SecurityEvent:
    return SecurityEvent(
        event_type=row.event_type, severity=Severity(row.severity), source=row.source,
        description=row.description, time_us=row.time_us, correlation_id=row.correlation_id,
        trace_id=row.trace_id, span_id=row.span_id, metadata=json.loads(row.metadata),
        service=row.service, host=row.host, pid=row.pid, count=row.count, id=row.id,
    )


def span_from_row(row: Any) -> SpanRecord:
    return SpanRecord(
        trace_id=row.trace_id, span_id=row.span_id, name=row.name, kind=row.kind,
        start_us=row.start_us, duration_us=row.duration_us, parent_span_id=row.parent_span_id,
        status=row.status, error_type=row.error_type, error_message=row.error_message,
        correlation_id=row.correlation_id, attributes=json.loads(row.attributes),
        events=tuple(SpanEvent(e["name"], e["time_us"], e.get("attributes") or {})
                     for e in json.loads(row.events)),
    )


def metrics_from_row(row: Any) -> MetricsSample:
    return MetricsSample(
        time_us=row.time_us, cpu_percent=row.cpu_percent, memory_percent=row.memory_percent,
        disk_usage_percent=row.disk_usage_percent,
        net_sent_bytes_per_s=row.net_sent_bytes_per_s,
        net_recv_bytes_per_s=row.net_recv_bytes_per_s,
        active_connections=row.active_connections, queue_depth=row.queue_depth,
        process_rss_bytes=row.process_rss_bytes,
    )
