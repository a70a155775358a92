"""The filter flags, declared once and named after the store query keyword each one feeds."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ragtrail.cli._args import (
    CommandError,
    milliseconds,
    parse_severity,
    parse_trace_id,
    parse_when,
    positive_int,
)

__all__ = [
    "EVENT_FILTERS",
    "METRICS_FILTERS",
    "SPAN_FILTERS",
    "Filter",
    "add_filters",
    "add_limit",
    "check_applies",
    "query_kwargs",
]

DEFAULT_LIMIT = 50


@dataclass(frozen=True, slots=True)
class Filter:
    """A flag whose value goes to the store query keyword ``keyword`` unchanged."""

    flag: str
    keyword: str
    help: str
    parse: Callable[[str], Any] = str
    metavar: str | None = None
    switch: bool = False  # an on/off flag taking no value


SINCE = Filter("--since", "since", "only records at or after WHEN: a duration ago (30s, 15m, "
               "2h, 7d) or an ISO-8601 time (UTC unless it has an offset)", parse_when, "WHEN")
UNTIL = Filter("--until", "until", "only records before WHEN (same forms as --since)",
               parse_when, "WHEN")
MIN_SEVERITY = Filter("--min-severity", "min_severity",
                      "only events at least this severe: low, medium, high, critical",
                      parse_severity, "LEVEL")
EVENT_TYPE = Filter("--type", "event_type", "only events of this type", metavar="TYPE")
SOURCE = Filter("--source", "source", "only events from this source", metavar="SOURCE")
CORRELATION_ID = Filter("--correlation-id", "correlation_id",
                        "only records with this correlation ID", metavar="ID")
TRACE_ID = Filter("--trace-id", "trace_id",
                  "only spans of this trace: 32 hex digits, or a whole traceparent value",
                  parse_trace_id, "ID")
NAME = Filter("--name", "name", "only spans with this name", metavar="NAME")
SPAN_KIND = Filter("--kind", "kind", "only spans of this kind (server, client, retriever, ...)",
                   metavar="KIND")
MIN_DURATION = Filter("--min-duration-ms", "min_duration_ms",
                      "only spans that took at least this many milliseconds",
                      milliseconds, "MS")
ERRORS_ONLY = Filter("--errors-only", "errors_only", "only spans that ended in an error",
                     switch=True)

EVENT_FILTERS = (SINCE, UNTIL, MIN_SEVERITY, EVENT_TYPE, SOURCE, CORRELATION_ID)
SPAN_FILTERS = (SINCE, TRACE_ID, CORRELATION_ID, NAME, SPAN_KIND, MIN_DURATION, ERRORS_ONLY)
METRICS_FILTERS = (SINCE,)


def add_filters(
    parser: argparse.ArgumentParser,
    filters: Sequence[Filter],
    *,
    flags: Mapping[str, str] | None = None,
) -> None:
    """Add the flags; ``flags`` renames some (``export`` has its own ``--kind``)."""
    group = parser.add_argument_group("filters")
    for item in filters:
        flag = (flags or {}).get(item.keyword, item.flag)
        if item.switch:
            group.add_argument(flag, dest=item.keyword, action="store_true", help=item.help)
        else:
            group.add_argument(flag, dest=item.keyword, type=item.parse, metavar=item.metavar,
                               default=None, help=item.help)


def add_limit(parser: argparse.ArgumentParser, default: int | None = DEFAULT_LIMIT,
              help: str = "at most N records, newest first") -> None:
    """``--limit N``; a default of None means every row (the ring bounds how many)."""
    parser.add_argument("--limit", type=positive_int, default=default, metavar="N",
                        help=f"{help} (default: {'all' if default is None else default})")


def query_kwargs(args: argparse.Namespace, filters: Sequence[Filter]) -> dict[str, Any]:
    """The store query keywords for ``filters`` from parsed arguments."""
    kwargs = {item.keyword: getattr(args, item.keyword) for item in filters}
    since, until = kwargs.get("since"), kwargs.get("until")
    if since is not None and until is not None and since >= until:
        raise CommandError(f"--since {_utc(since)} is not before --until {_utc(until)}: "
                           "no record could match")
    return kwargs


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_applies(
    args: argparse.Namespace,
    given: Sequence[Filter],
    allowed: Sequence[Filter],
    what: str,
    *,
    flags: Mapping[str, str] | None = None,
) -> None:
    """Refuse a filter that was set but means nothing for ``what``, rather than ignore it."""
    for item in given:
        if item not in allowed and getattr(args, item.keyword) not in (None, False):
            flag = (flags or {}).get(item.keyword, item.flag)
            raise CommandError(f"{flag} does not apply to {what}")
