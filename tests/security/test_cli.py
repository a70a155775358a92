"""``ragtrail quarantine`` and ``ragtrail scan`` through the real command entry point."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from security_corpus import ELF, Corpus

import ragtrail.instrument
from ragtrail.cli import main
from ragtrail.instrument import Monitor
from ragtrail.security import FileValidator
from ragtrail.security._copy_out import staging_path


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer settings leak in; relative defaults land in tmp_path."""
    for name in list(os.environ):
        if name.startswith(("RAGTRAIL_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def quarantined(monitor: Monitor, corpus: Corpus, quarantine_dir: Path) -> list[str]:
    """Two rejected files (one with a hostile name); their hashes, newest first."""
    validator = FileValidator(monitor=monitor)
    old = validator.validate(corpus.write("x", ELF), filename="evil\x1b[31m\r\n.pdf")
    new = validator.validate(corpus.write("y.md", b"\xff\xfe"))
    sidecar = quarantine_dir / f"{old.sha256}.json"
    record = json.loads(sidecar.read_text())
    record["time"] = (datetime.now(timezone.utc) - timedelta(days=10)).isoformat()
    sidecar.write_text(json.dumps(record))
    return [new.sha256, old.sha256]


# -- quarantine ---------------------------------------------------------------------------------

def test_list_prints_an_escaped_table(capsys: pytest.CaptureFixture[str],
                                      quarantined: list[str], quarantine_dir: Path) -> None:
    """Newest first, hashes shortened, the hostile name escaped (no raw ESC, CR or LF); the
    totals and bounds on stderr, so only the rows go down a pipe."""
    status, out, err = _run(capsys, "quarantine", "list", "--dir", str(quarantine_dir))
    assert (status, err) == (0, "2 files, 126 B (bounds: 10000 files, 1.0 GiB); evicted to make "
                                "room so far: 0 (0 B), not kept: 0\n")
    lines = out.splitlines()
    assert lines[0].split() == ["SHA256", "QUARANTINED", "SIZE", "CLAIMED", "DETECTED", "NAME",
                                "REASON"]
    assert lines[1].startswith(quarantined[0][:16])
    assert lines[2].startswith(quarantined[1][:16])
    assert "evil\\x1b[31m\\x0d\\x0a.pdf" in lines[2]
    assert not any(ch in out for ch in "\x1b\r")
    assert len(lines) == 3


def test_list_shows_what_the_bounds_cost(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         corpus: Corpus, quarantine_dir: Path) -> None:
    """After evictions and a refusal, ``list`` says how many files and bytes went, how many
    were not kept, and under which bounds."""
    monkeypatch.setenv("RAGTRAIL_QUARANTINE_MAX_FILES", "1")
    monkeypatch.setenv("RAGTRAIL_QUARANTINE_MAX_BYTES", "200")
    monitor = ragtrail.instrument.configure(store_url=f"sqlite:///{tmp_path / 'audit.db'}",
                                            quarantine_dir=str(quarantine_dir))
    try:
        validator = FileValidator(monitor=monitor)
        for number in range(3):
            validator.validate(corpus.write(f"{number}.pdf", ELF + bytes([number])))
        validator.validate(corpus.write("big.pdf", ELF + bytes(100)))
    finally:
        ragtrail.instrument.shutdown()
    status, out, err = _run(capsys, "quarantine", "list", "--dir", str(quarantine_dir))
    assert (status, len(out.splitlines())) == (0, 2)
    assert err == (f"1 file, {len(ELF) + 1} B (bounds: 1 file, 200 B); evicted to make room "
                   f"so far: 2 ({2 * (len(ELF) + 1)} B), not kept: 1\n")


def test_list_json_and_environment_directory(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch,
                                             quarantined: list[str],
                                             quarantine_dir: Path) -> None:
    """``--json`` is a parseable array; the directory comes from $RAGTRAIL_QUARANTINE_DIR."""
    monkeypatch.setenv("RAGTRAIL_QUARANTINE_DIR", str(quarantine_dir))
    status, out, _ = _run(capsys, "quarantine", "list", "--json")
    assert status == 0
    entries = json.loads(out)
    assert [e["sha256"] for e in entries] == quarantined
    assert entries[1]["detected_type"] == "elf-executable"
    assert entries[1]["original_name"] == "evil\\x1b[31m\\x0d\\x0a.pdf"


def test_list_of_an_empty_quarantine(capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    """Nothing quarantined: a note on stderr, empty stdout, exit 0, nothing created."""
    status, out, err = _run(capsys, "quarantine", "list", "--dir", str(tmp_path / "none"))
    assert (status, out) == (0, "")
    assert "no quarantined files" in err
    assert "(no such directory)" in err  # a typo in --dir is not hidden
    assert not (tmp_path / "none").exists()
    tmp_path.joinpath("empty").mkdir()
    status, out, err = _run(capsys, "quarantine", "list", "--dir", str(tmp_path / "empty"))
    assert (status, out) == (0, "")
    assert "no quarantined files" in err
    assert "no such directory" not in err


def test_show_by_prefix(capsys: pytest.CaptureFixture[str], quarantined: list[str],
                        quarantine_dir: Path) -> None:
    """``show`` takes a prefix and prints every field; ``--json`` prints one object."""
    status, out, _ = _run(capsys, "quarantine", "show", quarantined[1][:10], "--dir",
                          str(quarantine_dir))
    assert status == 0
    assert f"sha256          {quarantined[1]}" in out
    assert "reason          executable content (elf-executable) disguised as pdf" in out
    status, out, _ = _run(capsys, "quarantine", "show", quarantined[1], "--json", "--dir",
                          str(quarantine_dir))
    assert json.loads(out)["size"] == len(ELF)


def test_show_prints_times_with_z_as_the_tables_do(
        capsys: pytest.CaptureFixture[str], quarantined: list[str], quarantine_dir: Path) -> None:
    """``show`` and ``--json`` print UTC times with ``Z``, as ``list`` and the record tables
    do, also from a sidecar an older ragtrail wrote with ``+00:00``."""
    sidecar = quarantine_dir / f"{quarantined[1]}.json"
    record = json.loads(sidecar.read_text())
    record["time"] = "2024-05-01T12:00:00.250000+00:00"
    record["last_time"] = "2024-06-01T08:30:00+00:00"
    sidecar.write_text(json.dumps(record))
    status, out, _ = _run(capsys, "quarantine", "show", quarantined[1], "--dir",
                          str(quarantine_dir))
    assert status == 0
    assert "time            2024-05-01T12:00:00.250000Z\n" in out
    assert "last_time       2024-06-01T08:30:00Z\n" in out
    assert "+00:00" not in out
    status, out, _ = _run(capsys, "quarantine", "show", quarantined[1], "--json", "--dir",
                          str(quarantine_dir))
    shown = json.loads(out)
    assert (shown["time"], shown["last_time"]) == ("2024-05-01T12:00:00.250000Z",
                                                   "2024-06-01T08:30:00Z")
    status, out, _ = _run(capsys, "quarantine", "list", "--dir", str(quarantine_dir))
    assert "2024-05-01T12:00:00Z" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["show", "deadbeefdeadbeef"], "no quarantined file matches deadbeefdeadbeef"),
    (["show", "abc"], "at least 8 hex characters"),
    (["release", "deadbeefdeadbeef", "out"], "needs --yes"),
    (["purge"], "one of the arguments --older-than --all is required"),
    (["purge", "--older-than", "soon"], "neither a duration"),
    (["purge", "--older-than", "2999-01-01"], "is in the future and would purge every file"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                              quarantine_dir: Path, argv: list[str],
                                              message: str) -> None:
    """Bad input: exit status 2 and one ``ragtrail: error:`` line, never a traceback."""
    status, out, err = _run(capsys, "quarantine", *argv, "--dir", str(quarantine_dir))
    assert (status, out) == (2, "")
    assert err.startswith("ragtrail: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_a_future_purge_time_removes_nothing(capsys: pytest.CaptureFixture[str],
                                              quarantined: list[str],
                                              quarantine_dir: Path) -> None:
    """A cutoff in the future (a mistyped year) would match every file: refused instead."""
    status, _, _ = _run(capsys, "quarantine", "purge", "--older-than", "2999-01-01", "--dir",
                        str(quarantine_dir))
    assert status == 2
    status, out, _ = _run(capsys, "quarantine", "list", "--json", "--dir", str(quarantine_dir))
    assert (status, sorted(entry["sha256"] for entry in json.loads(out))) == (
        0, sorted(quarantined))


def test_release_with_yes(capsys: pytest.CaptureFixture[str], quarantined: list[str],
                          quarantine_dir: Path, tmp_path: Path) -> None:
    """``release --yes`` moves the file to the destination; a second release finds nothing."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    status, out, _ = _run(capsys, "quarantine", "release", quarantined[0][:12],
                          str(out_dir / "restored.md"), "--yes", "--dir", str(quarantine_dir))
    assert status == 0
    assert out == f"released {quarantined[0]} to {out_dir / 'restored.md'}\n"
    assert (out_dir / "restored.md").read_bytes() == b"\xff\xfe"
    status, _, err = _run(capsys, "quarantine", "release", quarantined[0][:12],
                          str(out_dir), "--yes", "--dir", str(quarantine_dir))
    assert status == 2
    assert "no quarantined file matches" in err


def test_release_refuses_to_overwrite(capsys: pytest.CaptureFixture[str],
                                      quarantined: list[str], quarantine_dir: Path,
                                      tmp_path: Path) -> None:
    """An existing destination file: exit 2, nothing changed."""
    existing = tmp_path / "keep.md"
    existing.write_text("keep")
    status, _, err = _run(capsys, "quarantine", "release", quarantined[0], str(existing),
                          "--yes", "--dir", str(quarantine_dir))
    assert status == 2
    assert "already exists" in err
    assert existing.read_text() == "keep"


def test_release_refused_while_another_release_holds_the_temporary_file(
        capsys: pytest.CaptureFixture[str], quarantined: list[str], quarantine_dir: Path,
        other_filesystem: Path) -> None:
    """A release to another filesystem while one to the same destination still copies: exit
    2 naming the running release's temporary file, which stays; nothing is released."""
    destination = other_filesystem / "restored.md"
    staged = staging_path(destination)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status, out, err = _run(capsys, "quarantine", "release", quarantined[0],
                                str(destination), "--yes", "--dir", str(quarantine_dir))
    finally:
        os.close(fd)
    assert (status, out) == (2, "")
    assert err.startswith("ragtrail: error: another release to the same destination is running")
    assert err.endswith(f": {staged}\n")
    assert os.listdir(other_filesystem) == [staged.name]
    assert (quarantine_dir / quarantined[0]).exists()


def test_purge_older_than(capsys: pytest.CaptureFixture[str], quarantined: list[str],
                          quarantine_dir: Path) -> None:
    """``purge --older-than 7d`` removes the 10-day-old file only; ``--all`` the rest."""
    status, out, _ = _run(capsys, "quarantine", "purge", "--older-than", "7d", "--dir",
                          str(quarantine_dir))
    assert (status, out) == (0, "purged 1 file\n")
    assert sorted(name for name in os.listdir(quarantine_dir) if not name.startswith(".")) == [
        quarantined[0], f"{quarantined[0]}.json"]
    status, out, _ = _run(capsys, "quarantine", "purge", "--all", "--json", "--dir",
                          str(quarantine_dir))
    assert [e["sha256"] for e in json.loads(out)] == [quarantined[0]]
    assert sorted(os.listdir(quarantine_dir)) == [".ledger", ".lock"]


# -- scan -------------------------------------------------------------------------------------

def test_scan_table_and_failing_exit(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Debug in production: listed in an aligned table, exit 1 at the default threshold."""
    monkeypatch.setenv("RAGTRAIL_ENVIRONMENT", "production")
    monkeypatch.setenv("RAGTRAIL_DEBUG", "true")
    status, out, _ = _run(capsys, "scan")
    assert status == 1
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SEVERITY", "ID", "FINDING"]
    row = next(line for line in lines if "debug-in-production" in line)
    assert row.startswith("high ")
    assert row.index("debug-in-production") == lines[0].index("ID")


def test_scan_fail_on_threshold(capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--fail-on critical`` passes the same high findings with exit 0."""
    monkeypatch.setenv("RAGTRAIL_ENVIRONMENT", "production")
    monkeypatch.setenv("RAGTRAIL_DEBUG", "true")
    status, out, _ = _run(capsys, "scan", "--fail-on", "critical")
    assert status == 0
    assert "debug-in-production" in out


def test_scan_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--json`` prints every finding with id, severity, title, detail and remedy."""
    monkeypatch.setenv("RAGTRAIL_REDACTION_ENABLED", "false")
    status, out, _ = _run(capsys, "scan", "--json", "--fail-on", "high")
    findings = {f["id"]: f for f in json.loads(out)}
    assert findings["redaction-disabled"]["severity"] == "low"
    assert set(findings["redaction-disabled"]) == {"id", "severity", "title", "detail", "remedy"}
    assert status == 0  # nothing high: redaction is low outside production, root medium


def test_scan_db_flag_checks_that_store(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    """``--db PATH`` checks that store's file and directory."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    status, out, _ = _run(capsys, "scan", "--json", "--db", str(shared / "audit.db"))
    assert status == 1
    assert "store-directory-writable" in {f["id"] for f in json.loads(out)}


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["scan", "--fail-on", "severe"], {}, "severity must be one of"),
    (["scan"], {"RAGTRAIL_DEBUG": "maybe"}, "RAGTRAIL_DEBUG='maybe' is not valid"),
])
def test_scan_usage_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                           argv: list[str], env: dict[str, str], message: str) -> None:
    """A bad flag or a bad setting: exit 2 with one line."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    status, out, err = _run(capsys, *argv)
    assert (status, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1
