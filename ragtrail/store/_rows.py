"""Records to row tuples (in table column order) and back.

Built on the writer thread, never the caller's. Tuples, not dicts, so SQLite's ``executemany``
takes them as they are; the JSON columns skip the encoder for the common empty mapping.

Two builders: the fast one passes values as they are (SQLite stores any type, and refuses an
unbindable one with an error that sends the batch to one-by-one retries); the strict one
coerces every value to its column's type, for other databases (a PostgreSQL driver refuses a
wrong type like a fault, not a data error) and for those one-by-one retries.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from ragtrail._records import MetricsSample, SecurityEvent, Severity, SpanEvent, SpanRecord
from ragtrail.store._json import decode as _loads
from ragtrail.store._json import encode as _encode

__all__ = [
    "INDEXED_CHARS", "Row", "RowBuilder", "event_from_row", "metrics_from_row", "span_from_row",
]

Row = tuple[Any, ...]

_LEVEL = {int(level): int(level) for level in Severity}  # a dict lookup: Severity() is slow


def _json_object(value: Any) -> str:
    return "{}" if not value else _encode(value)


def _span_events(events: Sequence[SpanEvent]) -> str:
    if not events:
        return "[]"
    return _encode([{"name": e.name, "time_us": e.time_us, "attributes": e.attributes}
                    for e in events])


def _text(value: object) -> str | None:
    return None if value is None else str(value)


# PostgreSQL refuses a btree index entry over 2,704 bytes, and retrying cannot cure it: a
# 3,000-character correlation ID from app input stopped that writer for good. Indexed text
# is cut to this many characters (at most 4 bytes each in UTF-8) for such databases.
INDEXED_CHARS = 512


def _key(value: object) -> str:
    text = str(value)
    return text if len(text) <= INDEXED_CHARS else text[:INDEXED_CHARS]


def _storable(text: str, nul_allowed: bool) -> str:
    """``text`` as any database can hold it: a lone surrogate (``os.fsdecode`` of a file name
    that is not UTF-8), which no UTF-8 driver encodes, escaped as ``\\udcff``; NUL, which
    PostgreSQL text refuses, as U+FFFD. Either dropped the whole record before."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if not nul_allowed and "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text


def _storable_row(row: Row, nul_allowed: bool) -> Row:
    return tuple(_storable(v, nul_allowed) if type(v) is str else v for v in row)


class RowBuilder:
    """Makes complete row tuples, ID first; fills ``host`` and ``pid`` of events left empty.

    ``strict`` coerces each value to its column type and escapes lone surrogates in text;
    ``limited_text`` (with ``strict``) also fits text to databases that refuse NUL characters
    in it (they become U+FFFD) and index entries over a few KB (indexed text is cut to
    ``INDEXED_CHARS``). A severity that is not a ``Severity`` value raises ``KeyError`` in
    both modes. SQLite takes the fast builder's rows, and the strict ones for a batch it
    refused, record by record.
    """

    def __init__(self, *, strict: bool, limited_text: bool) -> None:
        self.host = socket.gethostname()
        self.pid = os.getpid()
        finish = functools.partial(_storable_row, nul_allowed=not limited_text)
        self._key: Callable[[object], str] = _key if limited_text else str
        self.event: Callable[[SecurityEvent, int, int], Row] = self._event
        self.span: Callable[[SpanRecord, int], Row] = self._span
        self.metrics: Callable[[MetricsSample, int], Row] = self._metrics
        if strict:
            self.event = lambda rec, row_id, count: finish(
                self._strict_event(rec, row_id, count))
            self.span = lambda rec, row_id: finish(self._strict_span(rec, row_id))
            self.metrics = self._strict_metrics

    def _event(self, rec: SecurityEvent, row_id: int, count: int) -> Row:
        metadata = rec.metadata
        return (row_id, rec.time_us, rec.event_type, _LEVEL[rec.severity], rec.source,
                rec.description, rec.correlation_id, rec.trace_id, rec.span_id,
                "{}" if not metadata else _encode(metadata), rec.service,
                rec.host or self.host, rec.pid or self.pid, count)

    def _span(self, rec: SpanRecord, row_id: int) -> Row:
        attributes = rec.attributes
        return (row_id, rec.trace_id, rec.span_id, rec.parent_span_id, rec.name, rec.kind,
                rec.start_us, rec.duration_us, rec.status, rec.error_type, rec.error_message,
                rec.correlation_id, "{}" if not attributes else _encode(attributes),
                _span_events(rec.events))

    def _metrics(self, rec: MetricsSample, row_id: int) -> Row:
        return (row_id, rec.time_us, rec.cpu_percent, rec.memory_percent,
                rec.disk_usage_percent, rec.net_sent_bytes_per_s, rec.net_recv_bytes_per_s,
                rec.active_connections, rec.queue_depth, rec.process_rss_bytes)

    def _optional_key(self, value: object) -> str | None:
        return None if value is None else self._key(value)

    def _strict_event(self, rec: SecurityEvent, row_id: int, count: int) -> Row:
        return (
            row_id, int(rec.time_us), self._key(rec.event_type), _LEVEL[rec.severity],
            str(rec.source), str(rec.description), self._optional_key(rec.correlation_id),
            _text(rec.trace_id), _text(rec.span_id), _json_object(rec.metadata),
            str(rec.service or ""), str(rec.host or self.host), int(rec.pid or self.pid), count,
        )

    def _strict_span(self, rec: SpanRecord, row_id: int) -> Row:
        return (
            row_id, self._key(rec.trace_id), str(rec.span_id), _text(rec.parent_span_id),
            self._key(rec.name), str(rec.kind), int(rec.start_us), int(rec.duration_us),
            str(rec.status), _text(rec.error_type), _text(rec.error_message),
            self._optional_key(rec.correlation_id), _json_object(rec.attributes),
            _span_events(rec.events),
        )

    def _strict_metrics(self, rec: MetricsSample, row_id: int) -> Row:
        return (
            row_id, int(rec.time_us), float(rec.cpu_percent), float(rec.memory_percent),
            float(rec.disk_usage_percent), float(rec.net_sent_bytes_per_s),
            float(rec.net_recv_bytes_per_s), int(rec.active_connections),
            int(rec.queue_depth), int(rec.process_rss_bytes),
        )


_SEVERITY = {int(level): level for level in Severity}


def _mapping(text: str) -> Any:
    return {} if text == "{}" else _loads(text)


# Readers unpack rows by position (in table column order): measured about twice as fast as
# attribute access on SQLAlchemy rows, which matters when a query returns thousands of rows.

def event_from_row(row: Sequence[Any]) -> SecurityEvent:
    (row_id, time_us, event_type, severity, source, description, correlation_id, trace_id,
     span_id, metadata, service, host, pid, count) = row
    return SecurityEvent(event_type, _SEVERITY[severity], source, description, time_us,
                         correlation_id, trace_id, span_id, _mapping(metadata), service, host,
                         pid, count, row_id)


def span_from_row(row: Sequence[Any]) -> SpanRecord:
    (_id, trace_id, span_id, parent_span_id, name, kind, start_us, duration_us, status,
     error_type, error_message, correlation_id, attributes, events) = row
    return SpanRecord(
        trace_id, span_id, name, kind, start_us, duration_us, parent_span_id, status,
        error_type, error_message, correlation_id, _mapping(attributes),
        () if events == "[]" else tuple(SpanEvent(e["name"], e["time_us"],
                                                  e.get("attributes") or {})
                                        for e in _loads(events)))


def metrics_from_row(row: Sequence[Any]) -> MetricsSample:
    return MetricsSample(*row[1:])
