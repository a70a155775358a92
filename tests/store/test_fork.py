"""A process forked while the store's writer is busy (gunicorn ``--preload``, multiprocessing's
fork): the child's own writer must still be able to write the SQLite file.

SQLite tracks the locks of a process's connections in memory; a child forked in the middle of
a write transaction inherited the write lock as held by a connection it can never use, and
its writer waited for it forever (about one fork in twenty with a lightly busy writer, nearly
every fork with a busy one). A fork now waits for the transaction in progress.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import make_span

from ragtrail.store import AuditStore

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CHILDREN = 8


def _flushed_in_forked_child(store: AuditStore) -> bool:
    """Fork; the child records a span and reports whether its writer committed it."""
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+: fork() in a process with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os.close(read)
        store.record(make_span())
        os.write(write, b"1" if store.flush(5.0) else b"0")
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    return answer == "1"


def test_children_forked_while_the_writer_is_busy_can_write(
        store_factory: Callable[..., AuditStore], tmp_path: Path) -> None:
    store = store_factory(f"sqlite:///{tmp_path / 'forked.db'}", batch_linger_seconds=0.0,
                          batch_size=50)
    stop = threading.Event()

    def keep_the_writer_busy() -> None:
        while not stop.is_set():
            for _ in range(200):
                store.record(make_span())
            stop.wait(0.001)

    flood = threading.Thread(target=keep_the_writer_busy, daemon=True)
    flood.start()
    try:
        results = [_flushed_in_forked_child(store) for _ in range(CHILDREN)]
    finally:
        stop.set()
        flood.join(5)
    assert results == [True] * CHILDREN
    assert store.flush(10)
