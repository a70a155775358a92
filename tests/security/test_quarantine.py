"""Quarantine layout, modes and sidecars; the events rejections record; ``verify``."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from security_corpus import ELF, PDF, Corpus

from ragtrail._records import SecurityEvent, Severity
from ragtrail.instrument import Monitor, correlation_scope
from ragtrail.security import FileValidator, Quarantine, QuarantineError
from ragtrail.security import _files as files
from ragtrail.security import _quarantine_bound as bound
from ragtrail.security._copy_out import staging_path
from ragtrail.security._files import ChangedFileError, move_file

Events = Callable[..., list[SecurityEvent]]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _listed(directory: Path) -> list[str]:
    """The directory's names, without the hidden ``.lock`` and ``.ledger`` of the bounds."""
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


@pytest.fixture
def validator(monitor: Monitor) -> FileValidator:
    """Quarantine directory from the monitor's settings (the default)."""
    return FileValidator(monitor=monitor)


def test_rejected_file_is_moved_in_under_its_hash(validator: FileValidator, corpus: Corpus,
                                                  quarantine_dir: Path) -> None:
    """The file leaves the upload area and lands as <sha256>, mode 0600, in a 0700 directory."""
    path = corpus.write("invoice.pdf", ELF)
    os.chmod(path, 0o755)  # executable when it arrived: must not stay so
    old_umask = os.umask(0o000)  # the modes must not depend on the process umask
    try:
        result = validator.validate(path)
    finally:
        os.umask(old_umask)
    assert not path.exists()
    assert result.quarantine_path == quarantine_dir / result.sha256
    assert result.quarantine_path.read_bytes() == ELF
    assert _mode(quarantine_dir) == 0o700
    assert _mode(result.quarantine_path) == 0o600
    sidecar = quarantine_dir / f"{result.sha256}.json"
    assert _mode(sidecar) == 0o600
    assert _listed(quarantine_dir) == [result.sha256, f"{result.sha256}.json"]


def test_existing_loose_directory_is_tightened(validator: FileValidator, corpus: Corpus,
                                               quarantine_dir: Path) -> None:
    """A quarantine directory someone created 0777 is set back to 0700 on first use."""
    quarantine_dir.mkdir()
    os.chmod(quarantine_dir, 0o777)
    validator.validate(corpus.write("a.txt", b"\xff\xfe"))
    assert _mode(quarantine_dir) == 0o700


def test_sidecar_says_why_with_the_name_escaped(validator: FileValidator, corpus: Corpus,
                                                quarantine_dir: Path) -> None:
    """The JSON sidecar is ASCII and holds reason, hash, escaped name, types, size, ID, time."""
    path = corpus.write("upload.part", ELF)
    hostile = "inv\u202eoice\x1b[2J\r\n.pdf"
    before = datetime.now(timezone.utc)
    with correlation_scope("req-1234567890"):
        result = validator.validate(path, filename=hostile)
    raw = (quarantine_dir / f"{result.sha256}.json").read_bytes()
    assert raw.isascii()
    sidecar = json.loads(raw)
    assert sidecar == {
        "reason": "executable content (elf-executable) disguised as pdf",
        "event_type": "malicious_file_upload",
        "sha256": result.sha256,
        "original_name": "inv\\u202eoice\\x1b[2J\\x0d\\x0a.pdf",
        "sanitised_name": "inv_oice_[2J__.pdf",
        "size": len(ELF),
        "claimed_type": "pdf",
        "detected_type": "elf-executable",
        "correlation_id": "req-1234567890",
        "time": sidecar["time"],
        "count": 1,
    }
    assert sidecar["time"].endswith("Z")
    assert before <= _utc(sidecar["time"]) <= datetime.now(timezone.utc)


def _utc(text: str) -> datetime:
    """A sidecar's ``...Z`` time (``datetime.fromisoformat`` takes ``Z`` from Python 3.11)."""
    return datetime.fromisoformat(text.removesuffix("Z") + "+00:00")


def test_same_content_is_stored_once_and_counted(validator: FileValidator, corpus: Corpus,
                                                 quarantine_dir: Path) -> None:
    """A second copy of the same bytes is removed and the sidecar's count grows."""
    first = validator.validate(corpus.write("one.pdf", ELF))
    second = validator.validate(corpus.write("two.pdf", ELF))
    assert first.quarantine_path == second.quarantine_path
    assert not (corpus.directory / "two.pdf").exists()
    sidecar = json.loads((quarantine_dir / f"{first.sha256}.json").read_text())
    assert (sidecar["count"], sidecar["sanitised_name"]) == (2, "one.pdf")
    assert sidecar["last_time"].endswith("Z")
    assert _utc(sidecar["time"]) <= _utc(sidecar["last_time"])


def test_revalidating_a_quarantined_file_keeps_it(validator: FileValidator, corpus: Corpus,
                                                  quarantine_dir: Path) -> None:
    """Validating the quarantined copy itself must not delete the only copy."""
    first = validator.validate(corpus.write("one.pdf", ELF))
    assert first.quarantine_path is not None
    again = validator.validate(first.quarantine_path, filename="one.pdf")
    assert again.quarantine_path == first.quarantine_path
    assert first.quarantine_path.read_bytes() == ELF


def test_without_a_quarantine_rejected_files_stay(monitor: Monitor, corpus: Corpus,
                                                  quarantine_dir: Path) -> None:
    """``quarantine_dir=None`` rejects without moving anything."""
    path = corpus.write("invoice.pdf", ELF)
    result = FileValidator(monitor=monitor, quarantine_dir=None).validate(path)
    assert (result.accepted, result.quarantine_path) == (False, None)
    assert path.read_bytes() == ELF
    assert not quarantine_dir.exists()


def test_quarantine_failure_still_rejects(monitor: Monitor, corpus: Corpus, tmp_path: Path) -> None:
    """If the quarantine cannot be created the file is still rejected (and left in place)."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    validator = FileValidator(monitor=monitor, quarantine_dir=blocker / "q")
    path = corpus.write("invoice.pdf", ELF)
    result = validator.validate(path)
    assert (result.accepted, result.quarantine_path) == (False, None)
    assert path.exists()


# -- events in the store ----------------------------------------------------------------------

def test_malicious_upload_records_a_high_event(validator: FileValidator, corpus: Corpus,
                                               stored_events: Events) -> None:
    """A disguised executable becomes one high malicious_file_upload row with the hash."""
    with correlation_scope("corr-abcdef123456"):
        result = validator.validate(corpus.write("invoice.pdf", ELF), filename="invoice.pdf")
    [event] = stored_events("malicious_file_upload")
    assert event.severity == Severity.HIGH
    assert event.source == "file_validator"
    assert event.correlation_id == "corr-abcdef123456"
    assert event.description == ("rejected file invoice.pdf: executable content "
                                 "(elf-executable) disguised as pdf")
    assert event.metadata["sha256"] == result.sha256
    assert event.metadata["detected_type"] == "elf-executable"
    assert event.metadata["quarantine_path"] == str(result.quarantine_path)


def test_invalid_upload_records_an_input_validation_event(validator: FileValidator,
                                                          corpus: Corpus,
                                                          stored_events: Events) -> None:
    """Bad encoding is input_validation_fail (high), and nothing malicious is recorded."""
    validator.validate(corpus.write("latin1.txt", b"caf\xe9"))
    [event] = stored_events("input_validation_fail")
    assert event.severity == Severity.HIGH
    assert "invalid UTF-8" in event.description
    assert stored_events("malicious_file_upload") == []


def test_accepted_file_records_nothing(validator: FileValidator, corpus: Corpus,
                                       stored_events: Events) -> None:
    """A good document leaves no security event."""
    assert validator.validate(corpus.pdf()).accepted
    assert stored_events() == []


def test_hostile_name_is_escaped_in_the_store(validator: FileValidator, corpus: Corpus,
                                              stored_events: Events) -> None:
    """Control characters of the client's name never reach the store raw."""
    validator.validate(corpus.write("x", ELF), filename="evil\r\nFAKE LOG LINE\x1b[0m.pdf")
    [event] = stored_events("malicious_file_upload")
    stored = json.dumps(event.metadata, ensure_ascii=False) + event.description
    assert not any(ch in stored for ch in "\r\n\x1b")


# -- verify -----------------------------------------------------------------------------------

def test_verify_accepts_an_unchanged_file(validator: FileValidator, corpus: Corpus,
                                          stored_events: Events) -> None:
    """The sha256 recorded at acceptance still matches: True, no event."""
    path = corpus.pdf()
    result = validator.validate(path)
    assert validator.verify(path, result.sha256.upper())
    assert stored_events() == []


def test_verify_detects_tampering(validator: FileValidator, corpus: Corpus,
                                  stored_events: Events) -> None:
    """One flipped byte after acceptance: False and a high file_integrity_fail event."""
    path = corpus.pdf()
    result = validator.validate(path)
    data = bytearray(path.read_bytes())
    data[20] ^= 0x01
    path.write_bytes(bytes(data))
    assert not validator.verify(path, result.sha256)
    [event] = stored_events("file_integrity_fail")
    assert event.severity == Severity.HIGH
    assert event.metadata["expected_sha256"] == result.sha256
    assert event.metadata["actual_sha256"] != result.sha256
    assert "changed since it was accepted" in event.description


def test_verify_detects_a_missing_file(validator: FileValidator, corpus: Corpus,
                                       stored_events: Events) -> None:
    """A deleted file fails verification with actual_sha256 None."""
    path = corpus.pdf()
    digest = validator.validate(path).sha256
    path.unlink()
    assert not validator.verify(path, digest)
    [event] = stored_events("file_integrity_fail")
    assert event.metadata["actual_sha256"] is None


@pytest.mark.parametrize("replacement", ["fifo", "directory", "symlink"])
def test_verify_refuses_what_is_no_longer_the_file(validator: FileValidator, corpus: Corpus,
                                                   stored_events: Events, replacement: str,
                                                   tmp_path: Path) -> None:
    """The accepted file replaced by a FIFO (which hung verify() for good), a directory (which
    raised without an event) or a symlink to the same bytes (which passed): False and a
    file_integrity_fail event each, at once."""
    path = corpus.pdf()
    digest = validator.validate(path).sha256
    copy = tmp_path / "elsewhere.pdf"
    copy.write_bytes(path.read_bytes())
    path.unlink()
    if replacement == "fifo":
        os.mkfifo(path)
    elif replacement == "directory":
        path.mkdir()
    else:
        path.symlink_to(copy)
    assert not validator.verify(path, digest)
    [event] = stored_events("file_integrity_fail")
    assert event.metadata["actual_sha256"] is None
    assert str(path) in event.description


def test_verify_rejects_a_malformed_hash(validator: FileValidator, corpus: Corpus) -> None:
    """A hash that is not 64 hex characters is a programming error."""
    with pytest.raises(ValueError, match="64 hex"):
        validator.verify(corpus.pdf(), "abc")


# -- managing the quarantine ------------------------------------------------------------------

@pytest.fixture
def filled(monitor: Monitor, corpus: Corpus, quarantine_dir: Path) -> list[str]:
    """Two quarantined files; returns their hashes, newest first."""
    validator = FileValidator(monitor=monitor)
    older = validator.validate(corpus.write("old.pdf", ELF)).sha256
    newer = validator.validate(corpus.write("new.md", b"\xff")).sha256
    return [newer, older]


def test_entries_newest_first(filled: list[str], quarantine_dir: Path) -> None:
    """``entries()`` lists every file with its sidecar details, newest first."""
    entries = Quarantine(quarantine_dir).entries()
    assert [e.sha256 for e in entries] == filled
    assert entries[1].original_name == "old.pdf"
    assert entries[1].reason == "executable content (elf-executable) disguised as pdf"


def test_entry_without_sidecar_is_still_listed(quarantine_dir: Path) -> None:
    """A file whose sidecar is lost shows up with an unknown reason and its mtime."""
    quarantine_dir.mkdir()
    (quarantine_dir / ("a" * 64)).write_bytes(b"x")
    (quarantine_dir / "unrelated.txt").write_bytes(b"y")
    [entry] = Quarantine(quarantine_dir).entries()
    assert (entry.sha256, entry.reason, entry.size) == ("a" * 64, "unknown (no sidecar)", 1)


def test_reading_a_missing_quarantine_creates_nothing(tmp_path: Path) -> None:
    """Listing a quarantine that does not exist is empty and does not create it."""
    assert Quarantine(tmp_path / "nowhere").entries() == []
    assert not (tmp_path / "nowhere").exists()


def test_get_by_prefix(filled: list[str], quarantine_dir: Path) -> None:
    """An 8+ character prefix finds an entry; short, unknown or non-hex keys are errors."""
    quarantine = Quarantine(quarantine_dir)
    assert quarantine.get(filled[0][:8].upper()).sha256 == filled[0]
    with pytest.raises(QuarantineError, match="at least 8"):
        quarantine.get(filled[0][:7])
    with pytest.raises(QuarantineError, match="no quarantined file"):
        quarantine.get("0" * 64 if not filled[0].startswith("0") else "1" * 64)
    with pytest.raises(QuarantineError, match="hex"):
        quarantine.get("../../../etc")


def test_release_moves_the_file_out(filled: list[str], quarantine_dir: Path,
                                    tmp_path: Path) -> None:
    """Release into a directory uses the sanitised name, drops the sidecar, keeps mode 0600."""
    out = tmp_path / "released"
    out.mkdir()
    target = Quarantine(quarantine_dir).release(filled[1], out)
    assert target == out / "old.pdf"
    assert target.read_bytes() == ELF
    assert _mode(target) == 0o600
    assert not (quarantine_dir / filled[1]).exists()
    assert not (quarantine_dir / f"{filled[1]}.json").exists()


def test_release_never_overwrites(filled: list[str], quarantine_dir: Path,
                                  tmp_path: Path) -> None:
    """An existing destination is an error and both files stay as they were."""
    existing = tmp_path / "keep.pdf"
    existing.write_bytes(PDF)
    with pytest.raises(QuarantineError, match="already exists"):
        Quarantine(quarantine_dir).release(filled[1], existing)
    assert existing.read_bytes() == PDF
    assert (quarantine_dir / filled[1]).exists()


def test_purge_by_age(filled: list[str], quarantine_dir: Path) -> None:
    """Entries quarantined before the cutoff go; newer ones stay."""
    quarantine = Quarantine(quarantine_dir)
    sidecar = quarantine_dir / f"{filled[1]}.json"
    record = json.loads(sidecar.read_text())
    record["time"] = (datetime.now(timezone.utc) - timedelta(days=8)).isoformat()
    sidecar.write_text(json.dumps(record))
    removed = quarantine.purge(older_than=datetime.now(timezone.utc) - timedelta(days=7))
    assert [e.sha256 for e in removed] == [filled[1]]
    assert [e.sha256 for e in quarantine.entries()] == [filled[0]]
    assert _listed(quarantine_dir) == [filled[0], f"{filled[0]}.json"]
    assert [e.sha256 for e in quarantine.purge()] == [filled[0]]
    assert _listed(quarantine_dir) == []


def test_purge_keeps_a_file_rejected_again_since(filled: list[str], quarantine_dir: Path,
                                                  validator: FileValidator,
                                                  corpus: Corpus) -> None:
    """First quarantined 40 days ago, sent again today: ``--older-than 30d`` keeps today's
    evidence (purge went by the first time and deleted it)."""
    quarantine = Quarantine(quarantine_dir)
    sidecar = quarantine_dir / f"{filled[1]}.json"
    record = json.loads(sidecar.read_text())
    record["time"] = (datetime.now(timezone.utc) - timedelta(days=40)).isoformat()
    sidecar.write_text(json.dumps(record))
    again = quarantine.get(filled[1])
    corpus.write("again.pdf", again.path.read_bytes())
    assert validator.validate(corpus.directory / "again.pdf").sha256 == filled[1]
    assert quarantine.purge(older_than=datetime.now(timezone.utc) - timedelta(days=30)) == []
    assert quarantine.get(filled[1]).details["count"] == 2


@pytest.mark.parametrize("form", ["Z", "+00:00", ""], ids=["z", "offset", "no-zone"])
def test_sidecar_times_load_in_every_form_ragtrail_wrote(
        filled: list[str], quarantine_dir: Path, form: str) -> None:
    """Sidecars of older ragtrail end their times in ``+00:00``, this one's in ``Z`` (which
    Python 3.10's ``fromisoformat`` refused): both, and a time without a zone (UTC), load as
    the same times, purge goes by them, and ``as_dict()`` gives them back with ``Z``."""
    quarantine = Quarantine(quarantine_dir)
    first = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
    last = datetime(2024, 6, 1, 8, 30, 0, tzinfo=timezone.utc)
    sidecar = quarantine_dir / f"{filled[1]}.json"
    record = json.loads(sidecar.read_text())
    record["time"] = first.isoformat().replace("+00:00", form)
    record["last_time"] = last.isoformat().replace("+00:00", form)
    sidecar.write_text(json.dumps(record))

    entry = quarantine.get(filled[1])
    assert (entry.time, entry.last_seen) == (first, last)
    shown = entry.as_dict()
    assert (shown["time"], shown["last_time"]) == ("2024-05-01T12:00:00.250000Z",
                                                   "2024-06-01T08:30:00Z")
    assert quarantine.purge(older_than=last) == []
    removed = quarantine.purge(older_than=last + timedelta(seconds=1))
    assert [e.sha256 for e in removed] == [filled[1]]


# -- moving files across filesystems ----------------------------------------------------------

def test_a_copy_across_filesystems_never_follows_a_symlink(
        tmp_path: Path, other_filesystem: Path) -> None:
    """A symlink swapped in after the file was judged: the copy refuses it (the link target's
    bytes were kept under the judged file's hash) and leaves no partial file or placeholder
    behind (a release's empty placeholder blocked the retry)."""
    secret = tmp_path / "shadow"
    secret.write_text("root:SECRET-HASH\n")
    link = tmp_path / "upload.pdf"
    link.symlink_to(secret)
    with pytest.raises(OSError, match="symbolic links") as raised:
        move_file(link, other_filesystem / ("a" * 64))
    assert raised.value.errno == errno.ELOOP
    assert list(other_filesystem.iterdir()) == []
    assert link.is_symlink()


def _large_file(path: Path, mib: int) -> str:
    """``mib`` MiB of random blocks at ``path``; their sha256."""
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with path.open("wb") as out:
        for number in range(mib):
            chunk = number.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _large_file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _wait_for_partial_copy(directory: Path, child: subprocess.Popen[bytes]) -> Path:
    """The ``.part`` file a copy into ``directory`` writes, once it holds some bytes."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        partial = [path for path in directory.iterdir() if path.name.endswith(".part")]
        if partial and partial[0].stat().st_size > 0:
            return partial[0]
        assert child.poll() is None, "the release ended before its copy was seen"
        time.sleep(0.001)
    raise AssertionError("the release never started copying")


def test_a_release_to_another_filesystem_copies_without_holding_the_lock(
        monitor: Monitor, corpus: Corpus, quarantine_dir: Path, other_filesystem: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``ragtrail quarantine release`` to another filesystem held the quarantine's lock for
    its whole copy: a rejection meanwhile waited, and after 10 s was left unquarantined. The
    release is frozen (SIGSTOP) half-way through copying 256 MiB; a rejection still gets the
    lock at once, and the release then completes."""
    monkeypatch.setattr(bound, "_LOCK_TIMEOUT", 5.0)  # a failure shows in 5 s, not 10
    large = corpus.directory / "dump.bin"
    sha256 = _large_file(large, 256)
    Quarantine(quarantine_dir).add(large, sha256, {"reason": "test"})
    released = other_filesystem / "dump.bin"
    child = subprocess.Popen([sys.executable, "-m", "ragtrail", "quarantine", "release",
                              "--dir", str(quarantine_dir), sha256, str(released), "--yes"])
    try:
        partial = _wait_for_partial_copy(other_filesystem, child)
        os.kill(child.pid, signal.SIGSTOP)
        assert partial.exists(), "the copy ended before it could be paused"
        started = time.monotonic()
        result = FileValidator(monitor=monitor).validate(corpus.write("invoice.pdf", ELF))
        waited = time.monotonic() - started
    finally:
        os.kill(child.pid, signal.SIGCONT)
    assert child.wait(timeout=120) == 0
    assert result.quarantine_path == quarantine_dir / hashlib.sha256(ELF).hexdigest()
    assert waited < 5.0
    assert _large_file_digest(released) == sha256
    assert [entry.sha256 for entry in Quarantine(quarantine_dir).entries()] == [
        hashlib.sha256(ELF).hexdigest()]
    usage = Quarantine(quarantine_dir).usage()
    assert usage is not None
    assert (usage.files, usage.bytes) == (1, len(ELF))


def test_a_release_that_cannot_copy_puts_the_file_back(
        filled: list[str], quarantine_dir: Path, tmp_path: Path) -> None:
    """A release that cannot copy out (the destination's directory went away) leaves file
    and sidecar where they were, counted, and nothing else in the quarantine."""
    quarantine = Quarantine(quarantine_dir)
    before = quarantine.get(filled[1])
    destination = tmp_path / "gone" / "old.pdf"
    with pytest.raises(FileNotFoundError):
        quarantine.release(filled[1], destination)
    assert quarantine.get(filled[1]) == before
    assert sorted(name for name in os.listdir(quarantine_dir) if name.startswith(".")) == [
        ".ledger", ".lock"]
    usage = quarantine.usage()
    assert usage is not None
    assert usage.files == 2


def test_a_release_killed_while_copying_leaves_the_file_quarantined_and_the_retry_succeeds(
        corpus: Corpus, quarantine_dir: Path, other_filesystem: Path) -> None:
    """A release killed half-way through its copy (SIGKILL here; a dropped ``kubectl exec``
    sends SIGHUP, an evicted pod SIGTERM, neither of which runs ``finally``) leaves the file
    where it was, listed with its details and counted, and the destination's name free: the
    copy went to ragtrail's hidden temporary file (it went to the destination's own name,
    whose partial or empty file looked released and made the retry fail with "already
    exists"). The retry removes that stale file and releases the whole file."""
    large = corpus.directory / "dump.bin"
    sha256 = _large_file(large, 128)
    quarantine = Quarantine(quarantine_dir)
    quarantine.add(large, sha256, {"reason": "test"})
    destination = other_filesystem / "dump.bin"
    child = subprocess.Popen([sys.executable, "-m", "ragtrail", "quarantine", "release",
                              "--dir", str(quarantine_dir), sha256, str(destination), "--yes"])
    try:
        partial = _wait_for_partial_copy(other_filesystem, child)
        os.kill(child.pid, signal.SIGSTOP)  # mid-copy for sure, then killed there
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert [(e.sha256, e.reason) for e in quarantine.entries()] == [(sha256, "test")]
    usage = quarantine.usage()
    assert usage is not None
    assert (usage.files, usage.bytes) == (1, 128 * 1024 * 1024)
    assert os.listdir(other_filesystem) == [partial.name]
    assert partial == staging_path(destination)
    assert 0 < partial.stat().st_size < 128 * 1024 * 1024

    assert quarantine.release(sha256, destination) == destination
    assert os.listdir(other_filesystem) == ["dump.bin"]
    assert (_large_file_digest(destination), _mode(destination)) == (sha256, 0o600)
    assert quarantine.entries() == []


# -- what is quarantined is what was judged ---------------------------------------------------

def test_a_hard_linked_file_is_copied_in_and_its_other_names_keep_their_mode(
        validator: FileValidator, corpus: Corpus) -> None:
    """Quarantining a hard link renamed the shared inode in and chmodded it: another name's
    0644 file became 0600, and the "inert" quarantined copy stayed writable through it."""
    shared = corpus.write("config.bin", ELF)
    os.chmod(shared, 0o644)
    link = corpus.directory / "upload.pdf"
    os.link(shared, link)
    result = validator.validate(link)
    assert result.quarantine_path is not None
    assert not link.exists()
    assert (_mode(shared), shared.read_bytes()) == (0o644, ELF)
    assert result.quarantine_path.stat().st_ino != shared.stat().st_ino
    assert (_mode(result.quarantine_path), result.quarantine_path.read_bytes()) == (0o600, ELF)
    shared.write_bytes(b"rewritten through the other name")
    assert result.quarantine_path.read_bytes() == ELF


class _SwappingQuarantine(Quarantine):
    """A real quarantine whose ``add`` first replaces the judged file with a symlink, as a
    writer of a shared upload directory could while the file was being judged."""

    def __init__(self, directory: Path, secret: Path) -> None:
        super().__init__(directory)
        self.secret = secret

    def _keep(self, source: Path, sha256: str, details: Any,
              judged: os.stat_result | None) -> Any:
        os.unlink(source)
        os.symlink(self.secret, source)
        return super()._keep(source, sha256, details, judged)


class _ValidatorSwappedUnder(FileValidator):
    def __init__(self, monitor: Monitor, quarantine: Quarantine) -> None:
        super().__init__(monitor=monitor)
        self._swapping = quarantine

    @property
    def quarantine(self) -> Quarantine:
        return self._swapping


@pytest.mark.parametrize("filesystem", ["same", "other"])
def test_a_file_swapped_while_judged_is_left_where_it_is(
        monitor: Monitor, corpus: Corpus, tmp_path: Path, filesystem: str,
        request: pytest.FixtureRequest, stored_events: Events) -> None:
    """On the same filesystem the swapped-in symlink was renamed into the quarantine (no
    sidecar, `quarantine list` showed a link to the secret); nothing moves now, and the event
    says why the file is not in the quarantine."""
    secret = tmp_path / "shadow"
    secret.write_text("root:SECRET-HASH\n")
    directory = (request.getfixturevalue("other_filesystem") if filesystem == "other"
                 else tmp_path / "quarantine")
    quarantine = _SwappingQuarantine(directory, secret)
    path = corpus.write("invoice.pdf", ELF)
    result = _ValidatorSwappedUnder(monitor, quarantine).validate(path)
    assert (result.accepted, result.quarantine_path) == (False, None)
    assert path.is_symlink()  # left alone
    assert [name for name in os.listdir(directory) if not name.startswith(".")] == []
    [event] = stored_events("malicious_file_upload")
    assert event.metadata["quarantine_path"] is None
    assert "another file than the one validated" in event.metadata["quarantine_error"]


def test_a_file_swapped_in_is_left_when_the_same_bytes_are_already_quarantined(
        tmp_path: Path) -> None:
    """The repeat path (the bytes judged are quarantined already) deleted whatever was at the
    path by then, the owner's new file too."""
    quarantine = Quarantine(tmp_path / "quarantine")
    first = tmp_path / "first.pdf"
    first.write_bytes(ELF)
    digest = hashlib.sha256(ELF).hexdigest()
    quarantine.add(first, digest, {"reason": "first"}, judged=os.stat(first))
    path = tmp_path / "report.pdf"
    path.write_bytes(ELF)
    judged = os.stat(path)  # the validator's fstat of what it hashed
    path.rename(tmp_path / "moved-away.pdf")  # another writer swaps a new file in (the old
    path.write_bytes(PDF)                     # inode stays alive, so its number is not reused)
    with pytest.raises(ChangedFileError):
        quarantine.add(path, digest, {"reason": "second"}, judged=judged)
    assert path.read_bytes() == PDF


# -- a swap between the check and the move (found by review) -----------------------------------

def _swap_after_the_check(monkeypatch: pytest.MonkeyPatch, path: Path,
                          replacement: Callable[[Path], None]) -> None:
    """Make ``move_file``'s check that ``path`` is still the judged file pass, then swap
    another file in at once: deterministically what a writer of a shared upload directory
    can do between that check and the rename."""
    real = files.still_judged
    swapped = []

    def check_then_swap(checked: Path, judged: os.stat_result | None) -> os.stat_result:
        info = real(checked, judged)
        if checked == path and not swapped:
            swapped.append(checked)
            os.rename(path, path.with_name("moved-away.pdf"))  # the judged inode stays alive
            replacement(path)
        return info

    monkeypatch.setattr(files, "still_judged", check_then_swap)


@pytest.mark.parametrize("replacement", ["file", "symlink"])
def test_a_file_swapped_between_the_check_and_the_rename_is_put_back(
        monkeypatch: pytest.MonkeyPatch, validator: FileValidator, corpus: Corpus,
        tmp_path: Path, quarantine_dir: Path, stored_events: Events, replacement: str) -> None:
    """The swapped-in file (another upload, or a symlink to a secret) was renamed into the
    quarantine under the judged file's hash; now what arrived is checked, put back where it
    was, and nothing is quarantined."""
    secret = tmp_path / "shadow"
    secret.write_text("root:SECRET-HASH\n")
    path = corpus.write("invoice.pdf", ELF)
    if replacement == "file":
        _swap_after_the_check(monkeypatch, path, lambda p: p.write_bytes(PDF))
    else:
        _swap_after_the_check(monkeypatch, path, lambda p: p.symlink_to(secret))
    result = validator.validate(path)
    assert (result.accepted, result.quarantine_path) == (False, None)
    if replacement == "file":
        assert (path.is_symlink(), path.read_bytes()) == (False, PDF)
    else:
        assert (path.is_symlink(), os.readlink(path)) == (True, str(secret))
    assert Quarantine(quarantine_dir).entries() == []
    assert _listed(quarantine_dir) == []
    [event] = stored_events("malicious_file_upload")
    assert "another file than the one validated" in event.metadata["quarantine_error"]


def test_a_file_swapped_in_after_a_copy_across_filesystems_is_not_deleted(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, other_filesystem: Path) -> None:
    """Across filesystems the judged bytes are copied, then the source name removed: a file
    swapped in after the copy was deleted by that ``unlink``. Now it stays, and the copy is
    dropped."""
    path = tmp_path / "report.pdf"
    path.write_bytes(ELF)
    judged = os.stat(path)
    real = files._copy

    def copy_then_swap(source: Path, target: Path, checked: os.stat_result | None) -> None:
        real(source, target, checked)
        os.rename(source, tmp_path / "moved-away.pdf")
        source.write_bytes(PDF)

    monkeypatch.setattr(files, "_copy", copy_then_swap)
    with pytest.raises(ChangedFileError):
        move_file(path, other_filesystem / "incoming", judged=judged)
    assert path.read_bytes() == PDF
    assert sorted(os.listdir(other_filesystem)) == []
    assert sorted(os.listdir(tmp_path)) == sorted(["report.pdf", "moved-away.pdf"])


def test_a_swapped_file_that_cannot_be_put_back_is_kept_aside(tmp_path: Path) -> None:
    """If yet another file took the name meanwhile, the one moved by mistake is neither
    deleted nor clobbers it: it stays beside the target as ``.displaced``."""
    source = tmp_path / "upload.pdf"
    source.write_bytes(ELF)
    judged = os.stat(source)
    os.rename(source, tmp_path / "moved-away.pdf")
    source.write_bytes(PDF)  # swapped in before the move...
    target = tmp_path / "target"
    os.close(files.create_exclusive(target))
    real_link = os.link

    def taken_again(src: str, dst: str, **kwargs: Any) -> None:
        Path(dst).write_bytes(b"a third file")  # ...and the name taken again after it
        real_link(src, dst, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files.os, "link", taken_again)
        with pytest.raises(ChangedFileError):
            files._renamed(source, target, judged)
    assert source.read_bytes() == b"a third file"
    assert (tmp_path / "target.displaced").read_bytes() == PDF
    assert not target.exists()
