"""The quarantine: where rejected files wait, inert, for someone to look at them.

Layout: one directory (mode 0700), each file under its sha256 with no extension (so nothing
opens or runs it by association) and mode 0600 (never executable), beside ``<sha256>.json``,
an ASCII sidecar saying why it is there. Identical content is stored once; its sidecar counts
the repeats. ``.lock`` and ``.ledger`` keep it within its bounds (``_quarantine_bound``).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ragtrail._records import parse_utc_iso, utc_iso
from ragtrail.security._copy_out import copy_out
from ragtrail.security._files import (
    ChangedFileError,
    make_inert,
    move_file,
    put_back,
    read_json,
    remove_judged,
    write_json,
)
from ragtrail.security._quarantine_bound import (
    INCOMING_PREFIX,
    SHA256,
    Bound,
    Evicted,
    Limits,
)

__all__ = ["Quarantine", "QuarantineEntry", "QuarantineError", "QuarantineFull",
           "QuarantineUsage"]

_MIN_PREFIX = 8


class QuarantineError(Exception):
    """A quarantine request that cannot be done: unknown or ambiguous ID, destination taken."""


class QuarantineFull(QuarantineError):
    """The bounds refuse a file: larger than the whole quarantine, or its disk nearly full."""


@dataclass(frozen=True)
class QuarantineUsage:
    """The totals and limits as the last file kept left them, and what the bounds cost so far:
    files evicted to make room (and their bytes), and files not kept at all."""

    files: int
    bytes: int
    max_files: int
    max_bytes: int
    evicted_files: int
    evicted_bytes: int
    not_kept: int


@dataclass(frozen=True)
class QuarantineEntry:
    """One quarantined file and what its sidecar says (``reason`` says so if it has none)."""

    sha256: str
    path: Path
    size: int
    time: datetime
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def last_seen(self) -> datetime:
        """When the same bytes were last rejected (``time`` if only once)."""
        return _parse_time(self.details.get("last_time")) or self.time

    @property
    def original_name(self) -> str:
        """The client's name for the file, already escaped when it was quarantined."""
        return str(self.details.get("original_name", ""))

    def as_dict(self) -> dict[str, Any]:
        """The sidecar's details and the entry's fields; times in UTC with ``Z`` whichever
        form the sidecar holds."""
        last = _parse_time(self.details.get("last_time"))
        seen = {} if last is None else {"last_time": utc_iso(last)}
        return {**self.details, **seen, "sha256": self.sha256, "path": str(self.path),
                "size": self.size, "time": utc_iso(self.time), "reason": self.reason}


@dataclass(frozen=True)
class _Kept:
    path: Path
    evicted: tuple[Evicted, ...] = ()


class Quarantine:
    """A quarantine directory. Reading it never creates it; adding to it does (mode 0700).

    ``max_bytes``, ``max_files`` and ``min_free_bytes`` bound it (0: no bound); ``FileValidator``
    passes the ``quarantine_*`` settings.
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int = 0,
                 max_files: int = 0, min_free_bytes: int = 0) -> None:
        self.directory = Path(directory)
        self.limits = Limits(max_bytes, max_files, min_free_bytes)

    def add(self, source: str | os.PathLike[str], sha256: str,
            details: Mapping[str, Any], *, judged: os.stat_result | None = None) -> Path:
        """Move ``source`` in under its ``sha256`` and write its sidecar; return the new path.

        ``judged``: the ``fstat`` of the file that was hashed; see ``move_file``. The least
        recently rejected files are evicted to make room; ``QuarantineFull`` when no room can
        be made (the file stays where it is).
        """
        return self._keep(Path(source), sha256, details, judged).path

    def _keep(self, source: Path, sha256: str, details: Mapping[str, Any],
              judged: os.stat_result | None) -> _Kept:
        if not SHA256.fullmatch(sha256):
            raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
        self._ensure_directory()
        target = self.directory / sha256
        bound = Bound(self.directory, self.limits)
        if os.path.lexists(target):
            with bound.lock_only():
                repeat = self._repeat(sha256)
            if repeat:
                if not _same_file(source, target):  # not the quarantined copy validated again
                    if judged is None:
                        source.unlink()
                    else:
                        remove_judged(source, judged)
                return _Kept(target)
        size = (judged or os.lstat(source)).st_size
        refusal = self.limits.refusal(size, self.directory)
        if refusal is not None:
            with bound.locked() as ledger:
                ledger.not_kept += 1
                ledger.limits = self.limits
            raise QuarantineFull(refusal)
        # Moved in under a name no count includes and no eviction touches, then renamed into
        # place under the lock: the slow part (a copy across filesystems) holds no lock.
        incoming = self.directory / f"{INCOMING_PREFIX}{int(time.time())}-{secrets.token_hex(8)}"
        move_file(source, incoming, judged=judged)
        try:
            make_inert(incoming)
            with bound.locked() as ledger:
                if self._repeat(sha256):  # another worker kept the same bytes meanwhile
                    incoming.unlink()
                    return _Kept(target)
                evicted = bound.make_room(ledger, size)
                replaced = _size(target)  # a file whose sidecar was lost: counted already
                os.replace(incoming, target)
                ledger.files += replaced is None
                ledger.bytes += size - (replaced or 0)
                write_json(self._sidecar(sha256), {
                    **details, "sha256": sha256, "time": _now(), "count": 1})
        except BaseException:
            # Not kept (the lock timed out, the disk failed): the evidence goes back where it
            # was, as the event says, never deleted.
            if os.path.lexists(incoming):
                put_back(incoming, source)
            raise
        return _Kept(target, tuple(evicted))

    def _repeat(self, sha256: str) -> bool:
        """If these bytes are here already, count the repeat and make them the most recently
        rejected (purge and eviction go by that). Call holding the lock, so that no eviction
        takes them in between."""
        sidecar = self._sidecar(sha256)
        previous = read_json(sidecar)
        if previous is None or not os.path.lexists(self.directory / sha256):
            return False
        make_inert(self.directory / sha256)
        write_json(sidecar, {**previous, "count": int(previous.get("count", 1)) + 1,
                             "last_time": _now()})
        return True

    def usage(self) -> QuarantineUsage | None:
        """The totals in ``.ledger``, the limits the last file kept was kept under, and what
        the bounds cost so far; None before anything was quarantined."""
        ledger = Bound(self.directory, self.limits).read()
        if ledger is None:
            return None
        return QuarantineUsage(ledger.files, ledger.bytes, ledger.limits.max_files,
                               ledger.limits.max_bytes, ledger.evicted_files,
                               ledger.evicted_bytes, ledger.not_kept)

    def entries(self) -> list[QuarantineEntry]:
        """Every quarantined file, newest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = [self._entry(name) for name in names if SHA256.fullmatch(name)]
        return sorted((e for e in found if e is not None), key=lambda e: e.time, reverse=True)

    def get(self, key: str) -> QuarantineEntry:
        """The entry whose sha256 is ``key`` or starts with it (at least 8 characters)."""
        key = key.strip().lower()
        if len(key) < _MIN_PREFIX or not re.fullmatch(r"[0-9a-f]+", key):
            raise QuarantineError(
                f"expected a sha256 or a prefix of at least {_MIN_PREFIX} hex characters")
        matches = [e for e in self.entries() if e.sha256.startswith(key)]
        if not matches:
            raise QuarantineError(f"no quarantined file matches {key}")
        if len(matches) > 1:
            raise QuarantineError(f"{len(matches)} quarantined files match {key}; give more")
        return matches[0]

    def release(self, key: str, destination: str | os.PathLike[str]) -> Path:
        """Move a file out to ``destination`` (a new file, or a directory to put it in; a
        name ending in ``/`` must be an existing directory).

        The released file keeps mode 0600; an existing file is never overwritten, and the
        destination's name appears only once the whole file is there (see ``copy_out``).
        """
        entry = self.get(key)
        # A trailing separator names a directory (as for mv and cp); Path() drops it, and the
        # file would be released as a new file of that name.
        if isinstance(destination, str) and destination.endswith(("/", os.sep)) and \
                not os.path.isdir(destination):
            raise QuarantineError(f"{destination}: no such directory (create it first, or name "
                                  "a new file without the trailing /)")
        target = Path(destination)
        if target.is_dir():
            target = target / str(entry.details.get("sanitised_name") or entry.sha256)
        if os.path.lexists(target):  # checked again, atomically, when the name is claimed
            raise QuarantineError(f"{target} already exists")
        try:
            judged = os.lstat(entry.path)
        except FileNotFoundError:
            raise QuarantineError(f"{entry.sha256} was released or purged meanwhile") from None
        # Copied (or linked) out while the file stays quarantined, then removed under the
        # lock: a copy to another filesystem under the lock made every rejection meanwhile
        # wait, and a release killed half-way must leave the evidence listed where it was.
        try:
            copy_out(entry.path, target, judged)
        except FileExistsError:
            raise QuarantineError(f"{target} already exists") from None
        except ChangedFileError:
            raise QuarantineError(f"{entry.sha256} was replaced meanwhile; try again") from None
        bound = Bound(self.directory, self.limits)
        with bound.locked() as ledger:
            try:
                remove_judged(entry.path, judged)
            except (FileNotFoundError, ChangedFileError):
                pass  # released, purged or evicted meanwhile: the copy out is complete anyway
            else:
                self._sidecar(entry.sha256).unlink(missing_ok=True)
            bound.recount(ledger)
        return target

    def purge(self, *, older_than: datetime | None = None) -> list[QuarantineEntry]:
        """Delete entries not rejected again since ``older_than`` (all if None); return them.

        By the last rejection, not the first: a file sent again today is today's evidence."""
        removed: list[QuarantineEntry] = []
        if not self.directory.is_dir():
            return removed
        bound = Bound(self.directory, self.limits)
        with bound.locked() as ledger:
            for entry in self.entries():
                if older_than is None or entry.last_seen < older_than:
                    entry.path.unlink(missing_ok=True)
                    self._sidecar(entry.sha256).unlink(missing_ok=True)
                    removed.append(entry)
            bound.recount(ledger)
        return removed

    def _sidecar(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.json"

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = self.directory.stat()
        # mkdir's mode passes through the umask, and an existing directory may be looser.
        if stat.S_IMODE(info.st_mode) != 0o700 and info.st_uid == os.geteuid():
            self.directory.chmod(0o700)

    def _entry(self, sha256: str) -> QuarantineEntry | None:
        path = self.directory / sha256
        try:
            info = path.lstat()
        except FileNotFoundError:  # purged or released meanwhile
            return None
        details = read_json(self._sidecar(sha256)) or {}
        when = (_parse_time(details.get("time"))
                or datetime.fromtimestamp(info.st_mtime, tz=timezone.utc))
        reason = str(details.get("reason") or "unknown (no sidecar)")
        return QuarantineEntry(sha256, path, info.st_size, when, reason, details)


def _same_file(a: str | os.PathLike[str], b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _size(path: Path) -> int | None:
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:
        return None


def _now() -> str:
    return utc_iso(datetime.now(timezone.utc))


def _parse_time(value: Any) -> datetime | None:
    """A sidecar's time, or None if it holds none (older ragtrail wrote ``+00:00``)."""
    if value is None:
        return None
    try:
        return parse_utc_iso(str(value))
    except ValueError:
        return None
