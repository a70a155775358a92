"""``ragtrail stats``: what the store holds, how full its rings are, what was lost."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from ragtrail._records import Severity
from ragtrail.cli._db import add_db_argument, open_store
from ragtrail.cli._filters import SINCE, add_filters, query_kwargs
from ragtrail.cli._serialize import write_json
from ragtrail.cli._table import COUNT, Column, titled_table
from ragtrail.cli._views import counted, format_datetime

if TYPE_CHECKING:
    from ragtrail.cli._args import Subparsers
    from ragtrail.store import StoreStats

__all__ = ["add_parser", "render_stats"]

_ROWS, _OCCURRENCES = Column("ROWS", right=True), Column("OCCURRENCES", right=True)


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "stats", help="counts by severity and type, span latency, ring usage, drops",
        description="Summarise the store: event counts by severity and type, span latency "
                    "percentiles by name, ring usage and records lost to drops.")
    add_db_argument(parser)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of tables")
    add_filters(parser, (SINCE,))
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        stats = store.stats(**query_kwargs(args, (SINCE,)))
    if args.json:
        write_json(dataclasses.asdict(stats), sys.stdout)
    else:
        for line in render_stats(stats, since=args.since):
            print(line)
    return 0


def _by_count(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Largest first, then by name, so the output is stable."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def render_stats(stats: StoreStats, *, since: datetime | None = None) -> Iterator[str]:
    """The summary as lines: totals, then one table per breakdown (empty ones left out)."""
    yield (f"Lifetime, all writers: written {stats.written}, dropped {stats.dropped}, "
           f"coalesced {stats.coalesced}")
    yield from titled_table(
        "Ring usage",
        [Column("TABLE"), Column("ROWS", right=True), Column("CAPACITY", right=True),
         Column("USED", right=True)],
        [[name, str(usage.rows), str(usage.capacity), f"{usage.fraction:.1%}"]
         for name, usage in stats.ring_usage.items()])
    yield ""
    scope = "in the rings" if since is None else f"since {format_datetime(since)}"
    yield (f"Records {scope}: events {stats.events} "
           f"({counted(stats.event_occurrences, 'occurrence')}), "
           f"spans {stats.spans}, metrics {stats.metrics}")
    if stats.events:
        # Rows and occurrences: a burst of failed logins coalesces into one row.
        yield from titled_table(
            "Events by severity", [Column("SEVERITY"), _ROWS, _OCCURRENCES],
            [[str(level), str(stats.events_by_severity.get(str(level), 0)),
              str(stats.occurrences_by_severity.get(str(level), 0))]
             for level in sorted(Severity, reverse=True)])
        yield from titled_table(
            "Events by type", [Column("TYPE", max_width=60), _ROWS, _OCCURRENCES],
            [[name, str(count), str(stats.occurrences_by_type.get(name, 0))]
             for name, count in _by_count(stats.events_by_type)])
    if stats.span_latency:
        latency = sorted(stats.span_latency.items(), key=lambda item: (-item[1].count, item[0]))
        yield from titled_table(
            "Span latency (ms)",
            [Column("NAME", max_width=60), COUNT, Column("P50", right=True),
             Column("P95", right=True), Column("P99", right=True)],
            [[name, str(s.count), f"{s.p50_ms:.3f}", f"{s.p95_ms:.3f}", f"{s.p99_ms:.3f}"]
             for name, s in latency])
