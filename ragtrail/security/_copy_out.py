"""Putting a quarantined file at a release's destination so that the destination's name only
ever holds the complete file.

A copy written under the final name leaves a truncated file there when the release is killed
(SIGKILL, an evicted pod): it looks released, and the retry fails with "already exists". So
the copy goes to a hidden temporary file beside the destination, is synced, and only then
takes the final name by link(2), which fails rather than replace anything. A filesystem without
hard links (vfat, exFAT) gets the name claimed with ``O_EXCL`` and then replaced by the rename:
only a kill between those two calls can leave an empty file there.

The temporary name derives from the destination's, so a retry finds what a killed attempt
left. A release holds ``flock`` on its temporary file while it writes; the kernel drops the
lock when the process dies, however it dies. So a retry that can take the lock knows that no
release is writing the file, and removes it if it is a regular file of this user with no
group or other permissions (as ragtrail creates it). Anything else under that name (a file
a running release holds, one on a filesystem without ``flock``, a symlink, another user's
file) stays, and the release is refused naming it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ragtrail.security._files import (
    READ_REGULAR_ONLY,
    ChangedFileError,
    copy_judged,
    create_exclusive,
    remove_judged,
    still_judged,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: a killed release's file is never provably stale
    fcntl = None  # type: ignore[assignment]

__all__ = ["STAGING_PREFIX", "copy_out", "staging_path"]

STAGING_PREFIX = ".ragtrail-release-"  # then 16 hex of the destination name's sha256, ".part"
# Where link() cannot serve: another filesystem, or one without hard links (EPERM on vfat).
_NO_HARD_LINK = frozenset((errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP))
_IN_USE = ("another release to the same destination is running, or a killed one left this "
           "file and it cannot be shown to be stale; remove it if no release is running")


def copy_out(source: Path, target: Path, judged: os.stat_result) -> None:
    """Put the ``judged`` file at ``source`` at ``target`` too, leaving ``source`` as it is: a
    hard link, or a copy that gets the name ``target`` only once complete and synced.

    Never clobbers ``target`` (``FileExistsError``); raises ``ChangedFileError`` if ``source``
    is another file by now, and ``OSError`` (``EBUSY``) while another release to ``target``
    is running.
    """
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINK:
            raise
    else:
        try:
            still_judged(target, judged)
        except ChangedFileError:
            target.unlink()
            raise
        _sync_directory(target.parent)
        return
    with _staging(target) as (staged, out):
        copy_judged(source, out, judged)
        out.flush()
        os.fsync(out.fileno())
        _publish(staged, target)
    _sync_directory(target.parent)


def staging_path(target: Path) -> Path:
    """The temporary file a copy to ``target`` is written to, beside it."""
    digest = hashlib.sha256(os.fsencode(target.name)).hexdigest()[:16]
    return target.with_name(f"{STAGING_PREFIX}{digest}.part")


@contextmanager
def _staging(target: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """The temporary file for ``target``, created (mode 0600) and locked until the block ends;
    removed if the block fails (``_publish`` removes its name otherwise)."""
    staged = staging_path(target)
    with os.fdopen(_create_locked(staged), "wb") as out:
        try:
            yield staged, out
        except BaseException:
            staged.unlink(missing_ok=True)  # while locked: no other release has that name
            raise


def _create_locked(staged: Path) -> int:
    try:
        fd = create_exclusive(staged)
    except FileExistsError:
        _remove_if_stale(staged)
        try:
            fd = create_exclusive(staged)
        except FileExistsError:
            raise OSError(errno.EBUSY, _IN_USE, str(staged)) from None
    try:
        _lock(fd)
        # A retry may have found the new file unlocked and removed it as stale.
        still_judged(staged, os.fstat(fd))
    except (BlockingIOError, FileNotFoundError, ChangedFileError):
        os.close(fd)
        raise OSError(errno.EBUSY, _IN_USE, str(staged)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_if_stale(staged: Path) -> None:
    """Remove what a killed release left at ``staged``, if it provably is that: see the
    module's docstring. Anything else stays where it is."""
    if fcntl is None:
        return
    try:
        fd = os.open(staged, READ_REGULAR_ONLY)
    except OSError:  # gone meanwhile, a symlink (ELOOP), not readable: not provably ours
        return
    try:
        info = os.fstat(fd)
        if (stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()
                and not info.st_mode & 0o077 and _lock(fd)):
            remove_judged(staged, info)  # renamed aside and checked: never a file swapped in
    except (BlockingIOError, FileNotFoundError, ChangedFileError):
        pass  # a running release holds it, or it went or was replaced since it was opened
    finally:
        os.close(fd)


def _lock(fd: int) -> bool:
    """``flock`` without waiting (``BlockingIOError`` if held); False where there is none."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError:  # ENOLCK, EOPNOTSUPP: a filesystem without flock
        return False
    return True


def _publish(staged: Path, target: Path) -> None:
    """Give the staged file the name ``target``, which must be free, and drop its own name
    (still locked: once free, another release may create a file of its own under it)."""
    try:
        os.link(staged, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINK:
            raise
        _claim_and_replace(staged, target)
    else:
        staged.unlink()


def _claim_and_replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` where there are no hard links, or ``FileExistsError``
    if anything is there: claim ``target``, then replace the claim."""
    os.close(create_exclusive(target))
    try:
        os.replace(source, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _sync_directory(directory: Path) -> None:
    """``fsync`` the directory, so that the new name is on disk before the quarantine lets go
    of the file. Skipped where a directory cannot be opened or synced (a drop box of mode
    0300; ``EINVAL`` from filesystems that do not sync directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)
