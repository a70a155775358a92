"""Moving files without clobbering, across filesystems, and without following symlinks."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from pathlib import Path

__all__ = ["O_NOFOLLOW", "READ_REGULAR_ONLY", "ChangedFileError", "create_exclusive",
           "make_inert", "move_file", "still_judged"]

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
# For files to judge, hash or copy: never through a symlink, and O_NONBLOCK so that opening a
# FIFO put in the file's place does not wait for a writer forever.
READ_REGULAR_ONLY = os.O_RDONLY | O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)


class ChangedFileError(OSError):
    """The path names another file than the one judged (swapped for a link, replaced)."""


def _require_judged(info: os.stat_result, judged: os.stat_result | None, path: Path) -> None:
    if judged is not None and (not stat.S_ISREG(info.st_mode)
                               or (info.st_dev, info.st_ino) != (judged.st_dev, judged.st_ino)):
        raise ChangedFileError(errno.ESTALE, "another file than the one validated is there now",
                               str(path))


def still_judged(path: Path, judged: os.stat_result | None) -> os.stat_result:
    """``lstat(path)``; raises ``ChangedFileError`` unless it is the ``judged`` file (if any)."""
    info = os.lstat(path)
    _require_judged(info, judged, path)
    return info


def create_exclusive(path: Path) -> int:
    """Create ``path`` (mode 0600) and return its descriptor; fails if anything is there."""
    return os.open(path, _CREATE | O_NOFOLLOW, 0o600)


def make_inert(path: Path) -> None:
    """Mode 0600 on the file itself, never through a symlink someone put in its place."""
    fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | _O_CLOEXEC)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def move_file(source: Path, target: Path, *, replace: bool,
              judged: os.stat_result | None = None) -> None:
    """Rename, or copy and delete across filesystems; ``replace=False`` never clobbers.

    With ``judged`` (the ``fstat`` of the file that was validated), only that very file is
    moved, never what was put at ``source`` since (``ChangedFileError``); and a file with other
    hard links is copied, so that the inode those names share is never made the quarantine's.
    Raises ``FileExistsError`` when ``replace`` is False and ``target`` exists.
    """
    linked = judged is not None and still_judged(source, judged).st_nlink > 1
    if not replace:
        # Claim the name first so nobody can slip a file in between the check and the move.
        os.close(create_exclusive(target))
    if not linked:
        try:
            os.replace(source, target)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                if not replace:
                    target.unlink(missing_ok=True)
                raise
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        # Never through a symlink swapped in after the file was judged: its target's bytes
        # would be kept under the judged file's hash.
        with os.fdopen(os.open(source, READ_REGULAR_ONLY), "rb") as src, \
                os.fdopen(create_exclusive(partial), "wb") as dst:
            copied = os.fstat(src.fileno())
            if not stat.S_ISREG(copied.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(source))
            _require_judged(copied, judged, source)
            shutil.copyfileobj(src, dst)
        os.replace(partial, target)
    except BaseException:
        # No half copy, and no empty placeholder that would block the next attempt.
        partial.unlink(missing_ok=True)
        if not replace:
            target.unlink(missing_ok=True)
        raise
    source.unlink()
