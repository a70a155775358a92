"""A release's copy out: the destination's name only ever holds the complete file; a killed
release's temporary file is removed only when it provably is one (the SIGKILL itself is in
``test_quarantine``)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
from security_corpus import ELF, PDF

from ragtrail.security import Quarantine, QuarantineError
from ragtrail.security import _copy_out as copy_out_module
from ragtrail.security._copy_out import copy_out, staging_path
from ragtrail.security._files import ChangedFileError

SHA256 = hashlib.sha256(ELF).hexdigest()


@pytest.fixture
def quarantine(tmp_path: Path) -> Quarantine:
    """One quarantined file (``ELF``) on ``tmp_path``'s filesystem."""
    upload = tmp_path / "upload.pdf"
    upload.write_bytes(ELF)
    kept = Quarantine(tmp_path / "quarantine")
    kept.add(upload, SHA256, {"reason": "test"})
    return kept


def test_a_destination_taken_during_the_copy_is_kept_and_the_temporary_file_goes(
        monkeypatch: pytest.MonkeyPatch, quarantine: Quarantine, other_filesystem: Path) -> None:
    """Another writer creates the destination while the copy runs: the copy is never published
    over it, the temporary file is removed, and the file stays quarantined."""
    destination = other_filesystem / "report.pdf"
    real = copy_out_module.copy_judged

    def copy_then_take(source: Path, out: BinaryIO, judged: os.stat_result | None) -> None:
        real(source, out, judged)
        destination.write_bytes(PDF)

    monkeypatch.setattr(copy_out_module, "copy_judged", copy_then_take)
    with pytest.raises(QuarantineError, match="already exists"):
        quarantine.release(SHA256, destination)
    assert os.listdir(other_filesystem) == ["report.pdf"]
    assert destination.read_bytes() == PDF
    assert [entry.sha256 for entry in quarantine.entries()] == [SHA256]


def test_a_quarantined_file_replaced_before_the_copy_is_not_released(
        tmp_path: Path, other_filesystem: Path) -> None:
    """The file at the quarantine's path is another inode than the judged one: nothing is
    published and no temporary file stays."""
    source = tmp_path / SHA256
    source.write_bytes(ELF)
    judged = os.stat(source)
    os.rename(source, tmp_path / "moved-away")  # the judged inode stays alive
    source.write_bytes(PDF)
    with pytest.raises(ChangedFileError):
        copy_out(source, other_filesystem / "report.pdf", judged)
    assert os.listdir(other_filesystem) == []


def _symlink(path: Path) -> None:
    path.symlink_to(path.with_name("elsewhere"))


def _readable(path: Path) -> None:
    path.write_bytes(b"the user's own file")
    path.chmod(0o640)


def _directory(path: Path) -> None:
    path.mkdir()


def _fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


@pytest.mark.parametrize("occupy", [_symlink, _readable, _directory, _fifo])
def test_what_ragtrail_did_not_leave_at_the_temporary_name_stays(
        quarantine: Quarantine, other_filesystem: Path, occupy: Callable[[Path], None]) -> None:
    """At the temporary file's name, anything not provably a killed release's file (a symlink,
    a file with group permissions, a directory, a FIFO) is left as it is; the release is
    refused naming it, and the file stays quarantined."""
    destination = other_filesystem / "report.pdf"
    staged = staging_path(destination)
    occupy(staged)
    before = staged.lstat()
    with pytest.raises(OSError, match="cannot be shown to be stale") as refused:
        quarantine.release(SHA256, destination)
    assert (refused.value.errno, refused.value.filename) == (errno.EBUSY, str(staged))
    after = staged.lstat()
    assert (after.st_ino, after.st_mode, after.st_size) == (
        before.st_ino, before.st_mode, before.st_size)
    assert sorted(os.listdir(other_filesystem)) == [staged.name]
    assert [entry.sha256 for entry in quarantine.entries()] == [SHA256]


def test_the_temporary_file_of_a_running_release_stays(
        quarantine: Quarantine, other_filesystem: Path) -> None:
    """A second release to the same destination while the first still copies (which holds
    ``flock`` on its temporary file) is refused and leaves the first one's file alone."""
    destination = other_filesystem / "report.pdf"
    staged = staging_path(destination)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"half a copy")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OSError, match="another release to the same destination") as refused:
            quarantine.release(SHA256, destination)
    finally:
        os.close(fd)
    assert refused.value.errno == errno.EBUSY
    assert staged.read_bytes() == b"half a copy"
    assert os.listdir(other_filesystem) == [staged.name]


def test_a_temporary_file_removed_before_it_was_locked_is_not_published(
        monkeypatch: pytest.MonkeyPatch, quarantine: Quarantine, other_filesystem: Path) -> None:
    """Between creating its temporary file and locking it, a release can lose it to another
    release to the same destination, which found it unlocked, removed it as stale and created
    its own: the first now refuses, rather than publish the second one's partial copy."""
    destination = other_filesystem / "report.pdf"
    staged = staging_path(destination)
    real = copy_out_module._lock

    def taken_before_the_lock(fd: int) -> bool:
        staged.unlink()
        staged.write_bytes(b"half of the other release's copy")
        return real(fd)

    monkeypatch.setattr(copy_out_module, "_lock", taken_before_the_lock)
    with pytest.raises(OSError, match="another release to the same destination") as refused:
        quarantine.release(SHA256, destination)
    assert refused.value.errno == errno.EBUSY
    assert os.listdir(other_filesystem) == [staged.name]
    assert staged.read_bytes() == b"half of the other release's copy"
    assert [entry.sha256 for entry in quarantine.entries()] == [SHA256]


def test_a_release_to_another_filesystem_leaves_only_the_file(
        quarantine: Quarantine, other_filesystem: Path) -> None:
    """The copy arrives whole under the destination's name, mode 0600, and its temporary
    file is gone."""
    destination = quarantine.release(SHA256, other_filesystem / "report.pdf")
    assert os.listdir(other_filesystem) == ["report.pdf"]
    assert (destination.read_bytes(), stat.S_IMODE(destination.stat().st_mode)) == (ELF, 0o600)
    assert quarantine.entries() == []


def test_publishing_without_hard_links_never_replaces(tmp_path: Path) -> None:
    """Where a filesystem has no hard links (vfat), the copy takes its name by a claim and a
    rename that fail on an existing file or symlink, both left as they were, and succeed
    otherwise."""
    rename = copy_out_module._claim_and_replace
    staged = tmp_path / ".staged"
    staged.write_bytes(ELF)
    taken = tmp_path / "taken.pdf"
    taken.write_bytes(PDF)
    dangling = tmp_path / "dangling.pdf"
    dangling.symlink_to(tmp_path / "nowhere")
    for existing in (taken, dangling):
        with pytest.raises(FileExistsError):
            rename(staged, existing)
    assert (taken.read_bytes(), os.readlink(dangling)) == (PDF, str(tmp_path / "nowhere"))
    rename(staged, tmp_path / "free.pdf")
    assert (tmp_path / "free.pdf").read_bytes() == ELF
    assert not staged.exists()
