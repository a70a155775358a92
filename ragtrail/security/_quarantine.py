"""The quarantine: where rejected files wait, inert, for someone to look at them.

Layout: one directory (mode 0700), each file under its sha256 with no extension (so nothing
opens or runs it by association) and mode 0600 (never executable), beside ``<sha256>.json``,
an ASCII sidecar saying why it is there. Identical content is stored once; its sidecar counts
the repeats.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ragtrail.security._files import create_exclusive, make_inert, move_file, still_judged

__all__ = ["Quarantine", "QuarantineEntry", "QuarantineError"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_MIN_PREFIX = 8


class QuarantineError(Exception):
    """A quarantine request that cannot be done: unknown or ambiguous ID, destination taken."""


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
        try:
            when = datetime.fromisoformat(str(self.details["last_time"]))
        except (KeyError, ValueError):
            return self.time
        return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)

    @property
    def original_name(self) -> str:
        """The client's name for the file, already escaped when it was quarantined."""
        return str(self.details.get("original_name", ""))

    def as_dict(self) -> dict[str, Any]:
        return {**self.details, "sha256": self.sha256, "path": str(self.path),
                "size": self.size, "time": self.time.isoformat(), "reason": self.reason}


class Quarantine:
    """A quarantine directory. Reading it never creates it; adding to it does (mode 0700)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def add(self, source: str | os.PathLike[str], sha256: str,
            details: Mapping[str, Any], *, judged: os.stat_result | None = None) -> Path:
        """Move ``source`` in under its ``sha256`` and write its sidecar; return the new path.

        ``judged``: the ``fstat`` of the file that was hashed; see ``move_file``.
        """
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
        self._ensure_directory()
        target = self.directory / sha256
        now = datetime.now(timezone.utc).isoformat()
        sidecar = self._sidecar(sha256)
        previous = _read_json(sidecar)
        if previous is not None and os.path.lexists(target):
            if not _same_file(source, target):
                still_judged(Path(source), judged)  # never delete a file swapped in since
                os.unlink(source)  # the same bytes are already here
            record = {**previous, "count": int(previous.get("count", 1)) + 1, "last_time": now}
        else:
            move_file(Path(source), target, replace=True, judged=judged)
            record = {**details, "sha256": sha256, "time": now, "count": 1}
        make_inert(target)
        _write_json(sidecar, record)
        return target

    def entries(self) -> list[QuarantineEntry]:
        """Every quarantined file, newest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = [self._entry(name) for name in names if _SHA256.fullmatch(name)]
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
        """Move a file out to ``destination`` (a new file, or a directory to put it in).

        The released file keeps mode 0600; an existing file is never overwritten.
        """
        entry = self.get(key)
        target = Path(destination)
        if target.is_dir():
            target = target / str(entry.details.get("sanitised_name") or entry.sha256)
        try:
            move_file(entry.path, target, replace=False)
        except FileExistsError:
            raise QuarantineError(f"{target} already exists") from None
        self._sidecar(entry.sha256).unlink(missing_ok=True)
        return target

    def purge(self, *, older_than: datetime | None = None) -> list[QuarantineEntry]:
        """Delete entries not rejected again since ``older_than`` (all if None); return them.

        By the last rejection, not the first: a file sent again today is today's evidence."""
        removed = []
        for entry in self.entries():
            if older_than is None or entry.last_seen < older_than:
                entry.path.unlink(missing_ok=True)
                self._sidecar(entry.sha256).unlink(missing_ok=True)
                removed.append(entry)
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
        details = _read_json(self._sidecar(sha256)) or {}
        try:
            when = datetime.fromisoformat(str(details["time"]))
        except (KeyError, ValueError):
            when = datetime.fromtimestamp(info.st_mtime, tz=timezone.utc)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        reason = str(details.get("reason") or "unknown (no sidecar)")
        return QuarantineEntry(sha256, path, info.st_size, when, reason, details)


def _same_file(a: str | os.PathLike[str], b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="ascii") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    """Atomically, mode 0600, ASCII only (``ensure_ascii`` escapes everything else)."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    with os.fdopen(create_exclusive(partial), "w", encoding="ascii") as f:
        json.dump(value, f, ensure_ascii=True, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(partial, path)
