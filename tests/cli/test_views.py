"""Cell formats: UTC times to the millisecond, byte sizes, counts, record rows."""

from __future__ import annotations

import pytest

from ragtrail._records import MetricsSample, SecurityEvent, Severity, SpanRecord
from ragtrail.cli._views import EVENTS, METRICS, SPANS, counted, format_bytes, format_time

T = 1_714_564_800_123_456  # 2024-05-01T12:00:00.123456Z


def test_times_are_utc_iso_to_the_millisecond() -> None:
    """Table times look like 2024-05-01T12:00:00.123Z whatever the local zone."""
    assert format_time(T) == "2024-05-01T12:00:00.123Z"
    assert format_time(T, "microseconds") == "2024-05-01T12:00:00.123456Z"
    assert format_time(0) == "1970-01-01T00:00:00.000Z"


def test_byte_sizes_use_binary_units() -> None:
    """Sizes read as B, KiB, MiB, GiB."""
    assert [format_bytes(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3.0 GiB"]


@pytest.mark.parametrize(("count", "expected"), [
    (0, "0 files"), (1, "1 file"), (2, "2 files"), (-1, "-1 files"), (1000, "1000 files")])
def test_counts_are_singular_for_exactly_one(count: int, expected: str) -> None:
    """The noun is plural for every count but 1."""
    assert counted(count, "file") == expected


def test_counts_take_an_irregular_plural() -> None:
    assert (counted(1, "entry", "entries"), counted(3, "entry", "entries")) == (
        "1 entry", "3 entries")


def test_event_row() -> None:
    """An event row shows id, time, severity name, type, source, count, correlation, text."""
    event = SecurityEvent("prompt_injection", Severity.HIGH, "retriever", "ignore previous", T,
                          correlation_id=None, count=3, id=42)
    assert EVENTS.cells(event) == ["42", "2024-05-01T12:00:00.123Z", "high", "prompt_injection",
                                   "retriever", "3", "-", "ignore previous"]
    assert len(EVENTS.cells(event)) == len(EVENTS.columns)


def test_span_row_joins_error_type_and_message() -> None:
    """A failed span shows 'Type: message'; durations are milliseconds to the microsecond."""
    span = SpanRecord("a" * 32, "b" * 16, "search", "retriever", T, 12_345, status="error",
                      error_type="TimeoutError", error_message="upstream", correlation_id="r1")
    assert SPANS.cells(span) == ["2024-05-01T12:00:00.123Z", "12.345", "error", "retriever",
                                 "search", "a" * 32, "r1", "TimeoutError: upstream"]
    assert len(SPANS.cells(span)) == len(SPANS.columns)


def test_metrics_row() -> None:
    """A metrics row shows percentages to one decimal and sizes in binary units."""
    sample = MetricsSample(T, 12.34, 50.0, 71.25, 2048.0, 0.0, 7, 3, 64 * 1024**2)
    assert METRICS.cells(sample) == ["2024-05-01T12:00:00.123Z", "12.3", "50.0", "71.2",
                                     "2.0 KiB/s", "0 B/s", "7", "3", "64.0 MiB"]
    assert len(METRICS.cells(sample)) == len(METRICS.columns)
