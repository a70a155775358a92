"""``ragtrail quarantine release`` reads its destination as the user typed it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtrail.cli import main
from ragtrail.security import FileValidator, Quarantine, QuarantineError

ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56


@pytest.fixture
def quarantine_dir(isolated_monitor: None, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """A quarantine holding one rejected file (an executable named ``invoice.pdf``); the
    working directory is ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    directory = tmp_path / "quarantine"
    upload = tmp_path / "invoice.pdf"
    upload.write_bytes(ELF)
    assert not FileValidator(quarantine_dir=directory).validate(upload).accepted
    return directory


def test_a_missing_directory_with_a_trailing_slash_is_refused(
        quarantine_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``release HASH restored/`` names a directory: when there is none, exit 2 and the file
    stays quarantined, rather than being released as a file called ``restored``."""
    entry, = Quarantine(quarantine_dir).entries()
    status = main(["quarantine", "release", entry.sha256[:12], "restored/", "--yes",
                   "--dir", str(quarantine_dir)])
    _, err = capsys.readouterr()
    assert (status, err) == (2, "ragtrail: error: restored/: no such directory (create it "
                                "first, or name a new file without the trailing /)\n")
    assert not (tmp_path / "restored").exists()
    assert [e.sha256 for e in Quarantine(quarantine_dir).entries()] == [entry.sha256]


def test_an_existing_directory_with_a_trailing_slash_gets_the_file(
        quarantine_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same command once the directory exists puts the file in it under its sanitised
    name."""
    (tmp_path / "restored").mkdir()
    entry, = Quarantine(quarantine_dir).entries()
    status = main(["quarantine", "release", entry.sha256[:12], "restored/", "--yes",
                   "--dir", str(quarantine_dir)])
    out, _ = capsys.readouterr()
    assert (status, out) == (0, f"released {entry.sha256} to restored/invoice.pdf\n")
    assert (tmp_path / "restored" / "invoice.pdf").read_bytes() == ELF


def test_the_python_api_refuses_a_missing_directory_with_a_trailing_slash(
        quarantine_dir: Path, tmp_path: Path) -> None:
    """``Quarantine.release`` reads the destination the same way the command does."""
    quarantine = Quarantine(quarantine_dir)
    entry, = quarantine.entries()
    with pytest.raises(QuarantineError, match="restored/: no such directory"):
        quarantine.release(entry.sha256, "restored/")
    assert not (tmp_path / "restored").exists()
    assert [e.sha256 for e in quarantine.entries()] == [entry.sha256]
