"""events, spans, metrics and stats on a known store: exact tables, filters, --json."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cli_helpers import SECOND, Reader, Runner, write_store

from ragtrail._records import SecurityEvent, Severity
from ragtrail.cli._serialize import record_dict
from ragtrail.store import AuditStore

EVENTS_TABLE = """\
ID  TIME                      SEVERITY  TYPE              SOURCE     COUNT  CORRELATION ID  DESCRIPTION
 4  2024-05-01T12:00:03.000Z  medium    rate_limited      gateway        1  req-2           rate limit hit for tenant acme: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…
 3  2024-05-01T12:00:02.000Z  critical  pii_detected      ingest         1  -               SSN in chunk 3
 2  2024-05-01T12:00:01.000Z  high      prompt_injection  retriever      1  req-2           ignore previous instructions
 1  2024-05-01T12:00:00.000Z  low       login_failure     auth           1  req-1           bad password for alice
"""  # noqa: E501

SPANS_TABLE = """\
START                     DURATION MS  STATUS  KIND       NAME         TRACE ID                          CORRELATION ID  ERROR
2024-05-01T12:00:02.000Z     2500.000  ok      server     POST /query  0af7651916cd43dd8448eb211c80319c  req-2           -
2024-05-01T12:00:01.000Z     2345.678  error   llm        answer       4bf92f3577b34da6a3ce929d0e0e4736  req-1           TimeoutError: upstream took too long
2024-05-01T12:00:00.000Z       12.345  ok      retriever  search       4bf92f3577b34da6a3ce929d0e0e4736  req-1           -
"""  # noqa: E501

METRICS_TABLE = """\
TIME                      CPU %  MEM %  DISK %   NET SENT   NET RECV  CONNS  QUEUE       RSS
2024-05-01T12:00:30.000Z   97.0   41.5    70.2      0 B/s  3.5 MiB/s     12      3  81.0 MiB
2024-05-01T12:00:00.000Z   12.5   40.0    70.2  2.0 KiB/s  1.0 KiB/s      5      0  80.0 MiB
"""

STATS_TEXT = """\
Lifetime, all writers: written 9, dropped 0, coalesced 0

Ring usage
TABLE    ROWS  CAPACITY  USED
events      4    100000  0.0%
spans       3    100000  0.0%
metrics     2     10000  0.0%

Records in the rings: events 4 (4 occurrences), spans 3, metrics 2

Events by severity
SEVERITY  ROWS  OCCURRENCES
critical     1            1
high         1            1
medium       1            1
low          1            1

Events by type
TYPE              ROWS  OCCURRENCES
login_failure        1            1
pii_detected         1            1
prompt_injection     1            1
rate_limited         1            1

Span latency (ms)
NAME         COUNT       P50       P95       P99
POST /query      1  2500.000  2500.000  2500.000
answer           1  2345.678  2345.678  2345.678
search           1    12.345    12.345    12.345
"""


@pytest.mark.parametrize(
    ("command", "expected"),
    [("events", EVENTS_TABLE), ("spans", SPANS_TABLE), ("metrics", METRICS_TABLE),
     ("stats", STATS_TEXT)],
)
def test_command_prints_the_expected_table(command: str, expected: str, reader: Reader) -> None:
    """Each command's default output on the known store, byte for byte, on both backends."""
    result = reader.run(command, "--db", reader.url)
    assert (result.status, result.err) == (0, "")
    assert result.out == expected


def test_db_may_come_before_the_command(known_store: str, run_inprocess: Runner) -> None:
    """``ragtrail --db URL events`` reads the same store as ``ragtrail events --db URL``."""
    assert run_inprocess("--db", known_store, "events").out == EVENTS_TABLE


def test_stats_since_counts_only_newer_records(known_store: str, run_inprocess: Runner) -> None:
    """``stats --since`` narrows the counts and latencies and says so."""
    out = run_inprocess("stats", "--db", known_store, "--since", "2024-05-01T12:00:01Z").out
    assert ("Records since 2024-05-01T12:00:01.000Z: events 3 (3 occurrences), spans 2, "
            "metrics 1") in out
    assert "low          0            0" in out
    assert "search" not in out


def test_stats_says_1_occurrence_not_1_occurrences(known_store: str,
                                                   run_inprocess: Runner) -> None:
    """One event occurring once reads "1 occurrence"; it read "1 occurrences"."""
    out = run_inprocess("stats", "--db", known_store, "--since", "2024-05-01T12:00:03Z").out
    assert ("Records since 2024-05-01T12:00:03.000Z: events 1 (1 occurrence), spans 0, "
            "metrics 1") in out


EVENT_FILTER_CASES = [
    ([], [4, 3, 2, 1]),
    (["--min-severity", "high"], [3, 2]),
    (["--min-severity", "MEDIUM"], [4, 3, 2]),
    (["--type", "prompt_injection"], [2]),
    (["--source", "auth"], [1]),
    (["--correlation-id", "req-2"], [4, 2]),
    (["--since", "2024-05-01T12:00:02Z"], [4, 3]),
    (["--until", "2024-05-01T12:00:02Z"], [2, 1]),
    (["--since", "2024-05-01T14:00:01+02:00", "--until", "2024-05-01T12:00:03"], [3, 2]),
    (["--limit", "2"], [4, 3]),
    (["--min-severity", "low", "--correlation-id", "req-2", "--limit", "1"], [4]),
]


def test_event_filters(known_store: str, run_inprocess: Runner) -> None:
    """Every event filter flag reaches the store query; newest first (one store, all cases)."""
    for flags, ids in EVENT_FILTER_CASES:
        result = run_inprocess("events", "--db", known_store, "--json", *flags)
        assert result.status == 0, flags
        assert ([event["id"] for event in json.loads(result.out)], flags) == (ids, flags)


SPAN_FILTER_CASES = [
    ([], ["POST /query", "answer", "search"]),
    (["--trace-id", "4bf92f3577b34da6a3ce929d0e0e4736"], ["answer", "search"]),
    # As pasted from a tool that shows IDs in capitals, or a whole traceparent header.
    (["--trace-id", "4BF92F3577B34DA6A3CE929D0E0E4736"], ["answer", "search"]),
    (["--trace-id", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
     ["answer", "search"]),
    (["--correlation-id", "req-2"], ["POST /query"]),
    (["--name", "search"], ["search"]),
    (["--kind", "llm"], ["answer"]),
    (["--min-duration-ms", "2345.678"], ["POST /query", "answer"]),
    (["--min-duration-ms", "2345.679"], ["POST /query"]),
    (["--errors-only"], ["answer"]),
    (["--since", "2024-05-01T12:00:01Z"], ["POST /query", "answer"]),
    (["--limit", "1"], ["POST /query"]),
]


def test_span_filters(known_store: str, run_inprocess: Runner) -> None:
    """Every span filter flag reaches the store query; newest first (one store, all cases)."""
    for flags, names in SPAN_FILTER_CASES:
        result = run_inprocess("spans", "--db", known_store, "--json", *flags)
        assert result.status == 0, flags
        assert ([span["name"] for span in json.loads(result.out)], flags) == (names, flags)


def test_metrics_since_and_limit(known_store: str, run_inprocess: Runner) -> None:
    """``metrics`` takes --since and --limit."""
    since = json.loads(run_inprocess("metrics", "--db", known_store, "--json", "--since",
                                     "2024-05-01T12:00:10Z").out)
    limited = json.loads(run_inprocess("metrics", "--db", known_store, "--json", "--limit",
                                       "1").out)
    assert [m["cpu_percent"] for m in since] == [97.0]
    assert [m["cpu_percent"] for m in limited] == [97.0]


def test_since_duration_is_relative_to_now(store_url: str, run_inprocess: Runner) -> None:
    """``--since 15m`` keeps an event from a minute ago and drops one from an hour ago."""
    now = int(datetime.now(timezone.utc).timestamp() * SECOND)
    write_store(store_url,
                SecurityEvent("old", Severity.LOW, "s", "an hour ago", now - 3600 * SECOND),
                SecurityEvent("new", Severity.LOW, "s", "a minute ago", now - 60 * SECOND))
    for flags, types in ((["--since", "15m"], ["new"]), (["--since", "2h"], ["new", "old"]),
                         (["--since", "30s"], [])):
        out = run_inprocess("events", "--db", store_url, "--json", *flags).out
        assert [event["event_type"] for event in json.loads(out)] == types


@pytest.mark.parametrize("command", ["events", "spans", "metrics"])
def test_json_is_one_document_equal_to_the_store_records(command: str, reader: Reader) -> None:
    """``--json`` prints one JSON array: every field of every record the store returns."""
    result = reader.run(command, "--db", reader.url, "--json")
    assert (result.status, result.err) == (0, "")
    store = AuditStore(reader.url, read_only=True)
    try:
        expected = [record_dict(record) for record in getattr(store, command)(limit=50)]
    finally:
        store.close()
    assert json.loads(result.out) == expected


def test_event_json_values(known_store: str, run_inprocess: Runner) -> None:
    """Event JSON: severity by name, exact and ISO times, metadata as an object."""
    events = json.loads(run_inprocess("events", "--db", known_store, "--json").out)
    injection = next(event for event in events if event["id"] == 2)
    assert injection == {
        "time": "2024-05-01T12:00:01.000000Z", "event_type": "prompt_injection",
        "severity": "high", "source": "retriever", "description": "ignore previous instructions",
        "time_us": 1_714_564_801_000_000, "correlation_id": "req-2",
        "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "00f067aa0ba902b7",
        "metadata": {"score": 0.97}, "service": "rag-api", "host": "web-1", "pid": 4242,
        "count": 1, "id": 2,
    }


def test_stats_json_is_the_store_stats(reader: Reader) -> None:
    """``stats --json`` is StoreStats as one JSON object."""
    result = reader.run("stats", "--db", reader.url, "--json")
    store = AuditStore(reader.url, read_only=True)
    try:
        expected = dataclasses.asdict(store.stats())
    finally:
        store.close()
    stats = json.loads(result.out)
    assert stats == expected
    assert stats["events_by_severity"] == {"low": 1, "medium": 1, "high": 1, "critical": 1}
    assert stats["span_latency"]["answer"]["p99_ms"] == 2345.678


@pytest.mark.parametrize("command", ["events", "spans", "metrics"])
def test_nothing_matching_is_a_note_on_stderr(command: str, known_store: str,
                                              run_inprocess: Runner) -> None:
    """No match: exit 0, empty stdout (``[]`` with --json), a note on stderr."""
    flags = ["--since", "2030-01-01"]
    table = run_inprocess(command, "--db", known_store, *flags)
    as_json = run_inprocess(command, "--db", known_store, "--json", *flags)
    assert (table.status, table.out, table.err) == (0, "", f"no {command} match\n")
    assert (as_json.status, json.loads(as_json.out), as_json.err) == (0, [], "")


def test_hostile_text_cannot_reach_the_terminal(store_url: str, run_inprocess: Runner) -> None:
    """Escape sequences and line breaks in stored text are shown escaped, one row a line."""
    write_store(store_url, SecurityEvent("x\x1b]0;pwned\x07", Severity.HIGH, "up\nload",
                                         "\x1b[2J\u202eexe.txt", 1_714_564_800_000_000))
    out = run_inprocess("events", "--db", store_url).out
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert out.splitlines()[1:] == [
        r" 1  2024-05-01T12:00:00.000Z  high      x\x1b]0;pwned\x07  up\nload      1  -"
        r"               \x1b[2J\u202eexe.txt"]


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def test_non_finite_numbers_are_null_in_every_json_output(
        known_file: Path, run_inprocess: Runner) -> None:
    """Metadata holding NaN or an infinity (what the standard library's encoder stores): the
    JSON printed is still JSON for strict parsers (JavaScript, Go), with null there, as a
    store written with orjson holds it, not ``NaN``/``Infinity``."""
    with sqlite3.connect(known_file) as conn:
        conn.execute("UPDATE ragtrail_events SET metadata = ? WHERE id = 3",
                     ('{"score":NaN,"top":Infinity,"runs":[-Infinity,1.5]}',))
    conn.close()
    expected = {"score": None, "top": None, "runs": [None, 1.5]}
    document = run_inprocess("events", "--json", "--db", str(known_file)).out
    assert json.loads(document, parse_constant=_refuse_constant)[1]["metadata"] == expected
    lines = run_inprocess("export", "--db", str(known_file)).out.splitlines()
    assert json.loads(lines[2], parse_constant=_refuse_constant)["metadata"] == expected
    rows = list(csv.DictReader(io.StringIO(
        run_inprocess("export", "--format", "csv", "--db", str(known_file)).out)))
    assert json.loads(rows[2]["metadata"], parse_constant=_refuse_constant) == expected


def test_empty_store_has_zero_stats(store_url: str, run_inprocess: Runner) -> None:
    """A store with nothing in it yet: stats report zeros and omit the empty breakdowns."""
    write_store(store_url)
    result = run_inprocess("stats", "--db", store_url)
    assert result.status == 0
    assert "Records in the rings: events 0 (0 occurrences), spans 0, metrics 0" in result.out
    assert "Events by" not in result.out
    assert "Span latency" not in result.out


def test_times_are_shown_in_utc_whatever_the_local_zone(
    known_store: str, run_inprocess: Runner, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TZ does not change the printed times."""
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        out = run_inprocess("events", "--db", known_store, "--limit", "1").out
    finally:
        monkeypatch.undo()  # before tzset, so the process goes back to its own zone
        time.tzset()
    assert "2024-05-01T12:00:03.000Z" in out
