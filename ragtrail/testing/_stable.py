"""Records read back from a ``capture()`` with IDs and times that are the same on every run.

A snapshot test of an app compares what ragtrail recorded with a file written on an earlier
run; random IDs and the wall clock make that impossible. The rewriting happens here, as a
``Trail`` reads, and never while the app runs: the code under test draws its IDs and reads
its clock exactly as in production (a capture must show what production does), and
production code carries no test hook on its hot path.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from ragtrail._records import SecurityEvent, SpanEvent, SpanRecord
from ragtrail.instrument._call_plan import TIME_TO_FIRST_ITEM

__all__ = ["FIXED_TIME_US", "IdsMode", "StableRecords", "TimesMode"]

IdsMode = Literal["random", "sequential"]
TimesMode = Literal["real", "fixed"]

FIXED_TIME_US = 946_684_800_000_000
"""2000-01-01T00:00:00Z in microseconds since the epoch: every time under ``times="fixed"``."""

_ID_FILTERS = ("trace_id", "correlation_id")
# W3C Trace Context: a trace ID is 32 lowercase hex digits, a span ID 16. Correlation IDs read
# as trace IDs do (a request's is its trace's).
_TRACE_DIGITS = 32
_SPAN_DIGITS = 16


class StableRecords:
    """Numbers IDs 1, 2, 3... in the order they are first read, and pins every time.

    One numbering for every ID (trace, span, correlation): a request's correlation ID, which
    is its trace's ID, keeps reading as that trace's ID. The numbers are written as the W3C
    form of the ID (32 or 16 lowercase hex digits, never all zero), so a stable record is
    still a valid one.
    """

    def __init__(self, ids: IdsMode, times: TimesMode) -> None:
        if ids not in ("random", "sequential"):
            raise ValueError(f"ids must be 'random' or 'sequential'; got {ids!r}")
        if times not in ("real", "fixed"):
            raise ValueError(f"times must be 'real' or 'fixed'; got {times!r}")
        self._sequential = ids == "sequential"
        self._fixed = times == "fixed"
        self._numbers: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """False when records are read back as stored (the default)."""
        return self._sequential or self._fixed

    def learn(self, spans: Iterable[SpanRecord], events: Iterable[SecurityEvent]) -> None:
        """Number the IDs not seen before, in the order given (the order they were stored)."""
        if not self._sequential:
            return
        with self._lock:
            for span in spans:
                self._number(span.trace_id, span.span_id, span.parent_span_id,
                             span.correlation_id)
            for event in events:
                self._number(event.trace_id, event.span_id, event.correlation_id)

    def _number(self, *ids: str | None) -> None:
        numbers = self._numbers
        for real in ids:
            if real is not None and real not in numbers:
                numbers[real] = len(numbers) + 1

    def filters(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """``filters`` with the stable IDs a test passes turned back into the stored ones."""
        if not self._sequential:
            return dict(filters)
        # The filters take 32-digit IDs; each number is one ID's, so the reverse is unique.
        with self._lock:  # a read in another thread may be numbering
            stored = {self._stable(real): real for real in self._numbers}
        return {name: stored.get(value, value) if name in _ID_FILTERS else value
                for name, value in filters.items()}

    def span(self, span: SpanRecord) -> SpanRecord:
        changes: dict[str, Any] = {}
        if self._sequential:
            changes.update(trace_id=self._stable(span.trace_id),
                           span_id=self._stable(span.span_id, _SPAN_DIGITS),
                           parent_span_id=self._optional(span.parent_span_id, _SPAN_DIGITS),
                           correlation_id=self._optional(span.correlation_id))
        if self._fixed:
            changes.update(start_us=FIXED_TIME_US, duration_us=0, events=tuple(
                SpanEvent(event.name, FIXED_TIME_US, event.attributes) for event in span.events))
            if TIME_TO_FIRST_ITEM in span.attributes:
                changes["attributes"] = {**span.attributes, TIME_TO_FIRST_ITEM: 0.0}
        return dataclasses.replace(span, **changes)

    def event(self, event: SecurityEvent) -> SecurityEvent:
        changes: dict[str, Any] = {}
        if self._sequential:
            changes.update(trace_id=self._optional(event.trace_id),
                           span_id=self._optional(event.span_id, _SPAN_DIGITS),
                           correlation_id=self._optional(event.correlation_id))
        if self._fixed:
            changes["time_us"] = FIXED_TIME_US
        return dataclasses.replace(event, **changes)

    def _stable(self, real: str, digits: int = _TRACE_DIGITS) -> str:
        return f"{self._numbers[real]:0{digits}x}"

    def _optional(self, real: str | None, digits: int = _TRACE_DIGITS) -> str | None:
        return None if real is None else self._stable(real, digits)
