"""Moving files without clobbering, across filesystems, and without following symlinks.

A check that the path still names the judged file, then a rename, leaves a moment in which
another writer of the directory can swap a file in (POSIX has no "rename if still this
inode"). So what was moved is checked after the move too, and put back if it is not the
judged file.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["O_NOFOLLOW", "READ_REGULAR_ONLY", "ChangedFileError", "copy_judged",
           "create_exclusive", "make_inert", "move_file", "put_back", "read_json", "remove_judged",
           "still_judged", "write_json"]

logger = logging.getLogger("ragtrail.security")

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
# For files to judge, hash or copy: never through a symlink, and O_NONBLOCK so that opening a
# FIFO put in the file's place does not wait for a writer forever.
READ_REGULAR_ONLY = os.O_RDONLY | O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_CHANGED = "another file than the one validated is there now"


class ChangedFileError(OSError):
    """The path names another file than the one judged (swapped for a link, replaced)."""


def _require_judged(info: os.stat_result, judged: os.stat_result | None, path: Path) -> None:
    if judged is not None and (not stat.S_ISREG(info.st_mode)
                               or (info.st_dev, info.st_ino) != (judged.st_dev, judged.st_ino)):
        raise ChangedFileError(errno.ESTALE, _CHANGED, str(path))


def still_judged(path: Path, judged: os.stat_result | None) -> os.stat_result:
    """``lstat(path)``; raises ``ChangedFileError`` unless it is the ``judged`` file (if any)."""
    info = os.lstat(path)
    _require_judged(info, judged, path)
    return info


def create_exclusive(path: Path) -> int:
    """Create ``path`` (mode 0600) and return its descriptor; fails if anything is there."""
    return os.open(path, _CREATE | O_NOFOLLOW, 0o600)


def make_inert(path: Path) -> None:
    """Mode 0600 and the modification time now (the quarantine's age of an entry) on the file
    itself, never through a symlink someone put in its place."""
    fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | _O_CLOEXEC)
    try:
        os.fchmod(fd, 0o600)
        os.utime(fd)
    finally:
        os.close(fd)


def move_file(source: Path, target: Path, *, judged: os.stat_result | None = None) -> None:
    """Rename, or copy and delete across filesystems; never clobbers ``target``.

    With ``judged`` (the ``fstat`` of the file that was validated), only that very file is
    moved, never what was put at ``source`` since (``ChangedFileError``, and ``source`` is as
    the other writer left it); and a file with other hard links is copied, so that the inode
    those names share is never made the quarantine's.
    Raises ``FileExistsError`` when ``target`` exists.
    """
    linked = judged is not None and still_judged(source, judged).st_nlink > 1
    # Claim the name first so nobody can slip a file in between the check and the move.
    os.close(create_exclusive(target))
    try:
        if not linked and _renamed(source, target, judged):
            return
        _copy(source, target, judged)
        if judged is None:
            source.unlink()
        else:
            remove_judged(source, judged)
    except BaseException:
        # No half copy, and no empty placeholder that would block the next attempt.
        target.unlink(missing_ok=True)
        raise


def remove_judged(path: Path, judged: os.stat_result) -> None:
    """Delete the ``judged`` file at ``path``, never one swapped in since (``ChangedFileError``).

    Renamed aside first and checked there, as ``move_file`` does: an ``unlink`` after a check
    would delete whatever the other writer had put at ``path`` in between.
    """
    aside = path.with_name(f".ragtrail-{secrets.token_hex(8)}.removing")
    os.close(create_exclusive(aside))
    try:
        if not _renamed(path, aside, judged):  # a bind-mounted file: no rename in place
            raise OSError(errno.EXDEV, "cannot be renamed aside to be removed", str(path))
    except BaseException:
        aside.unlink(missing_ok=True)
        raise
    aside.unlink()


def _renamed(source: Path, target: Path, judged: os.stat_result | None) -> bool:
    """Rename ``source`` onto ``target`` (our placeholder); False across filesystems.

    With ``judged``, what arrived is checked; another file is put back and ``ChangedFileError``
    raised."""
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    try:
        still_judged(target, judged)
    except ChangedFileError:
        put_back(target, source)
        raise ChangedFileError(errno.ESTALE, _CHANGED, str(source)) from None
    return True


def put_back(moved: Path, source: Path) -> None:
    """Return a file moved by mistake (or one that could not be kept) to ``source``, unless
    someone has put yet another file there: then it stays beside ``moved`` as
    ``<name>.displaced`` (logged), never deleted."""
    try:
        os.link(moved, source, follow_symlinks=False)
    except OSError:
        displaced = moved.with_name(f"{moved.name}.displaced")
        os.replace(moved, displaced)
        logger.warning("ragtrail moved a file swapped in for a validated one and could not put "
                       "it back (%s is taken again); it is kept as %s", source, displaced)
    else:
        moved.unlink()


def _copy(source: Path, target: Path, judged: os.stat_result | None) -> None:
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with os.fdopen(create_exclusive(partial), "wb") as dst:
            copy_judged(source, dst, judged)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def copy_judged(source: Path, out: BinaryIO, judged: os.stat_result | None) -> None:
    """Write the bytes of the regular file at ``source`` to ``out``; ``ChangedFileError`` if
    it is not the ``judged`` file (if any)."""
    # Never through a symlink swapped in after the file was judged: its target's bytes
    # would be kept under the judged file's hash.
    with os.fdopen(os.open(source, READ_REGULAR_ONLY), "rb") as src:
        copied = os.fstat(src.fileno())
        if not stat.S_ISREG(copied.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(source))
        _require_judged(copied, judged, source)
        shutil.copyfileobj(src, out)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from an ASCII file; None if it is missing, unreadable or not an object."""
    try:
        with open(path, encoding="ascii") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: Path, value: Mapping[str, Any], *, indent: int | None = 2) -> None:
    """Atomically, mode 0600, ASCII only (``ensure_ascii`` escapes everything else).

    ``indent=None`` for files only ragtrail reads: only ``dumps`` without indenting takes
    json's C encoder (ten times faster on the ledger)."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with os.fdopen(create_exclusive(partial), "w", encoding="ascii") as f:
            f.write(json.dumps(value, ensure_ascii=True, indent=indent, sort_keys=True) + "\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
