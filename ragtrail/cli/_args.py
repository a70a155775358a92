"""Argument parsing shared by every subcommand: the parser class, value types, the error type.

Bad input must end as one line on stderr and exit status 2 (issue 2), so the parser raises
:class:`CommandError` instead of printing usage and exiting, and ``main`` reports it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, NoReturn, TypeAlias

from ragtrail._records import Severity, parse_utc_iso

if TYPE_CHECKING:
    # What each command module's ``add_parser(subparsers)`` receives.
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = [
    "CommandError",
    "CommandParser",
    "interval_seconds",
    "milliseconds",
    "non_negative_int",
    "parse_severity",
    "parse_trace_id",
    "parse_when",
    "positive_int",
]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A W3C traceparent: version, trace ID, parent span ID, flags.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
# The largest integer a SQLite INTEGER or a PostgreSQL BIGINT holds: a larger --limit or
# --min-duration-ms failed inside the query (SQLite: a traceback, an OverflowError).
_MAX_INT = 2**63 - 1
_MAX_INTERVAL_S = 86_400.0  # time.sleep() overflows near 1e10 s; a day is plenty


class CommandError(Exception):
    """Bad input or an unusable store; ``main`` prints it as one line and exits with status 2."""


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line naming the command, never usage dumps."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{message} (see '{self.prog} --help')")

    def parse_known_args(  # type: ignore[override]  # typeshed overloads on namespace
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        # Refused here rather than by the top-level parse_args, so that the message points
        # at the subcommand's --help, which lists the flags the user was looking for.
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def parse_when(value: str, *, now: datetime | None = None) -> datetime:
    """A point in time: a duration ago (``90s``, ``15m``, ``2h``, ``7d``) or ISO-8601.

    ISO timestamps without an offset are taken as UTC, the zone every ragtrail output uses.

    >>> parse_when("2024-05-01T12:00:00Z").isoformat()
    '2024-05-01T12:00:00+00:00'
    """
    text = value.strip()
    match = _DURATION.fullmatch(text)
    if match is not None:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        try:
            return (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
        except OverflowError:
            raise argparse.ArgumentTypeError(f"{value!r} reaches too far back") from None
    try:
        return parse_utc_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a duration like 30s, 15m, 2h, 7d nor an ISO-8601 time "
            "like 2024-05-01T12:00:00Z") from None


def parse_trace_id(value: str) -> str:
    """A trace ID as stored (32 lowercase hex digits), from one pasted in any case or inside
    a whole ``traceparent`` header, so that a copied ID never just matches nothing."""
    text = value.strip().lower()
    parent = _TRACEPARENT.fullmatch(text)
    if parent is not None:
        return parent.group(1)
    if _TRACE_ID.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a trace ID: 32 hex digits, or a traceparent header's value")
    return text


def parse_severity(value: str) -> Severity:
    try:
        return Severity.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int(value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}; got {value!r}")
    if number > _MAX_INT:
        raise argparse.ArgumentTypeError(f"expected a whole number <= {_MAX_INT}; got {value!r}")
    return number


def positive_int(value: str) -> int:
    return _int(value, 1)


def non_negative_int(value: str) -> int:
    return _int(value, 0)


def _float(value: str, *, minimum: float, inclusive: bool, maximum: float,
           accepted: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    # NaN fails every comparison, so it is refused along with out-of-range numbers.
    if not ((number >= minimum if inclusive else number > minimum) and number <= maximum):
        raise argparse.ArgumentTypeError(f"expected {accepted}; got {value!r}")
    return number


def milliseconds(value: str) -> float:
    """A duration threshold in milliseconds: compared with stored BIGINT microseconds."""
    limit = _MAX_INT // 1000
    return _float(value, minimum=0.0, inclusive=True, maximum=limit,
                  accepted=f"a number of milliseconds from 0 to {limit}")


def interval_seconds(value: str) -> float:
    return _float(value, minimum=0.0, inclusive=False, maximum=_MAX_INTERVAL_S,
                  accepted=f"a number > 0 and <= {_MAX_INTERVAL_S:g}")
