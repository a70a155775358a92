"""Records for store tests: distinct by default, so nothing coalesces by accident."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, text

from ragtrail._records import MetricsSample, SecurityEvent, Severity, SpanRecord

_serial = itertools.count()


def now_us() -> int:
    return time.time_ns() // 1000


def make_event(event_type: str | None = None, severity: Severity = Severity.LOW,
               source: str | None = None, **fields: Any) -> SecurityEvent:
    """A distinct event (unique type and source unless given), so it never coalesces by
    accident, nor counts against one source's cap on distinct types."""
    fields.setdefault("time_us", now_us())
    serial = next(_serial)
    return SecurityEvent(event_type=event_type or f"type-{serial}", severity=severity,
                         source=source or f"tests-{serial}",
                         description=fields.pop("description", "a test event"),
                         **fields)


def make_span(name: str = "op", **fields: Any) -> SpanRecord:
    n = next(_serial)
    fields.setdefault("trace_id", f"{n:032x}")
    fields.setdefault("span_id", f"{n:016x}")
    fields.setdefault("kind", "internal")
    fields.setdefault("start_us", now_us())
    fields.setdefault("duration_us", 1000)
    return SpanRecord(name=name, **fields)


def make_sample(**fields: Any) -> MetricsSample:
    values: dict[str, Any] = {
        "time_us": now_us(), "cpu_percent": 1.5, "memory_percent": 2.5,
        "disk_usage_percent": 3.5, "net_sent_bytes_per_s": 4.5, "net_recv_bytes_per_s": 5.5,
        "active_connections": 6, "queue_depth": 7, "process_rss_bytes": 8}
    values.update(fields)
    return MetricsSample(**values)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def run_sql(url: str, *statements: str) -> None:
    """Run ``statements`` in one transaction of a connection of their own."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def stored_marks(url: str) -> tuple[int, int | None]:
    """The store's schema version and the oldest version that may use it."""
    engine = create_engine(url)
    with engine.connect() as conn:
        version, floor = conn.execute(
            text("SELECT version, compatible_from FROM ragtrail_schema")).one()
    engine.dispose()
    return int(version), floor
