"""Open stores across ``os.fork()`` and interpreter exit: the writers' transactions held
over a fork, a fresh writer in the child, and a bounded flush at exit."""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from ragtrail._process_exit import at_exit

if TYPE_CHECKING:
    from ragtrail.store._audit import AuditStore

__all__ = ["EXIT_FLUSH_TIMEOUT_S", "open_stores"]

EXIT_FLUSH_TIMEOUT_S = 5.0
"""How long interpreter exit waits for each open store to write what it holds."""

open_stores: set[AuditStore] = set()
"""The stores that write (not read-only, not closed), held until closed: interpreter exit must
still flush a store the app let go of without closing it (a local variable), whose writer
thread goes on without it."""

_FORK_WAIT_S = 10.0
_held_across_fork: list[threading.Lock] = []


def _before_fork() -> None:
    """Let every writer finish its transaction before the process forks, and hold it there.

    SQLite keeps the locks of all of a process's connections to a file in one table in
    memory. A child forked while a writer held the file's write lock inherits that table
    with the lock still marked held, by a connection the child can never use: every write
    of the child then waits for it, forever (seen as one gunicorn ``--preload`` worker whose
    spans never reached the store). Only SQLite files need this: a server's locks belong to
    the session, and a hung PostgreSQL held up every fork for the whole wait. All stores
    share one ``_FORK_WAIT_S``: a transaction stuck longer does not hold up the fork.
    """
    deadline = time.monotonic() + _FORK_WAIT_S
    for store in list(open_stores):
        if store._target.sqlite_path is None:
            continue
        lock = store._writer.batches.transaction
        if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            _held_across_fork.append(lock)


def _after_fork_in_parent() -> None:
    while _held_across_fork:
        _held_across_fork.pop().release()


def _after_fork_in_child() -> None:
    _held_across_fork.clear()  # the child's writers start with locks of their own
    for store in list(open_stores):
        store._restart_after_fork()


def _close_at_exit() -> None:
    for store in list(open_stores):
        store.close(min(EXIT_FLUSH_TIMEOUT_S, store._close_timeout))


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
at_exit(_close_at_exit)
