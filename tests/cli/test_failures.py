"""Unusable stores, closed pipes, Ctrl-C, and the promise that reading never writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import KNOWN_EVENTS, T0, Runner, run_process, write_store

from ragtrail._records import SecurityEvent, Severity
from ragtrail.store import AuditStore


def _missing(tmp: Path) -> Path:
    return tmp / "absent.db"


def _directory(tmp: Path) -> Path:
    (tmp / "dir.db").mkdir()
    return tmp / "dir.db"


def _text_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("hello\n")
    return tmp / "notes.txt"


def _empty_file(tmp: Path) -> Path:
    (tmp / "empty.db").write_bytes(b"")
    return tmp / "empty.db"


def _foreign_sqlite(tmp: Path) -> Path:
    with sqlite3.connect(tmp / "app.db") as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()  # "with" commits but does not close (Python 3.13 warns at collection)
    return tmp / "app.db"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_missing, "no such file (reading never creates a store)"),
        (_directory, "no such file"),
        (_text_file, "file is not a database"),
        (_empty_file, "not a ragtrail"),
        (_foreign_sqlite, "not a ragtrail"),
    ],
    ids=["missing", "directory", "text-file", "empty-file", "foreign-sqlite"],
)
@pytest.mark.parametrize("command", ["events", "spans", "metrics", "stats", "tail", "export"])
def test_unusable_store_is_one_line_and_exit_2(
    make: Callable[[Path], Path], message: str, command: str, tmp_path: Path,
    run_inprocess: Runner,
) -> None:
    """Every command: a missing, foreign or non-database file is one error line, exit 2."""
    path = make(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = run_inprocess(command, "--db", str(path))
    assert (result.status, result.out) == (2, "")
    assert result.err.startswith(f"ragtrail: error: {path}")
    assert result.err.count("\n") == 1
    assert message in result.err
    # Nothing created or touched, not even a -journal file.
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_missing_store_in_a_real_process(tmp_path: Path) -> None:
    """``python -m ragtrail events --db missing.db``: exit 2, one stderr line, no file made."""
    result = run_process("events", "--db", "missing.db", cwd=tmp_path)
    assert (result.status, result.out) == (2, "")
    assert result.err == ("ragtrail: error: missing.db: no such file (reading never creates "
                          "a store)\n")
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_one_line_without_the_password(run_inprocess: Runner) -> None:
    """A PostgreSQL URL nobody answers: exit 2, one line, password masked."""
    result = run_inprocess("stats", "--db", "postgresql+psycopg://u:hunter2@127.0.0.1:9/x")
    assert result.status == 2
    assert result.err.count("\n") == 1
    assert "hunter2" not in result.err
    assert result.err.startswith("ragtrail: error: postgresql+psycopg://u:***@127.0.0.1:9/x")


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://u@127.0.0.1:9/x?password=hunter2",
    "postgresql+psycopg:///x?host=127.0.0.1&port=9&user=u&password=hunter2",
    "postgresql+psycopg://u:hunter2@127.0.0.1:9/x?sslpassword=hunter2",
])
def test_a_password_in_the_url_query_is_masked_too(url: str, run_inprocess: Runner) -> None:
    """libpq also reads ``password`` (and ``sslpassword``) from the URL's query: never
    printed either."""
    result = run_inprocess("stats", "--db", url)
    assert result.status == 2
    assert result.err.count("\n") == 1
    assert "hunter2" not in result.err
    assert "password=***" in result.err


def test_a_missing_driver_says_what_to_install(run_inprocess: Runner) -> None:
    """A URL whose driver is not installed (pg8000 never is here): one line naming the
    missing module and the extra to install, not a traceback or a bare import error."""
    result = run_inprocess("stats", "--db", "postgresql+pg8000://u:hunter2@127.0.0.1:9/x")
    assert result.status == 2
    assert result.err.count("\n") == 1
    assert "hunter2" not in result.err
    assert "No module named 'pg8000'" in result.err
    assert "postgres extra" in result.err


def _digest(directory: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in directory.iterdir()}


def test_reading_never_changes_the_store(known_file: Path, run_inprocess: Runner) -> None:
    """Every read command leaves the database and its WAL byte for byte as they were.

    SQLite readers of a WAL database keep the shared-memory index (-shm) up to date and open
    the -wal file, creating both empty when the last writer removed them; neither is data.
    """
    before = _digest(known_file.parent)
    for argv in (["events"], ["spans", "--json"], ["metrics"], ["stats"], ["stats", "--json"],
                 ["export", "--kind", "spans", "--format", "csv"], ["events", "--since", "1h"]):
        assert run_inprocess(*argv, "--db", str(known_file)).status == 0
    after = _digest(known_file.parent)
    assert after["known.db"] == before["known.db"]
    wal = "known.db-wal"
    assert after.get(wal, "") in {before.get(wal), hashlib.sha256(b"").hexdigest()}
    assert set(after) - set(before) <= {wal, "known.db-shm"}


def test_store_url_from_the_environment(known_file: Path, tmp_path: Path) -> None:
    """Without --db, RAGTRAIL_STORE_URL names the store (URL or bare path)."""
    for value in (f"sqlite:///{known_file}", str(known_file)):
        result = run_process("events", "--json", "--limit", "1", cwd=tmp_path,
                             env={"RAGTRAIL_STORE_URL": value})
        assert (result.status, result.err) == (0, "")
        assert '"id": 4' in result.out


def test_default_store_is_ragtrail_db_in_the_current_directory(tmp_path: Path) -> None:
    """Without --db or the variable, ./ragtrail.db is read."""
    write_store(f"sqlite:///{tmp_path / 'ragtrail.db'}", *KNOWN_EVENTS)
    env = {"RAGTRAIL_STORE_URL": ""}
    result = run_process("events", "--limit", "1", cwd=tmp_path, env=env)
    assert (result.status, result.err) == (0, "")
    assert result.out.splitlines()[1].startswith(" 4  2024-05-01T12:00:03.000Z  medium")


def test_output_to_a_full_disk_is_one_error_line(known_file: Path) -> None:
    """``ragtrail events --json > evidence.json`` on a full disk (/dev/full answers ENOSPC):
    one line and exit 2, not a traceback and exit 1."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "ragtrail", "events", "--json", "--db",
                               str(known_file)], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr == "ragtrail: error: cannot write the output: No space left on device\n"


def _close_stdout() -> None:
    os.close(1)


def test_a_closed_stdout_is_one_error_line(known_file: Path, tmp_path: Path) -> None:
    """Started with stdout closed (``ragtrail events >&-``, a supervisor that closed it):
    exit 2 and one line, not an AttributeError traceback; ``export -o FILE`` needs no stdout
    and works."""
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ragtrail", *argv, "--db", str(known_file)],
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False,
                              preexec_fn=_close_stdout)

    for argv in (["events"], ["spans", "--json"], ["export"]):
        done = run(*argv)
        assert (done.returncode, done.stderr) == (
            2, "ragtrail: error: cannot write the output: standard output is closed\n")
    done = run("export", "-o", str(tmp_path / "out.jsonl"))
    assert (done.returncode, done.stderr) == (0, "")
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == len(KNOWN_EVENTS)


@pytest.mark.parametrize("argv", [("events",), ("events", "--json"), ("spans",),
                                  ("export", "--format", "csv")])
def test_an_output_encoding_without_the_characters_gets_escapes(
        known_file: Path, argv: tuple[str, ...]) -> None:
    """A non-UTF-8 stdout (a Latin-1 or ASCII locale, ``PYTHONIOENCODING=ascii``): characters
    it cannot encode are written as ``\\u`` escapes, exit 0, instead of a UnicodeEncodeError
    traceback (the table's ``…`` for a cut description was enough)."""
    write_store(f"sqlite:///{known_file}", SecurityEvent(
        "pii_detected", Severity.HIGH, "ingest", "caf\u00e9 \u6f22\u5b57", T0 + 9))
    done = subprocess.run([sys.executable, "-m", "ragtrail", *argv, "--db", str(known_file)],
                          capture_output=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert (done.returncode, done.stderr) == (0, b"")
    out = done.stdout.decode("ascii")
    if argv[0] == "events" and "--json" not in argv:
        assert "caf\\xe9 \\u6f22\\u5b57" in out
        assert "\\u2026" in out  # the long description, cut
    elif argv[0] == "export":
        assert "caf\\xe9 \\u6f22\\u5b57" in out


@pytest.fixture
def big_store(tmp_path: Path) -> str:
    """3000 events of ~200 bytes: far more output than a pipe buffer or a small file limit."""
    url = f"sqlite:///{tmp_path / 'big.db'}"
    write_store(url, *(SecurityEvent("flood", Severity.LOW, f"source-{n}", "x" * 100, T0 + n)
                       for n in range(3000)))
    return url


@pytest.mark.parametrize(("output", "first_line"), [((), b"  ID  TIME"), (("--json",), b"[")])
def test_closed_pipe_ends_quietly(big_store: str, output: tuple[str, ...],
                                  first_line: bytes) -> None:
    """``ragtrail events | head -1``: no traceback, exit 141 (as if killed by SIGPIPE). With
    ``--json`` too, whose one large write was cut short silently, exit 0."""
    with subprocess.Popen([sys.executable, "-m", "ragtrail", "events", "--db", big_store,
                           "--limit", "3000", *output],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None
        assert child.stdout.readline().startswith(first_line)
        child.stdout.close()
        _, err = child.communicate(timeout=60)
    assert err == b""
    assert child.returncode == 141


def _file_size_limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))


@pytest.mark.parametrize("command", [
    ("events", "--json", "--limit", "3000"),
    ("export", "--format", "csv"),
    ("export", "--format", "jsonl"),
])
def test_output_over_a_file_size_limit_is_an_error_not_a_cut_file(
        big_store: str, tmp_path: Path, command: tuple[str, ...]) -> None:
    """``(ulimit -f 64; ragtrail events --json > out.json)``: exit 2 naming the limit, never
    exit 0 with the output cut at the limit."""
    with open(tmp_path / "out", "w") as out:
        done = subprocess.run([sys.executable, "-m", "ragtrail", *command, "--db", big_store],
                              stdout=out, stderr=subprocess.PIPE, text=True, timeout=60,
                              check=False, preexec_fn=_file_size_limit)
    assert done.returncode == 2
    assert done.stderr == "ragtrail: error: cannot write the output: File too large\n"


def test_interrupt_exits_130_quietly(known_file: Path, run_inprocess: Runner,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during a query: exit 130, nothing printed.

    A real SIGINT is raised from inside the query, the one moment a user could press Ctrl-C
    that a test can hit deterministically.
    """
    def interrupted(self: AuditStore, **_: object) -> None:
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(AuditStore, "events", interrupted)
    result = run_inprocess("events", "--db", str(known_file))
    assert (result.status, result.out, result.err) == (130, "", "")


def test_store_from_a_newer_ragtrail_is_refused(known_file: Path, run_inprocess: Runner) -> None:
    """A schema version above this ragtrail's that older code may not use: exit 2, one line
    naming both versions."""
    from ragtrail.store import SCHEMA_VERSION

    with sqlite3.connect(known_file) as conn:
        conn.execute("UPDATE ragtrail_schema SET version = ?, compatible_from = ?",
                     (SCHEMA_VERSION + 1, SCHEMA_VERSION + 1))
    conn.close()
    result = run_inprocess("events", "--db", str(known_file))
    assert (result.status, result.out) == (2, "")
    assert result.err == (
        f"ragtrail: error: {known_file} was written by a newer ragtrail (schema version "
        f"{SCHEMA_VERSION + 1}, usable from schema version {SCHEMA_VERSION + 1} on; this "
        f"ragtrail has schema version {SCHEMA_VERSION}); upgrade ragtrail to use it\n")


def test_a_closed_store_on_a_read_only_volume_is_read(read_only_view: tuple[Path, Path]) -> None:
    """With its writers gone (no -wal, no -shm) SQLite cannot create the -shm it needs on a
    read-only volume; the store is read as immutable instead, and nothing is written."""
    source, view = read_only_view
    write_store(f"sqlite:///{source / 'audit.db'}", *KNOWN_EVENTS)
    assert sorted(path.name for path in source.iterdir()) == ["audit.db"]
    result = run_process("events", "--json", "--db", str(view / "audit.db"))
    assert (result.status, result.err) == (0, "")
    assert [event["id"] for event in json.loads(result.out)] == [4, 3, 2, 1]
    assert sorted(path.name for path in source.iterdir()) == ["audit.db"]


def test_a_live_store_on_a_read_only_volume_is_read_normally(
        read_only_view: tuple[Path, Path]) -> None:
    """A writer still attached (its -wal and -shm exist): no immutable reading, which would
    miss rows still in the WAL; SQLite reads them through the writer's files."""
    source, view = read_only_view
    writer = AuditStore(f"sqlite:///{source / 'audit.db'}")
    try:
        writer.record(KNOWN_EVENTS[0])
        assert writer.flush(10)
        assert (source / "audit.db-wal").exists()
        result = run_process("events", "--json", "--db", str(view / "audit.db"))
        assert (result.status, result.err) == (0, "")
        assert len(json.loads(result.out)) == 1
    finally:
        writer.close()


@pytest.mark.parametrize(("column", "value"), [
    ("severity", 77),
    ("metadata", "{not json"),
    ("description", b"A\xff \x1b[2J \x1b]0;owned\x07"),  # not UTF-8, with terminal escapes
])
def test_a_damaged_row_is_one_clean_error_line(known_file: Path, run_inprocess: Runner,
                                               column: str, value: object) -> None:
    """A row another writer (or corruption) made: exit 2 with one line naming the row and no
    raw terminal escapes, not a traceback (a bad severity or JSON) or ESC/BEL bytes on the
    terminal (text SQLite cannot decode)."""
    with contextlib.closing(sqlite3.connect(known_file)) as db, db:
        # CAST: bytes stay TEXT in the column, as a foreign writer's broken encoding would.
        placeholder = "CAST(? AS TEXT)" if isinstance(value, bytes) else "?"
        db.execute(f"UPDATE ragtrail_events SET {column} = {placeholder} WHERE id = "
                   "(SELECT min(id) FROM ragtrail_events)", (value,))
    result = run_inprocess("events", "--db", str(known_file))
    assert result.status == 2
    assert result.err.startswith("ragtrail: error: ")
    assert result.err.count("\n") == 1
    assert "\x1b" not in result.err
    assert "\x07" not in result.err
