"""The read side: filtered, newest-first queries and the store's statistics.

Each filter maps onto an index (``_schema``), so "the latest N matching" reads about N index
entries. Newest first means highest ID first: IDs follow commit order (``_ring``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Generator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, bindparam, func, literal_column, select

from ragtrail._records import Severity
from ragtrail.store._errors import UnreadableRowError
from ragtrail.store._reports import RingUsage, SpanLatency, StoreStats
from ragtrail.store._schema import EVENTS, HIGH_SEVERITY, METRICS, RING, RINGS, SPANS

__all__ = [
    "Query",
    "Since",
    "epoch_us",
    "events_query",
    "metrics_query",
    "read_stats",
    "run",
    "spans_query",
    "stream",
]

Since = datetime | int | None
"""An aware ``datetime`` or integer microseconds since the epoch."""

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
# The partial index's own condition, written as a literal: SQLite uses a partial index only
# when the query's WHERE contains the index's WHERE term itself (sqlite.org/partialindex.html).
_AT_LEAST_HIGH = EVENTS.c.severity >= literal_column(str(HIGH_SEVERITY))
# Rows a stream fetches at a time: memory stays flat whatever the ring's capacity.
_STREAM_BATCH = 1000


def epoch_us(value: Since, name: str) -> int | None:
    """``value`` as microseconds since the epoch; naive datetimes are refused (ambiguous)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime or epoch microseconds")
        return (value - _EPOCH) // _MICROSECOND
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"{name} must be a datetime or an int of epoch microseconds; "
                    f"got {type(value).__name__}")


# Every filter, as a condition on a bound parameter named like the keyword it comes from.
# A query is the conjunction of the filters given; its statement is built and compiled once
# per combination (``_statement``), so a call only binds values.
_FILTERS: dict[str, Any] = {
    "events.at_least_high": _AT_LEAST_HIGH,
    "events.min_severity": EVENTS.c.severity >= bindparam("min_severity"),
    "events.event_type": EVENTS.c.event_type == bindparam("event_type"),
    "events.source": EVENTS.c.source == bindparam("source"),
    "events.correlation_id": EVENTS.c.correlation_id == bindparam("correlation_id"),
    "events.since": EVENTS.c.time_us >= bindparam("since"),
    "events.until": EVENTS.c.time_us < bindparam("until"),
    "events.after_id": EVENTS.c.id > bindparam("after_id"),
    "spans.trace_id": SPANS.c.trace_id == bindparam("trace_id"),
    "spans.correlation_id": SPANS.c.correlation_id == bindparam("correlation_id"),
    "spans.name": SPANS.c.name == bindparam("name"),
    "spans.kind": SPANS.c.kind == bindparam("kind"),
    "spans.min_duration_ms": SPANS.c.duration_us >= bindparam("min_duration_ms"),
    "spans.errors_only": SPANS.c.status == literal_column("'error'"),
    "spans.since": SPANS.c.start_us >= bindparam("since"),
    "metrics.since": METRICS.c.time_us >= bindparam("since"),
}

Query = tuple[Select[Any], dict[str, Any]]


@functools.lru_cache(maxsize=256)
def _statement(ring: str, filters: tuple[str, ...], limited: bool) -> Select[Any]:
    table = RINGS[ring]
    query = select(table).where(*(_FILTERS[f"{ring}.{name}"] for name in filters))
    if limited:
        query = query.limit(bindparam("limit"))
    return query.order_by(table.c.id.desc())


def _query(ring: str, values: dict[str, Any], limit: int | None) -> Query:
    given = {name: value for name, value in values.items() if value is not None}
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be an integer >= 0 or None; got {limit!r}")
        given["limit"] = limit
    filters = tuple(name for name in values if name in given)
    return _statement(ring, filters, limit is not None), given


def events_query(*, min_severity: Severity | str | int | None = None,
                 event_type: str | None = None, source: str | None = None,
                 correlation_id: str | None = None, since: Since = None, until: Since = None,
                 after_id: int | None = None, limit: int | None) -> Query:
    level = None if min_severity is None else int(Severity.parse(min_severity))
    if after_id is not None and (isinstance(after_id, bool) or not isinstance(after_id, int)):
        raise TypeError(f"after_id must be an int (an event's id); got {after_id!r}")
    return _query("events", {
        "at_least_high": True if level is not None and level >= HIGH_SEVERITY else None,
        "min_severity": level if level not in (None, HIGH_SEVERITY, min(Severity)) else None,
        "event_type": event_type, "source": source, "correlation_id": correlation_id,
        "since": epoch_us(since, "since"), "until": epoch_us(until, "until"),
        "after_id": after_id,
    }, limit)


def spans_query(*, trace_id: str | None = None, correlation_id: str | None = None,
                name: str | None = None, kind: str | None = None,
                min_duration_ms: float | None = None, errors_only: bool = False,
                since: Since = None, limit: int | None) -> Query:
    return _query("spans", {
        "trace_id": trace_id, "correlation_id": correlation_id, "name": name, "kind": kind,
        "min_duration_ms": None if min_duration_ms is None
        else math.ceil(float(min_duration_ms) * 1000),
        "errors_only": True if errors_only else None, "since": epoch_us(since, "since"),
    }, limit)


def metrics_query(*, since: Since = None, limit: int | None) -> Query:
    return _query("metrics", {"since": epoch_us(since, "since")}, limit)


def run(conn: Connection, query: Query, convert: Callable[[Any], T]) -> list[T]:
    statement, params = query
    return [_converted(row, convert) for row in conn.execute(statement, params).all()]


def stream(read: Callable[[Callable[[Connection], Any]], Any], ring: str, query: Query,
           convert: Callable[[Any], T], newest_first: bool) -> Generator[T, None, None]:
    """The records of a newest-first ``query`` on ``ring``, oldest first (or newest first),
    ``_STREAM_BATCH`` rows at a time, each batch in a transaction of its own (``read`` runs
    one).

    No transaction stays open while the caller handles rows: a slow reader (``export | less``)
    would stop SQLite's checkpoints for the app writing meanwhile (its WAL file grows) and hold
    back PostgreSQL's vacuum of rings that delete rows all the time. The IDs to read are fixed
    first (for a limit, those of the newest rows, by an index walk), so rows committed later
    are not added; rows the ring trims meanwhile are skipped.
    """
    table = RINGS[ring]
    statement, params = query
    ids_query = statement.with_only_columns(table.c.id)
    if "limit" not in params:  # with one, the newest rows: order and limit stay
        ids_query = ids_query.order_by(None)
    ids = ids_query.subquery()
    first, last = read(lambda conn: conn.execute(
        select(func.min(ids.c.id), func.max(ids.c.id)), params).one())
    if first is None:
        return
    params = {name: value for name, value in params.items() if name != "limit"}
    order = table.c.id.desc() if newest_first else table.c.id
    paged = statement.order_by(None).order_by(order).limit(_STREAM_BATCH)
    low, high = first, last  # the IDs still to read, both included
    while True:
        batch = paged.where(table.c.id >= low, table.c.id <= high)
        rows = read(functools.partial(_all_rows, batch, params))
        for row in rows:
            yield _converted(row, convert)
        if len(rows) < _STREAM_BATCH:
            return
        if newest_first:
            high = rows[-1][0] - 1
        else:
            low = rows[-1][0] + 1


def _all_rows(statement: Select[Any], params: dict[str, Any], conn: Connection) -> list[Any]:
    return list(conn.execute(statement, params).all())


def _converted(row: Any, convert: Callable[[Any], T]) -> T:
    try:
        return convert(row)
    except (KeyError, TypeError, ValueError) as exc:  # another writer's, or corruption
        raise UnreadableRowError(
            f"stored row {row[0]} cannot be read ({type(exc).__name__}: {exc}); it was not "
            "written by this version of ragtrail, or the database is damaged") from None


def _percentile(ordered: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile of ascending durations, in milliseconds."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1] / 1000.0


def read_stats(conn: Connection, since: Since) -> StoreStats:
    """Counts and latencies over the rows in the ring (one snapshot: the caller's transaction).

    Counting is O(rows) (GROUP BY); stats are for people and the CLI, not for hot paths.
    """
    start = epoch_us(since, "since")
    e, s = EVENTS.c, SPANS.c
    grouped = select(e.severity, e.event_type, func.count(), func.sum(e.count)) \
        .group_by(e.severity, e.event_type)
    durations = select(s.name, s.duration_us).order_by(s.name, s.duration_us)
    metrics = select(func.count()).select_from(METRICS)
    if start is not None:
        grouped = grouped.where(e.time_us >= start)
        durations = durations.where(s.start_us >= start)
        metrics = metrics.where(METRICS.c.time_us >= start)
    by_severity = {str(level): 0 for level in Severity}
    by_type: dict[str, int] = {}
    seen_by_severity = dict(by_severity)
    seen_by_type: dict[str, int] = {}
    for level, event_type, n, total in conn.execute(grouped):
        name = str(Severity(level)) if level in Severity._value2member_map_ else str(level)
        by_severity[name] = by_severity.get(name, 0) + n
        by_type[event_type] = by_type.get(event_type, 0) + n
        seen_by_severity[name] = seen_by_severity.get(name, 0) + int(total or 0)
        seen_by_type[event_type] = seen_by_type.get(event_type, 0) + int(total or 0)
    per_name: dict[str, list[int]] = {}
    for name, duration in conn.execute(durations):
        per_name.setdefault(name, []).append(duration)
    latency = {name: SpanLatency(len(values), _percentile(values, 0.50),
                                 _percentile(values, 0.95), _percentile(values, 0.99))
               for name, values in per_name.items()}
    rings = conn.execute(select(RING.c.ring, RING.c.row_count, RING.c.capacity,
                                RING.c.written, RING.c.dropped, RING.c.coalesced)
                         .where(RING.c.bucket == 0)).all()
    return StoreStats(
        events=sum(by_type.values()), event_occurrences=sum(seen_by_type.values()),
        events_by_severity=by_severity,
        events_by_type=dict(sorted(by_type.items(), key=lambda item: (-item[1], item[0]))),
        occurrences_by_severity=seen_by_severity, occurrences_by_type=seen_by_type,
        spans=sum(len(values) for values in per_name.values()), span_latency=latency,
        metrics=int(conn.execute(metrics).scalar() or 0),
        written=sum(r.written for r in rings), dropped=sum(r.dropped for r in rings),
        coalesced=sum(r.coalesced for r in rings),
        ring_usage={r.ring: RingUsage(r.row_count, r.capacity)
                    for r in sorted(rings, key=lambda r: list(RINGS).index(r.ring))},
    )
