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
from collections.abc import Callable
from pathlib import Path

import pytest
from forking import output_of_forked_child
from store_helpers import make_span

from ragtrail.store import AuditStore

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CHILDREN = 8


def _record_and_flush(store: AuditStore) -> str:
    """In the child: record a span and say whether its own writer committed it."""
    store.record(make_span())
    return "flushed" if store.flush(5.0) else "not flushed"


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
        results = [output_of_forked_child(lambda: _record_and_flush(store))
                   for _ in range(CHILDREN)]
    finally:
        stop.set()
        flood.join(5)
    assert results == ["flushed"] * CHILDREN
    assert store.flush(10)
