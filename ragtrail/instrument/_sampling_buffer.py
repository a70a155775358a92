"""Keeping unsampled traces that turn out to matter: an error or a high/critical event.

Head sampling decides when a trace starts, before anyone knows whether it will fail. So the
export thread holds the spans of unsampled traces for a while (bounded by count and age); if a
span of the trace ends with an error, or a high/critical security event names the trace, the
held spans are exported and so is every later span of that trace. Spans that left the buffer
before that (too old, or pushed out by newer ones) are lost, and counted.

Used by the export thread only, so it takes no locks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ragtrail._records import SecurityEvent, Severity, SpanRecord
from ragtrail.instrument._attributes import EVENT_SEVERITY

__all__ = ["TraceRescue"]

_SEVERE = frozenset({str(Severity.HIGH), str(Severity.CRITICAL)})


@dataclass
class _Held:
    since: float
    spans: list[SpanRecord] = field(default_factory=list)


class TraceRescue:
    """Routes each finished span: export it now, hold it, or (later) discard it.

    ``max_spans`` bounds the held spans of all traces together; ``max_age`` (seconds) bounds how
    long a trace's spans are held after its first one arrived, and how long a trace stays
    "kept" after its error or event; ``max_traces`` bounds the kept traces remembered.
    """

    def __init__(
        self,
        *,
        max_spans: int = 10_000,
        max_age: float = 60.0,
        max_traces: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_spans < 1 or max_traces < 1 or max_age <= 0:
            raise ValueError("max_spans and max_traces must be >= 1 and max_age > 0")
        self._max_spans = max_spans
        self._max_age = max_age
        self._max_traces = max_traces
        self._clock = clock
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._held_count = 0
        self._kept: OrderedDict[str, float] = OrderedDict()
        self.discarded = 0
        """Unsampled spans that left the buffer without their trace being kept."""
        self.rescued = 0
        """Unsampled spans exported because their trace was kept."""

    @property
    def held(self) -> int:
        return self._held_count

    def route(self, record: SpanRecord, sampled: bool) -> list[SpanRecord]:
        """The spans to export now because ``record`` finished (possibly none)."""
        trace_id = record.trace_id
        if trace_id in self._kept:
            if not sampled:
                self.rescued += 1
            return [record]
        if sampled:
            return [record]
        if record.status == "error" or _has_severe_event(record):
            self.rescued += 1
            return [*self._keep(trace_id), record]
        self._hold(record)
        return []

    def on_event(self, event: SecurityEvent) -> list[SpanRecord]:
        """The held spans to export because a high or critical event names their trace."""
        if event.severity < Severity.HIGH or not event.trace_id:
            return []
        return self._keep(event.trace_id)

    def expire(self) -> None:
        """Forget held spans and kept traces older than ``max_age``."""
        horizon = self._clock() - self._max_age
        while self._held and next(iter(self._held.values())).since < horizon:
            self._drop_oldest_trace()
        while self._kept and next(iter(self._kept.values())) < horizon:
            self._kept.popitem(last=False)

    def clear(self) -> None:
        """Discard everything held (at shutdown: an unsampled trace that never failed)."""
        self.discarded += self._held_count
        self._held.clear()
        self._held_count = 0

    def _keep(self, trace_id: str) -> list[SpanRecord]:
        self._kept[trace_id] = self._clock()
        self._kept.move_to_end(trace_id)
        if len(self._kept) > self._max_traces:
            self._kept.popitem(last=False)
        held = self._held.pop(trace_id, None)
        if held is None:
            return []
        self._held_count -= len(held.spans)
        self.rescued += len(held.spans)
        return held.spans

    def _hold(self, record: SpanRecord) -> None:
        held = self._held.get(record.trace_id)
        if held is None:
            held = self._held[record.trace_id] = _Held(self._clock())
        held.spans.append(record)
        self._held_count += 1
        while self._held_count > self._max_spans:
            self._drop_oldest_span()

    def _drop_oldest_trace(self) -> None:
        _, held = self._held.popitem(last=False)
        self._held_count -= len(held.spans)
        self.discarded += len(held.spans)

    def _drop_oldest_span(self) -> None:
        trace_id, held = next(iter(self._held.items()))
        held.spans.pop(0)
        self._held_count -= 1
        self.discarded += 1
        if not held.spans:
            del self._held[trace_id]


def _has_severe_event(record: SpanRecord) -> bool:
    return any(event.attributes.get(EVENT_SEVERITY) in _SEVERE for event in record.events)
