"""Reading: every filter, newest-first order, round trips of every field, and stats()."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from store_helpers import make_event, make_sample, make_span

from ragtrail._records import SecurityEvent, Severity, SpanEvent, SpanRecord
from ragtrail.store import AuditStore, RingUsage, SpanLatency
from ragtrail.store import _queries as queries

T0 = 1_700_000_000_000_000  # a fixed time (2023-11-14T22:13:20Z) in epoch microseconds
S = 1_000_000


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def events_store(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditStore]:
    """Five known events on each backend, shared by this module's tests that only query
    them (none records anything); the module's end checks that they are still the same."""
    cluster = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('events') / 'audit.db'}"
    else:
        cluster = request.getfixturevalue("_postgres_cluster")
        database = cluster.create_database()
        url = cluster.url_for(database)
    store = AuditStore(url)
    try:
        specs = [  # (type, severity, source, correlation_id, seconds after T0)
            ("login_failed", Severity.LOW, "auth", "c1", 0),
            ("login_failed", Severity.MEDIUM, "auth", "c2", 10),
            ("injection", Severity.HIGH, "api", "c1", 20),
            ("bad_upload", Severity.CRITICAL, "upload", "c3", 30),
            ("injection", Severity.LOW, "api", None, 40),
        ]
        for event_type, severity, source, correlation_id, offset in specs:
            store.record(make_event(event_type, severity, source,
                                    correlation_id=correlation_id, time_us=T0 + offset * S))
        assert store.flush(10)
        seeded = store.events(limit=None)
        yield store
        assert store.events(limit=None) == seeded, "a test changed the shared events"
    finally:
        store.close(timeout=10)
        if cluster is not None:
            cluster.drop_database(database)


def times(events: list[SecurityEvent]) -> list[int]:
    return [(e.time_us - T0) // S for e in events]


def test_events_come_newest_first(events_store: AuditStore) -> None:
    """Without filters, every event comes back, the latest recorded first."""
    assert times(events_store.events()) == [40, 30, 20, 10, 0]


@pytest.mark.parametrize(("min_severity", "expected"), [
    ("low", [40, 30, 20, 10, 0]), ("MEDIUM", [30, 20, 10]), (Severity.HIGH, [30, 20]),
    (40, [30]), ("critical", [30]),
])
def test_min_severity_keeps_that_level_and_above(
        events_store: AuditStore, min_severity: Severity | str | int, expected: list[int]) -> None:
    """min_severity takes anything Severity.parse takes and keeps events at or above it."""
    assert times(events_store.events(min_severity=min_severity)) == expected


def test_bad_min_severity_names_the_choices(events_store: AuditStore) -> None:
    """An unknown severity is a ValueError listing the valid ones."""
    with pytest.raises(ValueError, match="low, medium, high, critical"):
        events_store.events(min_severity="urgent")


@pytest.mark.parametrize(("filters", "expected"), [
    ({"event_type": "injection"}, [40, 20]),
    ({"source": "auth"}, [10, 0]),
    ({"correlation_id": "c1"}, [20, 0]),
    ({"event_type": "injection", "min_severity": "high"}, [20]),
    ({"since": T0 + 20 * S}, [40, 30, 20]),
    ({"until": T0 + 20 * S}, [10, 0]),
    ({"since": T0 + 10 * S, "until": T0 + 31 * S}, [30, 20, 10]),
    ({"limit": 2}, [40, 30]),
    ({"limit": 0}, []),
    ({"event_type": "nothing-like-this"}, []),
])
def test_event_filters(events_store: AuditStore, filters: dict[str, object],
                       expected: list[int]) -> None:
    """Each filter (and combinations) narrows the events; since is inclusive, until exclusive."""
    assert times(events_store.events(**filters)) == expected  # type: ignore[arg-type]


def test_after_id_returns_only_newer_events(events_store: AuditStore) -> None:
    """after_id keeps events with a greater ID (newest first, with the other filters and the
    limit), so a follower asks again with the highest ID it has seen."""
    ids = [e.id for e in events_store.events()]
    third = ids[2]
    assert third is not None
    assert [e.id for e in events_store.events(after_id=third)] == ids[:2]
    assert times(events_store.events(after_id=ids[-1], min_severity="high")) == [30, 20]
    assert [e.id for e in events_store.events(after_id=ids[-1], limit=1)] == ids[:1]
    assert events_store.events(after_id=ids[0]) == []
    with pytest.raises(TypeError, match="after_id"):
        events_store.events(after_id="3")  # type: ignore[arg-type]


def test_since_accepts_aware_datetimes(events_store: AuditStore) -> None:
    """since/until accept aware datetimes in any zone, equal to their epoch microseconds."""
    plus_two = timezone(timedelta(hours=2))
    since = datetime.fromtimestamp((T0 + 20 * S) / S, tz=plus_two)
    until = datetime.fromtimestamp((T0 + 40 * S) / S, tz=timezone.utc)
    assert times(events_store.events(since=since, until=until)) == [30, 20]


@pytest.mark.parametrize("filters", [{}, {"source": "api"}, {"min_severity": "medium"},
                                     {"since": T0 + 10 * S}])
@pytest.mark.parametrize("limit", [None, 1, 2, 100])
def test_stream_is_the_query_oldest_first(events_store: AuditStore, filters: dict[str, Any],
                                          limit: int | None) -> None:
    """``stream()`` yields what the query method returns (the newest ``limit``), oldest
    first."""
    expected = events_store.events(**filters, limit=limit)[::-1]
    assert list(events_store.stream("events", **filters, limit=limit)) == expected


@pytest.mark.parametrize("batch", [1, 2, 1000])
@pytest.mark.parametrize("limit", [None, 3])
def test_stream_newest_first_is_the_query_in_its_order(
        events_store: AuditStore, monkeypatch: pytest.MonkeyPatch, batch: int,
        limit: int | None) -> None:
    """``newest_first=True`` yields exactly what the query method returns, in its order,
    across batches of any size."""
    monkeypatch.setattr(queries, "_STREAM_BATCH", batch)
    expected = events_store.events(limit=limit)
    assert list(events_store.stream("events", limit=limit, newest_first=True)) == expected


def test_stream_closed_early_ends_its_transaction(events_store: AuditStore) -> None:
    """A stream dropped after one record (``export | head -1``) gives its connection back."""
    stream = events_store.stream("events")
    assert next(stream).id == 1
    stream.close()
    assert events_store.engine.pool.checkedout() == 0
    with pytest.raises(ValueError, match="ring must be one of events, spans, metrics"):
        next(events_store.stream("logs"))


def test_naive_datetime_is_refused(events_store: AuditStore) -> None:
    """A naive datetime is ambiguous, so it is a ValueError rather than a silent guess."""
    with pytest.raises(ValueError, match="timezone-aware"):
        events_store.events(since=datetime(2024, 1, 1))


@pytest.mark.parametrize("limit", [-1, 1.5, True])
def test_bad_limit_is_refused(events_store: AuditStore, limit: object) -> None:
    """A limit must be an integer >= 0 (or None for all)."""
    with pytest.raises(ValueError, match="limit"):
        events_store.events(limit=limit)  # type: ignore[arg-type]


def test_event_fields_round_trip(backend_store: Callable[..., AuditStore]) -> None:
    """Every field of an event comes back as recorded, with its ID; host and pid get filled."""
    store = backend_store()
    event = SecurityEvent(
        event_type="prompt_injection", severity=Severity.HIGH, source="api/chat",
        description="ignore previous instructions \u2603", time_us=T0, correlation_id="req-1",
        trace_id="a" * 32, span_id="b" * 16,
        metadata={"nested": {"list": [1, 2.5, None, "x"]}, "unicode": "\u00e9"},
        service="rag-api", host="", pid=0)
    store.record(event)
    assert store.flush(10)
    (back,) = store.events()
    assert back.id is not None
    assert back.host
    assert back.pid > 0
    assert replace(back, id=None, host="", pid=0) == event


def test_span_fields_and_filters(backend_store: Callable[..., AuditStore]) -> None:
    """Spans round-trip (events included) and each span filter narrows the result."""
    store = backend_store()
    failed = SpanRecord(
        trace_id="1" * 32, span_id="2" * 16, name="retrieve", kind="retriever",
        start_us=T0 + 5 * S, duration_us=250_000, parent_span_id="3" * 16, status="error",
        error_type="TimeoutError", error_message="index timed out", correlation_id="c9",
        attributes={"k": 3, "docs": ["a", "b"]},
        events=(SpanEvent("exception", T0 + 6 * S, {"exception.type": "TimeoutError"}),))
    store.record(make_span("generate", kind="llm", start_us=T0, duration_us=900_000,
                           correlation_id="c9"))
    store.record(failed)
    store.record(make_span("retrieve", kind="retriever", start_us=T0 + 9 * S,
                           duration_us=1_000))
    assert store.flush(10)
    assert store.spans(trace_id="1" * 32) == [failed]
    assert [s.name for s in store.spans()] == ["retrieve", "retrieve", "generate"]
    assert [s.duration_us for s in store.spans(name="retrieve")] == [1_000, 250_000]
    assert [s.name for s in store.spans(kind="llm")] == ["generate"]
    assert [s.name for s in store.spans(correlation_id="c9")] == ["retrieve", "generate"]
    assert [s.duration_us for s in store.spans(min_duration_ms=250)] == [250_000, 900_000]
    assert store.spans(errors_only=True) == [failed]
    assert [s.duration_us for s in store.spans(since=T0 + 5 * S)] == [1_000, 250_000]
    assert len(store.spans(limit=1)) == 1


def test_metrics_round_trip_newest_first(backend_store: Callable[..., AuditStore]) -> None:
    """Metrics samples come back whole, newest first, narrowed by since and limit."""
    store = backend_store()
    samples = [make_sample(time_us=T0 + i * S, cpu_percent=float(i)) for i in range(4)]
    for sample in samples:
        store.record(sample)
    assert store.flush(10)
    assert store.metrics() == samples[::-1]
    assert store.metrics(since=T0 + 2 * S) == samples[:1:-1]
    assert store.metrics(limit=1) == samples[-1:]


def test_stats_counts_latencies_and_rings(backend_store: Callable[..., AuditStore]) -> None:
    """stats() counts events (rows and occurrences) by severity and type, span latency
    percentiles by name, usage."""
    store = backend_store(events_capacity=50, spans_capacity=500, metrics_capacity=5)
    for i in range(3):
        store.record(make_event("scan", Severity.HIGH, source=f"s{i}", time_us=T0))
    for _ in range(3):  # one client's burst: coalesced into one row of three occurrences
        store.record(make_event("login_failed", Severity.LOW, source="10.0.0.9",
                                time_us=T0 + 100 * S))
    for ms in range(1, 101):
        store.record(make_span("rerank", start_us=T0, duration_us=ms * 1000))
    store.record(make_span("embed", start_us=T0 + 100 * S, duration_us=7_000))
    store.record(make_sample())
    assert store.flush(10)
    stats = store.stats()
    assert stats.events_by_severity == {"low": 1, "medium": 0, "high": 3, "critical": 0}
    assert stats.events_by_type == {"scan": 3, "login_failed": 1}
    assert stats.occurrences_by_severity == {"low": 3, "medium": 0, "high": 3, "critical": 0}
    assert stats.occurrences_by_type == {"scan": 3, "login_failed": 3}
    assert (stats.events, stats.event_occurrences, stats.spans, stats.metrics) == (4, 6, 101, 1)
    assert stats.span_latency["rerank"] == SpanLatency(100, 50.0, 95.0, 99.0)
    assert stats.span_latency["embed"] == SpanLatency(1, 7.0, 7.0, 7.0)
    assert stats.ring_usage == {"events": RingUsage(4, 50), "spans": RingUsage(101, 500),
                                "metrics": RingUsage(1, 5)}
    assert (stats.written, stats.dropped) == (106, 0)
    recent = store.stats(since=T0 + 50 * S)
    assert (recent.events, recent.spans, list(recent.span_latency)) == (1, 1, ["embed"])


def test_queries_on_an_empty_store(backend_store: Callable[..., AuditStore]) -> None:
    """A new store answers every query with nothing, and stats with zeros."""
    store = backend_store()
    assert (store.events(), store.spans(), store.metrics()) == ([], [], [])
    stats = store.stats()
    assert (stats.events, stats.spans, stats.metrics, stats.span_latency) == (0, 0, 0, {})


@pytest.mark.parametrize("level", ["high", "critical"])
def test_high_severity_queries_use_the_partial_index(
        store_factory: Callable[..., AuditStore], tmp_path: Path, level: str) -> None:
    """SQLite plans "latest events at or above high/critical" on the partial index, so the
    answer costs the same however many low events the table holds."""
    store = store_factory(f"sqlite:///{tmp_path / 'plan.db'}")
    executed: list[tuple[str, Any]] = []
    sqlalchemy.event.listen(store.engine, "before_cursor_execute",
                            lambda _c, _cur, sql, params, _ctx, _many:
                            executed.append((sql, params)))
    store.events(min_severity=level, limit=100)
    (sql, params), = [(s, p) for s, p in executed if "ragtrail_events" in s]
    with sqlite3.connect(tmp_path / "plan.db") as conn:
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    conn.close()
    assert "USING INDEX ix_ragtrail_events_high_id" in plan
