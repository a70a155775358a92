"""The quarantine's bounds: files and bytes, the least recently rejected evicted first, a free
space floor, every eviction and refusal counted; several workers at once."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
from forking import output_of_forked_child
from security_corpus import ELF, Corpus

import ragtrail.instrument
from ragtrail._records import SecurityEvent, Severity
from ragtrail._settings import ConfigurationError, Settings
from ragtrail.instrument import Monitor
from ragtrail.security import FileValidator, Quarantine, QuarantineFull, QuarantineUsage

Events = Callable[..., list[SecurityEvent]]


def _put(quarantine: Quarantine, directory: Path, data: bytes, *, age: float = 0.0) -> str:
    """Quarantine ``data`` as the validator does; ``age``: seconds since it was last rejected."""
    path = directory / f"upload-{hashlib.sha256(data).hexdigest()[:12]}"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    quarantine.add(path, digest, {"reason": "test"}, judged=os.stat(path))
    if age:
        when = time.time() - age
        os.utime(quarantine.directory / digest, (when, when))
    return digest


def _kept(quarantine: Quarantine) -> list[str]:
    return sorted(entry.sha256 for entry in quarantine.entries())


@pytest.fixture
def incoming(tmp_path: Path) -> Path:
    directory = tmp_path / "incoming"
    directory.mkdir()
    return directory


def test_settings_default_to_a_bound_and_zero_means_none() -> None:
    """1 GiB, 10,000 files and a 1 GiB free floor by default; 0 turns each off; a negative
    value is a configuration error naming the variable."""
    defaults = Settings()
    assert (defaults.quarantine_max_bytes, defaults.quarantine_max_files,
            defaults.quarantine_min_free_bytes) == (1024**3, 10_000, 1024**3)
    unbounded = Settings.from_env({"RAGTRAIL_QUARANTINE_MAX_BYTES": "0",
                                   "RAGTRAIL_QUARANTINE_MAX_FILES": "0",
                                   "RAGTRAIL_QUARANTINE_MIN_FREE_BYTES": "0"})
    assert (unbounded.quarantine_max_bytes, unbounded.quarantine_max_files,
            unbounded.quarantine_min_free_bytes) == (0, 0, 0)
    with pytest.raises(ConfigurationError, match="RAGTRAIL_QUARANTINE_MAX_FILES"):
        Settings.from_env({"RAGTRAIL_QUARANTINE_MAX_FILES": "-1"})


def test_past_max_files_the_least_recently_rejected_is_evicted(tmp_path: Path,
                                                               incoming: Path) -> None:
    """Three files allowed: the fourth evicts the oldest, file and sidecar."""
    quarantine = Quarantine(tmp_path / "q", max_files=3)
    oldest = _put(quarantine, incoming, b"one", age=30)
    others = [_put(quarantine, incoming, b"two", age=20),
              _put(quarantine, incoming, b"three", age=10)]
    newest = _put(quarantine, incoming, b"four")
    assert _kept(quarantine) == sorted([*others, newest])
    assert not (quarantine.directory / f"{oldest}.json").exists()
    assert quarantine.usage() == QuarantineUsage(
        files=3, bytes=len(b"twothreefour"), max_files=3, max_bytes=0, evicted_files=1,
        evicted_bytes=3, not_kept=0)


def test_past_max_bytes_as_many_as_needed_are_evicted(tmp_path: Path, incoming: Path) -> None:
    """100 bytes allowed: a 90-byte file evicts both 40-byte files; a 10-byte one then fits."""
    quarantine = Quarantine(tmp_path / "q", max_bytes=100)
    first = _put(quarantine, incoming, b"a" * 40, age=30)
    second = _put(quarantine, incoming, b"b" * 40, age=20)
    assert _kept(quarantine) == sorted([first, second])
    big = _put(quarantine, incoming, b"c" * 90)
    assert _kept(quarantine) == [big]
    small = _put(quarantine, incoming, b"d" * 10)
    assert _kept(quarantine) == sorted([big, small])
    usage = quarantine.usage()
    assert usage is not None
    assert (usage.files, usage.bytes, usage.evicted_files, usage.evicted_bytes) == (2, 100, 2, 80)


def test_a_file_rejected_again_is_the_most_recent(tmp_path: Path, incoming: Path) -> None:
    """The same bytes sent again count as today's evidence: the other file goes instead."""
    quarantine = Quarantine(tmp_path / "q", max_files=2)
    again = _put(quarantine, incoming, b"sent twice", age=30)
    other = _put(quarantine, incoming, b"sent once", age=20)
    assert _put(quarantine, incoming, b"sent twice") == again
    newest = _put(quarantine, incoming, b"new")
    assert _kept(quarantine) == sorted([again, newest])
    assert other not in _kept(quarantine)
    assert quarantine.get(again).details["count"] == 2


def test_files_removed_by_hand_are_not_counted(tmp_path: Path, incoming: Path) -> None:
    """A file deleted behind the ledger's back (rm) frees its place: the next file evicts
    nothing (the ledger still counted it and evicted the other)."""
    quarantine = Quarantine(tmp_path / "q", max_files=2)
    gone = _put(quarantine, incoming, b"removed by hand", age=30)
    stays = _put(quarantine, incoming, b"stays", age=20)
    (quarantine.directory / gone).unlink()
    (quarantine.directory / f"{gone}.json").unlink()
    new = _put(quarantine, incoming, b"new")
    assert _kept(quarantine) == sorted([stays, new])
    usage = quarantine.usage()
    assert usage is not None
    assert (usage.files, usage.evicted_files) == (2, 0)


@pytest.mark.parametrize("bounds", [{"max_files": 3}, {"max_bytes": 30}])
def test_a_newer_file_removed_by_hand_costs_no_eviction(tmp_path: Path, incoming: Path,
                                                         bounds: dict[str, int]) -> None:
    """A file removed by hand that was not the oldest stayed counted, so the next file
    evicted the oldest one early; every file the ledger remembers is checked first now."""
    quarantine = Quarantine(tmp_path / "q", **bounds)
    oldest = _put(quarantine, incoming, b"a" * 10, age=30)
    middle = _put(quarantine, incoming, b"b" * 10, age=20)
    removed = _put(quarantine, incoming, b"c" * 10, age=10)
    assert quarantine.purge(older_than=datetime(2000, 1, 1, tzinfo=timezone.utc)) == []
    (quarantine.directory / removed).unlink()  # after a scan remembered it; sidecar left
    new = _put(quarantine, incoming, b"d" * 10)
    assert _kept(quarantine) == sorted([oldest, middle, new])
    usage = quarantine.usage()
    assert usage is not None
    assert (usage.files, usage.bytes, usage.evicted_files) == (3, 30, 0)


@pytest.mark.parametrize("ledger", ["missing", "corrupt"])
def test_a_lost_ledger_is_counted_again(tmp_path: Path, incoming: Path, ledger: str) -> None:
    """Without a readable ledger the directory is scanned: the bound still holds."""
    quarantine = Quarantine(tmp_path / "q", max_files=2)
    oldest = _put(quarantine, incoming, b"one", age=30)
    second = _put(quarantine, incoming, b"two", age=20)
    if ledger == "missing":
        (quarantine.directory / ".ledger").unlink()
    else:
        (quarantine.directory / ".ledger").write_text('{"files": "many"')
    third = _put(quarantine, incoming, b"three")
    assert _kept(quarantine) == sorted([second, third])
    assert oldest not in _kept(quarantine)


def test_keeping_a_file_does_not_scan_the_directory(tmp_path: Path, incoming: Path) -> None:
    """With a ledger, keeping a file reads it and not the directory: a crashed worker's
    leftover, which any scan removes, is still there after an eviction."""
    quarantine = Quarantine(tmp_path / "q", max_files=2)
    for number in range(3):
        _put(quarantine, incoming, b"file %d" % number)
    leftover = quarantine.directory / ".incoming-1-deadbeef"
    leftover.write_bytes(b"half moved in by a worker that died")
    _put(quarantine, incoming, b"one more")
    assert leftover.exists()
    usage = quarantine.usage()
    assert usage is not None
    assert (usage.files, usage.evicted_files) == (2, 2)


def test_a_scan_removes_what_crashed_workers_left(tmp_path: Path, incoming: Path) -> None:
    """Half-moved files older than an hour go at the next scan; a recent one (a worker still
    moving it in) and anything else hidden stay."""
    quarantine = Quarantine(tmp_path / "q", max_files=5)
    _put(quarantine, incoming, b"one")
    directory = quarantine.directory
    stale = [directory / f".incoming-{int(time.time()) - 7200}-0123", directory / ".x.part"]
    fresh = [directory / f".incoming-{int(time.time())}-4567", directory / ".y.part",
             directory / ".incoming-0-a.displaced"]
    for path in stale + fresh:
        path.write_bytes(b"x")
    hour_ago = time.time() - 7200
    os.utime(directory / ".x.part", (hour_ago, hour_ago))
    (directory / ".ledger").unlink()  # the next file scans
    _put(quarantine, incoming, b"two")
    assert [path.exists() for path in stale + fresh] == [False, False, True, True, True]


def test_release_and_purge_keep_the_counts_true(tmp_path: Path, incoming: Path) -> None:
    """After a release and a purge the ledger counts what is left, and keeps its history."""
    quarantine = Quarantine(tmp_path / "q", max_files=2)
    _put(quarantine, incoming, b"one", age=30)
    released = _put(quarantine, incoming, b"two", age=20)
    _put(quarantine, incoming, b"three")
    quarantine.release(released, tmp_path / "released")
    usage = quarantine.usage()
    assert usage is not None
    assert (usage.files, usage.evicted_files) == (1, 1)
    quarantine.purge()
    usage = quarantine.usage()
    assert usage is not None
    assert (usage.files, usage.bytes, usage.evicted_files) == (0, 0, 1)


# -- through the validator: events and health ---------------------------------------------------

@pytest.fixture
def bounded(tmp_path: Path, quarantine_dir: Path) -> Iterator[Callable[..., Monitor]]:
    """Configures the monitor with the given bounds; shut down after the test."""

    def configure(**bounds: int) -> Monitor:
        return ragtrail.instrument.configure(
            store_url=f"sqlite:///{tmp_path / 'audit.db'}", quarantine_dir=str(quarantine_dir),
            event_coalesce_seconds=0.001, **bounds)

    yield configure
    ragtrail.instrument.shutdown()


def _events(monitor: Monitor, event_type: str) -> list[SecurityEvent]:
    monitor.store.flush(timeout=10)
    return list(monitor.store.events(event_type=event_type, limit=100))


def test_an_eviction_is_an_event_and_counted_in_health(bounded: Callable[..., Monitor],
                                                       corpus: Corpus) -> None:
    """One file allowed: the second rejection evicts the first, says which, and the monitor's
    health counts it."""
    monitor = bounded(quarantine_max_files=1)
    validator = FileValidator(monitor=monitor)
    first = validator.validate(corpus.write("one.pdf", ELF))
    second = validator.validate(corpus.write("two.pdf", ELF + b"other bytes"))
    assert second.quarantine_path is not None
    assert [e.sha256 for e in Quarantine(second.quarantine_path.parent).entries()] == [
        second.sha256]
    [event] = _events(monitor, "quarantine_overflow")
    assert (event.severity, event.source) == (Severity.MEDIUM, "quarantine:evicted")
    assert event.metadata["evicted_sha256"] == [first.sha256]
    assert (event.metadata["evicted_files"], event.metadata["evicted_bytes"]) == (1, len(ELF))
    assert monitor.health()["security_events"]["quarantine_overflow:medium"] == 1


@pytest.mark.parametrize(("bounds", "why"), [
    ({"quarantine_max_bytes": 100}, "more than the whole quarantine holds"),
    ({"quarantine_min_free_bytes": 2**62}, "quarantine_min_free_bytes"),
])
def test_a_file_that_cannot_fit_is_not_kept_and_stays(bounded: Callable[..., Monitor],
                                                      corpus: Corpus, quarantine_dir: Path,
                                                      bounds: dict[str, int], why: str) -> None:
    """Larger than the whole quarantine, or its disk below the free floor: still rejected, left
    where it is, nothing evicted; the rejection's event and an overflow event say why."""
    monitor = bounded(**bounds)
    validator = FileValidator(monitor=monitor)
    path = corpus.write("invoice.pdf", ELF + bytes(200))
    result = validator.validate(path)
    assert (result.accepted, result.quarantine_path) == (False, None)
    assert path.read_bytes() == ELF + bytes(200)
    [rejection] = _events(monitor, "malicious_file_upload")
    assert why in rejection.metadata["quarantine_error"]
    [overflow] = _events(monitor, "quarantine_overflow")
    assert overflow.source == "quarantine:not_kept"
    assert overflow.metadata["sha256"] == result.sha256
    assert Quarantine(quarantine_dir).entries() == []
    usage = Quarantine(quarantine_dir).usage()
    assert usage is not None
    assert usage.not_kept == 1


# -- several workers ----------------------------------------------------------------------------

_WORKERS = 3
_THREADS = 4
_FILES = 25


def _fill(directory: Path, incoming: Path, worker: int) -> str:
    """One worker: threads quarantining distinct files into the shared directory."""
    quarantine = Quarantine(directory, max_files=20, max_bytes=20 * 64)
    errors: list[BaseException] = []

    def thread(number: int) -> None:
        try:
            for index in range(_FILES):
                data = f"worker {worker} thread {number} file {index}".encode().ljust(64, b".")
                _put(quarantine, incoming, data)
        except BaseException as exc:  # reported to the parent below
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(_THREADS)]
    for started in threads:
        started.start()
    for started in threads:
        started.join()
    return repr(errors)


def test_concurrent_workers_hold_the_bound(tmp_path: Path) -> None:
    """Three forked workers of four threads each quarantine 300 files into one directory
    bounded to 20: no error, never more than 20 kept, each whole under its own hash with its
    sidecar, nothing left half moved, and the ledger counts exactly what is there."""
    directory = tmp_path / "q"
    sources = []
    for worker in range(_WORKERS):
        sources.append(tmp_path / f"incoming-{worker}")
        sources[-1].mkdir()
    with ThreadPoolExecutor(_WORKERS) as pool:
        reports = list(pool.map(
            lambda worker: output_of_forked_child(
                lambda: _fill(directory, sources[worker], worker)),
            range(_WORKERS)))
    assert reports == ["[]"] * _WORKERS
    quarantine = Quarantine(directory)
    entries = quarantine.entries()
    assert len(entries) == 20
    for entry in entries:
        assert hashlib.sha256(entry.path.read_bytes()).hexdigest() == entry.sha256
        assert entry.reason == "test"
    hidden = sorted(name for name in os.listdir(directory) if name.startswith("."))
    assert hidden == [".ledger", ".lock"]
    assert [list(source.iterdir()) for source in sources] == [[]] * _WORKERS
    usage = quarantine.usage()
    assert usage is not None
    assert (usage.files, usage.bytes, usage.evicted_files) == (
        20, 20 * 64, _WORKERS * _THREADS * _FILES - 20)
    ledger = json.loads((directory / ".ledger").read_text())
    assert ledger["files"] == 20


def test_a_full_quarantine_refuses_with_quarantine_full(tmp_path: Path, incoming: Path) -> None:
    """``Quarantine.add`` itself raises ``QuarantineFull`` (a ``QuarantineError``) and leaves
    the file where it was."""
    quarantine = Quarantine(tmp_path / "q", max_bytes=10)
    path = incoming / "big"
    path.write_bytes(b"x" * 11)
    with pytest.raises(QuarantineFull, match="11 bytes is more than"):
        quarantine.add(path, hashlib.sha256(b"x" * 11).hexdigest(), {}, judged=os.stat(path))
    assert path.read_bytes() == b"x" * 11
