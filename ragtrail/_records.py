"""The shared vocabulary: severities and the three record kinds every part of ragtrail speaks.

Times are integers of microseconds since the Unix epoch (UTC): cheap to take on the caller's
thread, exact in every database, and ordered. ``timestamp`` properties give ``datetime`` views.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = [
    "MetricsSample",
    "Record",
    "SecurityEvent",
    "Severity",
    "SpanEvent",
    "SpanRecord",
    "SpanStatus",
    "from_epoch_us",
    "parse_utc_iso",
    "utc_iso",
]

SpanStatus = Literal["ok", "error"]


class Severity(enum.IntEnum):
    """How bad a security or operations event is; stored as this ordered integer."""

    LOW = 10
    MEDIUM = 20
    HIGH = 30
    CRITICAL = 40

    @classmethod
    def parse(cls, value: Severity | str | int) -> Severity:
        """Accept the enum, its name in any case, or its stored integer.

        >>> Severity.parse("High")
        <Severity.HIGH: 30>
        """
        if isinstance(value, Severity):
            return value
        if isinstance(value, str):
            member = cls.__members__.get(value.strip().upper())
            if member is not None:
                return member
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        raise cls._invalid(value)

    @classmethod
    def from_name(cls, value: Severity | str) -> Severity:
        """The enum or its name in any case, nothing else: what ``security_event`` takes
        (issue 3), so a stray integer or ``None`` is a programming error, not a severity."""
        if isinstance(value, (cls, str)):
            return cls.parse(value)
        raise cls._invalid(value)

    @classmethod
    def _invalid(cls, value: object) -> ValueError:
        choices = ", ".join(m.name.lower() for m in cls)
        return ValueError(f"severity must be one of {choices}; got {value!r}")

    def __str__(self) -> str:
        return self.name.lower()


def from_epoch_us(epoch_us: int) -> datetime:
    """The aware UTC ``datetime`` for a stored microsecond timestamp."""
    seconds, micros = divmod(epoch_us, 1_000_000)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).replace(microsecond=micros)


def utc_iso(when: datetime, timespec: str = "auto") -> str:
    """ISO-8601 in UTC with a ``Z``, as every time ragtrail prints or writes reads."""
    return when.astimezone(timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_utc_iso(text: str) -> datetime:
    """The aware time of ISO-8601 ``text`` ending in ``Z``, an offset, or nothing (UTC);
    ``ValueError`` if it is none. ``datetime.fromisoformat`` reads ``Z`` only from 3.11 on."""
    when = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in {"Z", "z"} else text)
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """Something a security reviewer or an on-call engineer should be able to find later.

    ``count`` is above 1 when identical events (type, source, severity) were coalesced into
    this row, so a flood cannot push other events out of the ring. ``id`` is None until stored.
    """

    event_type: str
    severity: Severity
    source: str
    description: str
    time_us: int
    correlation_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    service: str = ""
    host: str = ""
    pid: int = 0
    count: int = 1
    id: int | None = None

    @property
    def timestamp(self) -> datetime:
        return from_epoch_us(self.time_us)


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """A timestamped annotation on a span: an exception, or a security event seen inside it."""

    name: str
    time_us: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span: a ``@monitored`` call, a request, or an outgoing HTTP call.

    IDs are lowercase hex as in W3C Trace Context (32 characters for traces, 16 for spans).
    ``kind`` is ragtrail's kind: ``server``, ``client``, or a RAG step kind such as
    ``retriever`` (see ``ragtrail.instrument``).
    """

    trace_id: str
    span_id: str
    name: str
    kind: str
    start_us: int
    duration_us: int
    parent_span_id: str | None = None
    status: SpanStatus = "ok"
    error_type: str | None = None
    error_message: str | None = None
    correlation_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()

    @property
    def start_time(self) -> datetime:
        return from_epoch_us(self.start_us)

    @property
    def duration_ms(self) -> float:
        return self.duration_us / 1000.0


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """A periodic reading of the host and this process (psutil)."""

    time_us: int
    cpu_percent: float
    memory_percent: float
    disk_usage_percent: float
    net_sent_bytes_per_s: float
    net_recv_bytes_per_s: float
    active_connections: int
    queue_depth: int
    process_rss_bytes: int

    @property
    def timestamp(self) -> datetime:
        return from_epoch_us(self.time_us)


Record = SecurityEvent | SpanRecord | MetricsSample
