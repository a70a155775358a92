"""The quarantine's bound: at most so many files and bytes, the least recently rejected evicted
first, and nothing kept while its disk is nearly full.

Several threads and processes (gunicorn workers) keep files in one directory. Each holds
``.lock`` (``flock``) only while it decides and renames; the copy or rename in has happened
before, under a hidden name that no count includes and no eviction touches, and a release
copies its file out before it takes the lock to remove it. ``.ledger`` keeps the totals and
the oldest entries the last scan found, so keeping a file reads and writes one small file
instead of listing the directory (a scan is an ``lstat`` per entry, about 100 ms for 10,000
entries on a slow disk). A scan runs when the ledger is missing or unreadable, when its
oldest entries are used up, or when one of them was removed behind its back (checked before
anything is evicted).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtrail.security._files import O_NOFOLLOW, read_json, write_json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, the bound holds per process only
    fcntl = None  # type: ignore[assignment]

__all__ = ["INCOMING_PREFIX", "SHA256", "Bound", "Evicted", "Ledger", "Limits"]

SHA256 = re.compile(r"[0-9a-f]{64}")
INCOMING_PREFIX = ".incoming-"  # then the creation time in seconds, "-" and a random token
_INCOMING = re.compile(re.escape(INCOMING_PREFIX) + r"([0-9]+)-[0-9a-f]+")
_LOCK = ".lock"
_LEDGER = ".ledger"
_CANDIDATES = 128  # oldest entries a scan remembers: at most one scan per 128 evictions
_LOCK_TIMEOUT = 10.0  # seconds; every holder does a few file operations, or one scan
_STALE = 3600.0  # seconds after which a hidden half-moved file is a crashed worker's


@dataclass(frozen=True)
class Limits:
    """The settings ``quarantine_max_bytes``, ``quarantine_max_files`` and
    ``quarantine_min_free_bytes``; 0 turns each off."""

    max_bytes: int = 0
    max_files: int = 0
    min_free_bytes: int = 0

    def refusal(self, size: int, directory: Path) -> str | None:
        """Why a file of ``size`` bytes cannot be kept whatever is evicted, or None."""
        if self.max_bytes and size > self.max_bytes:
            return (f"not kept: {size} bytes is more than the whole quarantine holds "
                    f"(quarantine_max_bytes={self.max_bytes})")
        if self.min_free_bytes:
            free = shutil.disk_usage(directory).free
            if free - size < self.min_free_bytes:
                return (f"not kept: {free} bytes free on the quarantine's disk, and "
                        f"quarantine_min_free_bytes={self.min_free_bytes} stay free")
        return None

    def exceeded(self, files: int, size: int) -> bool:
        return bool((self.max_files and files > self.max_files)
                    or (self.max_bytes and size > self.max_bytes))


@dataclass(frozen=True)
class Evicted:
    sha256: str
    size: int


@dataclass
class Ledger:
    """Totals of the quarantined files, the oldest ones, and what the bound has cost so far."""

    files: int = 0
    bytes: int = 0
    evicted_files: int = 0
    evicted_bytes: int = 0
    not_kept: int = 0
    oldest: list[tuple[int, str, int]] = field(default_factory=list)  # mtime_ns, sha256, size
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> Ledger | None:
        """A ledger from its JSON; None when anything in it is not as written."""
        if raw is None:
            return None
        try:
            files, size, evicted_files, evicted_bytes, not_kept = (
                int(raw[name]) for name in _COUNTS)
            limits = Limits(*(int(raw["limits"][name]) for name in _LIMITS))
            oldest = [(int(m), str(s), int(z)) for m, s, z in raw["oldest"]]
        except (KeyError, TypeError, ValueError):
            return None
        if not all(SHA256.fullmatch(sha256) for _, sha256, _ in oldest):
            return None
        return cls(files, size, evicted_files, evicted_bytes, not_kept, oldest, limits)

    def as_dict(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in _COUNTS}, "oldest": self.oldest,
                "limits": {name: getattr(self.limits, name) for name in _LIMITS}}


_COUNTS = ("files", "bytes", "evicted_files", "evicted_bytes", "not_kept")
_LIMITS = ("max_bytes", "max_files", "min_free_bytes")


class Bound:
    """The bound of one quarantine directory (which must exist)."""

    def __init__(self, directory: Path, limits: Limits) -> None:
        self.directory = directory
        self.limits = limits

    def read(self) -> Ledger | None:
        """The ledger as the last writer left it, without waiting for the lock."""
        return Ledger.parse(read_json(self.directory / _LEDGER))

    @contextlib.contextmanager
    def locked(self) -> Iterator[Ledger]:
        """Hold the lock and the ledger (counted afresh if need be), saved when the block
        ends."""
        with self._flock():
            ledger = self.read()
            if ledger is None:
                ledger = Ledger()
                self.recount(ledger)
            try:
                yield ledger
            except BaseException:
                # Files may have gone with their count unchanged: count them now (and if that
                # fails too, a missing file among the oldest makes the next eviction count).
                with contextlib.suppress(OSError):
                    self.recount(ledger)
                    write_json(self.directory / _LEDGER, ledger.as_dict(), indent=None)
                raise
            write_json(self.directory / _LEDGER, ledger.as_dict(), indent=None)

    @contextlib.contextmanager
    def lock_only(self) -> Iterator[None]:
        with self._flock():
            yield

    def make_room(self, ledger: Ledger, size: int) -> list[Evicted]:
        """Evict the least recently rejected files until one of ``size`` bytes fits."""
        ledger.limits = self.limits  # what `ragtrail quarantine list` shows
        evicted: list[Evicted] = []
        if self.limits.exceeded(ledger.files + 1, ledger.bytes + size) \
                and not self._candidates_present(ledger):
            self.recount(ledger)  # one was removed by hand (rm): it would have cost an eviction
        while self.limits.exceeded(ledger.files + 1, ledger.bytes + size):
            if not ledger.oldest:
                self.recount(ledger)
                if not ledger.oldest:
                    break
                continue  # the count may have been too high
            mtime_ns, sha256, _ = ledger.oldest.pop(0)
            path = self.directory / sha256
            try:
                info = os.lstat(path)
            except FileNotFoundError:  # purged by hand: the totals are wrong too
                self.recount(ledger)
                continue
            if info.st_mtime_ns != mtime_ns:
                continue  # rejected again since the scan: no longer among the oldest
            try:
                path.unlink()
            except FileNotFoundError:  # only without flock (Windows): evicted by another
                continue
            (self.directory / f"{sha256}.json").unlink(missing_ok=True)
            ledger.files -= 1
            ledger.bytes -= info.st_size
            ledger.evicted_files += 1
            ledger.evicted_bytes += info.st_size
            evicted.append(Evicted(sha256, info.st_size))
        return evicted

    def _candidates_present(self, ledger: Ledger) -> bool:
        """Whether every file the ledger remembers as oldest is still there: an lstat each,
        at most 128 (about 0.3 ms), where a listing of 10,000 entries takes 10-20 ms. That
        is every file of a quarantine of up to 128 files, and the oldest of a larger one."""
        return all(os.path.lexists(self.directory / sha256) for _, sha256, _ in ledger.oldest)

    def recount(self, ledger: Ledger) -> None:
        """Count the quarantined files (call holding the lock), remember the oldest, and
        remove what crashed workers left half moved in."""
        found: list[tuple[int, str, int]] = []
        now = time.time()
        with os.scandir(self.directory) as names:
            for entry in names:
                try:
                    if SHA256.fullmatch(entry.name):
                        info = entry.stat(follow_symlinks=False)
                        found.append((info.st_mtime_ns, entry.name, info.st_size))
                    elif _stale(entry, now):
                        os.unlink(entry.path)
                except FileNotFoundError:  # released, purged or renamed meanwhile
                    continue
        ledger.files = len(found)
        ledger.bytes = sum(size for _, _, size in found)
        ledger.oldest = heapq.nsmallest(_CANDIDATES, found)

    @contextlib.contextmanager
    def _flock(self) -> Iterator[None]:
        path = self.directory / _LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT | O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        try:
            if fcntl is not None:
                _wait_for(fd, path)
            yield
        finally:
            os.close(fd)  # releases the lock


def _wait_for(fd: int, path: Path) -> None:
    """``flock`` with a deadline: a holder stuck on a hung disk must not hang every upload."""
    deadline = time.monotonic() + _LOCK_TIMEOUT
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(errno.ETIMEDOUT, f"the quarantine stayed locked for "
                                                    f"{_LOCK_TIMEOUT:.0f} s", str(path)) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def _stale(entry: os.DirEntry[str], now: float) -> bool:
    """A file half moved in by a worker that died: an incoming file by the time in its name
    (a file renamed in keeps its old mtime), a partial copy by its mtime (a copy in progress
    keeps it fresh)."""
    name = entry.name
    incoming = _INCOMING.fullmatch(name)
    if incoming is not None:
        return now - int(incoming[1]) > _STALE
    if name.startswith(".") and name.endswith(".part"):
        return now - entry.stat(follow_symlinks=False).st_mtime > _STALE
    return False
