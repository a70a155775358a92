"""``ragtrail tail``: the latest events, then new ones as they are written, until Ctrl-C."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
from cli_helpers import SECOND, T0, Runner, write_store

from ragtrail._records import SecurityEvent, Severity

DEADLINE_S = 20.0


class Tail:
    """A ``python -m ragtrail tail`` child whose stdout lines can be awaited with a deadline."""

    def __init__(self, *argv: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ragtrail", "tail", "--interval", "0.05", *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.notes: queue.Queue[str] = queue.Queue()  # stderr
        self.readers = [threading.Thread(target=_read_lines, args=(stream, lines), daemon=True)
                        for stream, lines in ((self.process.stdout, self.lines),
                                              (self.process.stderr, self.notes))]
        for reader in self.readers:
            reader.start()

    def next_line(self) -> str:
        return _next(self.lines, "printed nothing")

    def next_note(self) -> str:
        return _next(self.notes, "wrote nothing on stderr")

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C, then the exit status and what is left of stderr."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=DEADLINE_S)
        self.end()
        left = []
        while not self.notes.empty():
            left.append(self.notes.get_nowait() + "\n")
        return self.process.returncode, "".join(left)

    def end(self) -> None:
        """Kill the child if it still runs; read both streams to their end and close them."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=DEADLINE_S)
        for reader in self.readers:  # both streams end with the process
            reader.join(DEADLINE_S)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _read_lines(stream: IO[str] | None, lines: queue.Queue[str]) -> None:
    assert stream is not None
    for line in stream:
        lines.put(line.rstrip("\n"))


def _next(lines: queue.Queue[str], failure: str) -> str:
    try:
        return lines.get(timeout=DEADLINE_S)
    except queue.Empty:
        pytest.fail(f"tail {failure} within {DEADLINE_S} s")


@contextmanager
def tail(*argv: str) -> Iterator[Tail]:
    child = Tail(*argv)
    try:
        yield child
    finally:
        child.end()


def _event(number: int, severity: Severity = Severity.HIGH) -> SecurityEvent:
    return SecurityEvent(f"type-{number}", severity, "tail-test", f"event {number}",
                         T0 + number * SECOND)


def test_tail_prints_the_latest_then_follows_new_events(store_url: str) -> None:
    """Backlog oldest first, then an event written after tail started; Ctrl-C exits 0."""
    write_store(store_url, *(_event(n) for n in range(1, 4)))
    with tail("--db", store_url, "--limit", "2") as child:
        assert child.next_line().split() == [
            "ID", "TIME", "SEVERITY", "TYPE", "SOURCE", "COUNT", "CORRELATION", "ID",
            "DESCRIPTION"]
        assert child.next_line() == (
            "     2  2024-05-01T12:00:02.000Z  high      " + "type-2".ljust(26) + "  "
            + "tail-test".ljust(20) + "      1  " + "-".ljust(32) + "  event 2")
        assert child.next_line().startswith("     3  2024-05-01T12:00:03.000Z  high")
        write_store(store_url, _event(4))
        assert child.next_line().startswith("     4  2024-05-01T12:00:04.000Z  high")
        status, err = child.interrupt()
    assert (status, err) == (0, "")


@pytest.mark.postgres
def test_tail_outlives_a_database_restart(postgres_db_url: str, postgres_server: Any) -> None:
    """A failover or restart while tail follows (the incident it is open for): one note on
    stderr, then it resumes after the last event it printed; it used to exit with status 2."""
    write_store(postgres_db_url, _event(1))
    with tail("--db", postgres_db_url, "--limit", "1") as child:
        child.next_line()  # the header
        assert child.next_line().startswith("     1  ")
        postgres_server.stop()
        assert child.next_note().startswith("ragtrail: note: cannot read the store (")
        postgres_server.start()
        write_store(postgres_db_url, _event(2))
        assert child.next_line().startswith("     2  2024-05-01T12:00:02.000Z  high")
        assert child.next_note() == "ragtrail: note: reading the store again"
        status, err = child.interrupt()
    assert (status, err) == (0, "")


def _await_note(child: Tail, expected: str) -> None:
    """The next note that is not about a poll failing: tail may look at a new file before its
    schema is in (``no such table``), and says so."""
    note = child.next_note()
    while note.startswith(("ragtrail: note: cannot read the store (",
                           "ragtrail: note: reading the store again")):
        note = child.next_note()
    assert note == expected


def test_tail_follows_a_store_file_deleted_or_replaced(tmp_path: Path) -> None:
    """The SQLite file deleted (the application's store makes a new one) or replaced by a
    copy: a note each time, then the new file's events; a copy holding the last event printed
    goes on after it. Tail used to stay on the deleted file and print nothing, ever again."""
    path = tmp_path / "audit.db"
    url = f"sqlite:///{path}"
    write_store(url, _event(1), _event(2))
    with tail("--db", str(path), "--limit", "1") as child:
        child.next_line()  # the header
        assert child.next_line().startswith("     2  2024-05-01T12:00:02.000Z")
        for leftover in tmp_path.iterdir():
            leftover.unlink()
        _await_note(child, f"ragtrail: note: {path} was deleted; waiting for a new file there")
        write_store(url, _event(3))  # a new store: its IDs start from 1 again
        _await_note(child, f"ragtrail: note: {path} is another file now; following it")
        assert child.next_line().startswith("     1  2024-05-01T12:00:03.000Z")
        copy = tmp_path / "copy.db"
        copy.write_bytes(path.read_bytes())
        copy.replace(path)
        _await_note(child, f"ragtrail: note: {path} is another file now; following it")
        write_store(url, _event(4))
        assert child.next_line().startswith("     2  2024-05-01T12:00:04.000Z")
        status, err = child.interrupt()
    assert (status, err) == (0, "")


@pytest.mark.postgres
def test_tail_says_when_the_store_hangs(postgres_db_url: str, postgres_server: Any) -> None:
    """A server that hangs (stopped with SIGSTOP: it neither answers nor refuses): a note
    after 5 s, then new events and a second note once it answers. Tail used to sit silent,
    as if nothing were happening."""
    write_store(postgres_db_url, _event(1))
    with tail("--db", postgres_db_url, "--limit", "1") as child:
        child.next_line()  # the header
        assert child.next_line().startswith("     1  ")
        postgres_server.freeze()
        try:
            assert child.next_note() == ("ragtrail: note: the store has not answered for 5 s; "
                                         "still waiting")
        finally:
            postgres_server.thaw()
        write_store(postgres_db_url, _event(2))
        assert child.next_line().startswith("     2  2024-05-01T12:00:02.000Z  high")
        assert child.next_note() == "ragtrail: note: reading the store again"
        status, err = child.interrupt()
    assert (status, err) == (0, "")


def test_tail_never_cuts_a_correlation_id(store_url: str) -> None:
    """IDs are pasted into --correlation-id: a generated one and the longest valid inbound
    one are printed whole, and the longest built-in event type is not cut either."""
    generated, inbound = "0" * 31 + "1", "client-" + "x" * 121
    write_store(store_url, *(dataclasses.replace(
        _event(n), event_type="malicious_header_injection", correlation_id=cid)
        for n, cid in enumerate((generated, inbound), 1)))
    with tail("--db", store_url, "--limit", "2") as child:
        child.next_line()  # the header
        lines = [child.next_line(), child.next_line()]
        child.interrupt()
    assert [line.split()[6] for line in lines] == [generated, inbound]
    assert all(line.split()[3] == "malicious_header_injection" for line in lines)


def test_tail_json_prints_json_lines(store_url: str) -> None:
    """``--json``: the backlog and then each new event as one JSON object a line, in ID order."""
    write_store(store_url, _event(1))
    with tail("--db", store_url, "--json", "--limit", "1") as child:
        assert json.loads(child.next_line())["id"] == 1  # printed after its starting point
        write_store(store_url, _event(2), _event(3))
        first, second = json.loads(child.next_line()), json.loads(child.next_line())
        status, err = child.interrupt()
    assert [(first["id"], first["event_type"]), (second["id"], second["event_type"])] == [
        (2, "type-2"), (3, "type-3")]
    assert first["severity"] == "high"
    assert first["time"] == "2024-05-01T12:00:02.000000Z"
    assert (status, err) == (0, "")


def test_tail_limit_0_prints_only_new_events(tmp_path: Path) -> None:
    """``--limit 0``: the header, then nothing until a new event arrives."""
    url = f"sqlite:///{tmp_path / 'tail.db'}"
    write_store(url, _event(1))
    with tail("--db", url, "--limit", "0") as child:
        assert child.next_line().startswith("    ID  TIME")  # printed after its starting point
        write_store(url, _event(2))
        assert child.next_line().startswith("     2  ")
        status, _ = child.interrupt()
    assert status == 0


def test_tail_filters_new_events(tmp_path: Path) -> None:
    """``--min-severity high`` skips a new low event and prints the critical one after it."""
    url = f"sqlite:///{tmp_path / 'tail.db'}"
    write_store(url, _event(1))
    with tail("--db", url, "--json", "--min-severity", "high") as child:
        assert json.loads(child.next_line())["id"] == 1
        write_store(url, _event(2, Severity.LOW), _event(3, Severity.CRITICAL))
        shown = json.loads(child.next_line())
        status, _ = child.interrupt()
    assert (shown["id"], shown["severity"], status) == (3, "critical", 0)


def test_tail_in_process_returns_0_on_interrupt(
    store_url: str, run_inprocess: Runner, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``main(["tail", ...])`` prints the backlog and returns 0 when Ctrl-C ends the wait.

    The SIGINT is raised from the poll wait, where a user's Ctrl-C almost always lands.
    """
    write_store(store_url, _event(1))
    monkeypatch.setattr(time, "sleep", lambda _: signal.raise_signal(signal.SIGINT))
    result = run_inprocess("tail", "--db", store_url)
    assert (result.status, result.err) == (0, "")
    assert [line.split()[0] for line in result.out.splitlines()] == ["ID", "1"]


def test_tail_notices_its_reader_gone_while_nothing_happens(tmp_path: Path) -> None:
    """``ragtrail tail --limit 0 | head -1`` ended only at the next new event (never, on a
    quiet store): it exits 141 once the pipe's reader is gone."""
    url = f"sqlite:///{tmp_path / 'tail.db'}"
    write_store(url, _event(1))
    with subprocess.Popen([sys.executable, "-m", "ragtrail", "tail", "--interval", "0.05",
                           "--limit", "0", "--db", url],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None
        assert child.stdout.readline().startswith(b"    ID  TIME")
        child.stdout.close()
        try:
            _, err = child.communicate(timeout=DEADLINE_S)
        finally:
            child.kill()  # still running: the test fails, it does not hang
    assert (child.returncode, err) == (141, b"")


def test_tail_stops_on_a_row_it_cannot_read(tmp_path: Path) -> None:
    """A damaged new row (another writer's severity 77) was taken for an outage: one note,
    then the same failing poll forever while tail looked alive. It is one error, exit 2."""
    path = tmp_path / "tail.db"
    url = f"sqlite:///{path}"
    write_store(url, _event(1))
    with tail("--db", url, "--limit", "0") as child:
        assert child.next_line().startswith("    ID  TIME")
        write_store(url, _event(2))
        assert child.next_line().startswith("     2  ")
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("INSERT INTO ragtrail_events SELECT id + 1, time_us, event_type, 77, "
                       "source, description, correlation_id, trace_id, span_id, metadata, "
                       "service, host, pid, count FROM ragtrail_events WHERE id = 2")
        child.process.wait(timeout=DEADLINE_S)
        assert child.process.returncode == 2
        assert "stored row 3 cannot be read" in child.next_note()
