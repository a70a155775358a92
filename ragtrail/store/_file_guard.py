"""Noticing that the SQLite file was deleted or replaced while the store had it open.

SQLite keeps writing to a file unlinked under it (``rm ragtrail.db``, a clean-up job, a volume
remounted): every commit succeeds, nothing reaches the path, and health stays green. Before
each transaction the writer compares the path's inode with the one it opened; on a change it
drops its connections, recreates the file (0600, as at start) and reports the fault, so the
batch goes to the new file and the loss of the old one shows in health.
"""

from __future__ import annotations

import os

from sqlalchemy.engine import Engine

from ragtrail.store._engine import create_private
from ragtrail.store._errors import StoreError

__all__ = ["FileGuard", "file_identity"]


class FileGuard:
    """``check()`` raises once per change of the file at ``path``, after reopening it."""

    def __init__(self, path: str, engine: Engine) -> None:
        self._path = path
        self._engine = engine
        self._identity = file_identity(path)

    def check(self) -> None:
        identity = file_identity(self._path)
        if identity == self._identity and identity is not None:
            return
        # Gone or another file: pooled connections still point at the old inode.
        self._engine.dispose()
        if identity is None:
            create_private(self._path)
            identity = file_identity(self._path)
        self._identity = identity
        raise StoreError(f"{self._path}: the database file was deleted or replaced while in "
                         "use; writing to a new one (the records the old one held are gone)")


def file_identity(path: str) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path`` now, or None when there is none."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino
