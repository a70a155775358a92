"""Records as dictionaries, JSON Lines and CSV."""

from __future__ import annotations

import csv
import io
import json

from ragtrail._records import MetricsSample, SecurityEvent, Severity, SpanEvent, SpanRecord
from ragtrail.cli._serialize import field_names, record_dict, write_csv, write_json, write_jsonl

T = 1_714_564_800_123_456

EVENT = SecurityEvent("pii_detected", Severity.CRITICAL, "ingest", "SSN in chunk 3", T,
                      correlation_id="req-1", trace_id="c" * 32, span_id="d" * 16,
                      metadata={"chunk": 3, "tags": ["a", "b"]}, service="rag-api",
                      host="h1", pid=99, count=2, id=5)
SPAN = SpanRecord("a" * 32, "b" * 16, "answer", "llm", T, 1500, parent_span_id="e" * 16,
                  attributes={"model": "m"}, events=(SpanEvent("exception", T + 1, {"x": 1}),))
SAMPLE = MetricsSample(T, 1.5, 2.5, 3.5, 10.0, 20.0, 4, 0, 1024)


def test_event_dict_has_every_field_with_severity_by_name() -> None:
    """An event becomes its fields plus an ISO time, severity as its name."""
    assert record_dict(EVENT) == {
        "time": "2024-05-01T12:00:00.123456Z",
        "event_type": "pii_detected",
        "severity": "critical",
        "source": "ingest",
        "description": "SSN in chunk 3",
        "time_us": T,
        "correlation_id": "req-1",
        "trace_id": "c" * 32,
        "span_id": "d" * 16,
        "metadata": {"chunk": 3, "tags": ["a", "b"]},
        "service": "rag-api",
        "host": "h1",
        "pid": 99,
        "count": 2,
        "id": 5,
    }


def test_span_dict_lists_span_events_as_objects() -> None:
    """Span events become a list of plain objects; the start time is also given in ISO."""
    plain = record_dict(SPAN)
    assert plain["start_time"] == "2024-05-01T12:00:00.123456Z"
    assert plain["events"] == [{"name": "exception", "time_us": T + 1, "attributes": {"x": 1}}]
    assert plain["attributes"] == {"model": "m"}
    assert list(plain) == field_names(SpanRecord)


def test_field_names_match_dict_keys_for_every_kind() -> None:
    """The CSV header is exactly the dictionary's keys, in order."""
    for record in (EVENT, SPAN, SAMPLE):
        assert list(record_dict(record)) == field_names(type(record))


def test_json_lines_are_one_compact_object_each() -> None:
    """JSON Lines: one parseable object per line, nothing else."""
    out = io.StringIO()
    write_jsonl([EVENT, EVENT], out)
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [record_dict(EVENT)] * 2
    assert all(": " not in line for line in lines)  # compact separators


def test_json_document_round_trips() -> None:
    """--json output is a single parseable document."""
    out = io.StringIO()
    write_json([record_dict(SAMPLE)], out)
    assert json.loads(out.getvalue()) == [record_dict(SAMPLE)]


def test_csv_has_a_header_and_json_text_for_nested_values() -> None:
    """CSV: header row, empty cells for None, JSON text for metadata and span events."""
    out = io.StringIO(newline="")
    write_csv(SpanRecord, [SPAN], out)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows[0] == field_names(SpanRecord)
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["correlation_id"] == ""
    assert row["duration_us"] == "1500"
    assert json.loads(row["attributes"]) == {"model": "m"}
    assert json.loads(row["events"]) == [{"attributes": {"x": 1}, "name": "exception",
                                          "time_us": T + 1}]
    assert out.getvalue().endswith("\r\n")  # RFC 4180 line endings


def test_csv_of_nothing_is_just_the_header() -> None:
    """An empty export still says what the columns are."""
    out = io.StringIO(newline="")
    write_csv(MetricsSample, [], out)
    assert out.getvalue() == ",".join(field_names(MetricsSample)) + "\r\n"


def test_csv_neutralises_spreadsheet_formulas() -> None:
    """Text a spreadsheet would run (=, +, -, @, tab, CR first) gets a leading apostrophe."""
    hostile = SecurityEvent("=cmd|' /C calc'!A0", Severity.HIGH, "@SUM(1+1)", "-2+3", T,
                            correlation_id="+1", metadata={"x": "=1"}, id=1, pid=-1)
    out = io.StringIO(newline="")
    write_csv(SecurityEvent, [hostile], out)
    row = dict(zip(*csv.reader(io.StringIO(out.getvalue(), newline="")), strict=True))
    assert (row["event_type"], row["source"], row["description"], row["correlation_id"]) == (
        "'=cmd|' /C calc'!A0", "'@SUM(1+1)", "'-2+3", "'+1")
    assert row["pid"] == "-1"  # numbers are data, not formulas
    assert row["metadata"] == '{"x":"=1"}'
    jsonl = io.StringIO()
    write_jsonl([hostile], jsonl)
    assert json.loads(jsonl.getvalue())["event_type"] == "=cmd|' /C calc'!A0"  # lossless


def test_csv_numbers_stay_numbers_and_non_finite_ones_are_empty() -> None:
    """Negative numbers are written as numbers (no apostrophe); NaN and infinities, which
    csv would write as ``nan`` and ``-inf`` (a spreadsheet runs the latter), are empty."""
    sample = MetricsSample(T, -1.5, float("nan"), float("-inf"), float("inf"), -0.0, -4, 0, -1)
    out = io.StringIO(newline="")
    write_csv(MetricsSample, [sample], out)
    row = dict(zip(*csv.reader(io.StringIO(out.getvalue(), newline="")), strict=True))
    assert [row[name] for name in field_names(MetricsSample)[2:]] == [
        "-1.5", "", "", "", "-0.0", "-4", "0", "-1"]
