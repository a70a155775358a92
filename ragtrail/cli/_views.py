"""How each record kind reads as a table row: columns, times, sizes, counts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from ragtrail._records import MetricsSample, SecurityEvent, SpanRecord, from_epoch_us, utc_iso
from ragtrail.cli._table import Column

__all__ = [
    "EVENTS",
    "METRICS",
    "SPANS",
    "View",
    "counted",
    "format_bytes",
    "format_datetime",
    "format_time",
    "optional",
]

R = TypeVar("R")

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


@dataclass(frozen=True, slots=True)
class View(Generic[R]):
    """The columns of one record kind and how to turn a record into their cells."""

    columns: Sequence[Column]
    cells: Callable[[R], list[str]]


def format_datetime(when: datetime, timespec: str = "milliseconds") -> str:
    """UTC ISO-8601 with a ``Z``, whatever zone ``when`` is in; milliseconds by default."""
    return utc_iso(when, timespec)


def format_time(epoch_us: int, timespec: str = "milliseconds") -> str:
    """A stored microsecond time as UTC ISO-8601 with a ``Z``.

    >>> format_time(1_714_564_800_123_456)
    '2024-05-01T12:00:00.123Z'
    """
    return format_datetime(from_epoch_us(epoch_us), timespec)


def format_bytes(count: float) -> str:
    """A byte count in binary units, e.g. ``'1.5 MiB'``."""
    value = float(count)
    for unit in _BYTE_UNITS[:-1]:
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_BYTE_UNITS[-1]}"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """A count and its noun, singular for exactly one.

    >>> counted(1, "file"), counted(0, "file"), counted(2, "entry", "entries")
    ('1 file', '0 files', '2 entries')
    """
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def optional(value: str | None) -> str:
    """An empty or missing value as ``-``, so a blank cell never looks like a gap."""
    return value if value else "-"


def _event_cells(event: SecurityEvent) -> list[str]:
    return [
        "-" if event.id is None else str(event.id),
        format_time(event.time_us),
        str(event.severity),
        event.event_type,
        event.source,
        str(event.count),
        optional(event.correlation_id),
        event.description,
    ]


def _span_error(span: SpanRecord) -> str:
    parts = [part for part in (span.error_type, span.error_message) if part]
    return ": ".join(parts) if parts else "-"


def _span_cells(span: SpanRecord) -> list[str]:
    return [
        format_time(span.start_us),
        f"{span.duration_ms:.3f}",
        span.status,
        span.kind,
        span.name,
        span.trace_id,
        optional(span.correlation_id),
        _span_error(span),
    ]


def _metrics_cells(sample: MetricsSample) -> list[str]:
    return [
        format_time(sample.time_us),
        f"{sample.cpu_percent:.1f}",
        f"{sample.memory_percent:.1f}",
        f"{sample.disk_usage_percent:.1f}",
        format_bytes(sample.net_sent_bytes_per_s) + "/s",
        format_bytes(sample.net_recv_bytes_per_s) + "/s",
        str(sample.active_connections),
        str(sample.queue_depth),
        format_bytes(sample.process_rss_bytes),
    ]


EVENTS: View[SecurityEvent] = View(
    columns=(
        Column("ID", right=True, stream_width=6),
        Column("TIME", stream_width=24),
        Column("SEVERITY", stream_width=8),
        Column("TYPE", max_width=32, stream_width=26),  # the longest built-in type
        Column("SOURCE", max_width=32, stream_width=20),
        Column("COUNT", right=True, stream_width=5),
        Column("CORRELATION ID", stream_width=32),  # never cut: it is pasted into filters
        Column("DESCRIPTION", max_width=80, stream_width=80),
    ),
    cells=_event_cells,
)

SPANS: View[SpanRecord] = View(
    columns=(
        Column("START"),
        Column("DURATION MS", right=True),
        Column("STATUS"),
        Column("KIND", max_width=16),
        Column("NAME", max_width=40),
        Column("TRACE ID"),
        Column("CORRELATION ID"),
        Column("ERROR", max_width=60),
    ),
    cells=_span_cells,
)

METRICS: View[MetricsSample] = View(
    columns=(
        Column("TIME"),
        Column("CPU %", right=True),
        Column("MEM %", right=True),
        Column("DISK %", right=True),
        Column("NET SENT", right=True),
        Column("NET RECV", right=True),
        Column("CONNS", right=True),
        Column("QUEUE", right=True),
        Column("RSS", right=True),
    ),
    cells=_metrics_cells,
)
