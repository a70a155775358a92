"""Flag value parsing: times, counts, store URLs."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ragtrail._records import Severity
from ragtrail.cli._args import (
    interval_seconds,
    milliseconds,
    non_negative_int,
    parse_severity,
    parse_when,
    positive_int,
)
from ragtrail.cli._db import store_url

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1.5h", timedelta(minutes=90)),
        (" 15M ", timedelta(minutes=15)),
        ("0s", timedelta(0)),
    ],
)
def test_duration_means_that_long_before_now(text: str, ago: timedelta) -> None:
    """``--since 15m`` is fifteen minutes before now."""
    assert parse_when(text, now=NOW) == NOW - ago


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:30:00Z", datetime(2024, 5, 1, 10, 30, tzinfo=timezone.utc)),
        ("2024-05-01T10:30:00.250z",
         datetime(2024, 5, 1, 10, 30, 0, 250_000, tzinfo=timezone.utc)),
        ("2024-05-01T12:30:00+02:00", datetime(2024, 5, 1, 10, 30, tzinfo=timezone.utc)),
        ("2024-05-01T10:30:00", datetime(2024, 5, 1, 10, 30, tzinfo=timezone.utc)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
    ],
)
def test_iso_time_is_an_aware_instant_utc_when_no_offset(text: str, expected: datetime) -> None:
    """ISO-8601 times are accepted with Z, with an offset, or bare (taken as UTC)."""
    parsed = parse_when(text, now=NOW)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["", "15", "m", "5x", "-5m", "yesterday", "2024-13-01",
                                  "15 minutes", "1e3s", "99999999999d"])
def test_bad_time_is_refused_with_the_accepted_forms(text: str) -> None:
    """Anything else is an argparse type error that names both accepted forms."""
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        parse_when(text, now=NOW)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(("text", "expected"),
                         [("high", Severity.HIGH), ("CRITICAL", Severity.CRITICAL),
                          ("Low", Severity.LOW)])
def test_severity_by_name_or_number(text: str, expected: Severity) -> None:
    """Severity names are accepted in any case."""
    assert parse_severity(text) == expected


def test_bad_severity_lists_the_choices() -> None:
    """An unknown severity is refused with the four names."""
    with pytest.raises(argparse.ArgumentTypeError, match="low, medium, high, critical"):
        parse_severity("urgent")


@pytest.mark.parametrize("text", ["0", "-1", "abc", "1.5", ""])
def test_positive_int_refuses_zero_and_non_integers(text: str) -> None:
    """``--limit`` takes whole numbers >= 1 only."""
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(text)


def test_integer_parsers_accept_their_lower_bound() -> None:
    """1 is a positive int, 0 a non-negative one."""
    assert (positive_int("1"), non_negative_int("0"), positive_int("50")) == (1, 0, 50)
    with pytest.raises(argparse.ArgumentTypeError):
        non_negative_int("-1")


@pytest.mark.parametrize("text", ["nan", "inf", "-0.5", "x", ""])
def test_float_parsers_refuse_nan_infinity_and_negatives(text: str) -> None:
    """``--min-duration-ms`` and ``--interval`` refuse NaN, infinity and negatives."""
    with pytest.raises(argparse.ArgumentTypeError):
        milliseconds(text)
    with pytest.raises(argparse.ArgumentTypeError):
        interval_seconds(text)


def test_float_bounds() -> None:
    """0 is allowed for a duration threshold but not for a poll interval."""
    assert milliseconds("0") == 0.0
    assert interval_seconds("0.05") == 0.05
    with pytest.raises(argparse.ArgumentTypeError):
        interval_seconds("0")


def test_store_url_prefers_the_flag_then_the_environment_then_the_default() -> None:
    """``--db`` wins over RAGTRAIL_STORE_URL, which wins over ./ragtrail.db."""
    env = {"RAGTRAIL_STORE_URL": "postgresql://db/audit"}
    assert store_url("sqlite:///given.db", env) == "sqlite:///given.db"
    assert store_url(None, env) == "postgresql://db/audit"
    assert store_url(None, {}) == "sqlite:///ragtrail.db"
    assert store_url("", {"RAGTRAIL_STORE_URL": "  "}) == "sqlite:///ragtrail.db"


def test_bare_path_becomes_a_sqlite_url(tmp_path: Path) -> None:
    """A path without ``://`` is a SQLite file, relative or absolute, ``~`` expanded."""
    assert store_url("audit.db", {}) == "sqlite:///audit.db"
    assert store_url(str(tmp_path / "a.db"), {}) == f"sqlite:///{tmp_path}/a.db"
    assert store_url("~/a.db", {}) == f"sqlite:///{Path.home()}/a.db"
    assert store_url(None, {"RAGTRAIL_STORE_URL": "x/audit.db"}) == "sqlite:///x/audit.db"
