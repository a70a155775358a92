"""Helpers for the instrumentation tests: reading back what a monitor stored, drawing IDs in
a forked child."""

from __future__ import annotations

from collections.abc import Callable

from forking import output_of_forked_child

from ragtrail import SecurityEvent, SpanRecord
from ragtrail.instrument import Monitor

__all__ = ["drawn_in_forked_child", "only_span", "stored_events", "stored_spans"]


def drawn_in_forked_child(draw: Callable[[], str], count: int = 5) -> list[str]:
    """``count`` values ``draw()`` returns in a child forked now (as a gunicorn worker after
    ``--preload`` is), for comparing with what the parent draws next."""
    return output_of_forked_child(lambda: " ".join(draw() for _ in range(count))).split()


def stored_spans(monitor: Monitor) -> list[SpanRecord]:
    """Every span row of the monitor's store, oldest first (after flushing the writer)."""
    assert monitor.store.flush(timeout=10)
    return sorted(monitor.store.spans(limit=10_000), key=lambda s: (s.start_us, s.span_id))


def stored_events(monitor: Monitor) -> list[SecurityEvent]:
    """Every security event row, oldest first (after flushing the writer)."""
    assert monitor.store.flush(timeout=10)
    return sorted(monitor.store.events(limit=10_000), key=lambda e: e.time_us)


def only_span(monitor: Monitor, name: str) -> SpanRecord:
    """The one stored span called ``name`` (fails if there are none or several)."""
    matching = [span for span in stored_spans(monitor) if span.name == name]
    assert len(matching) == 1, f"expected one span {name!r}, got {matching}"
    return matching[0]
