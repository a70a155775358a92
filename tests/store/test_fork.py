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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from forking import output_of_forked_child
from store_helpers import make_span, wait_for

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


@pytest.mark.postgres
def test_a_hung_postgresql_does_not_hold_up_forks(
        postgres_db_url: str, postgres_server: Any,
        store_factory: Callable[..., AuditStore]) -> None:
    """Only SQLite files need a fork to wait for the transaction in progress: with the
    server frozen and the writer stuck in a query, a fork went ahead only after the whole
    wait (10 s each: gunicorn forking four workers took 40 s)."""
    store = store_factory(postgres_db_url, batch_size=5, close_timeout=0.2)
    store.record(make_span())
    assert store.flush(10)
    postgres_server.freeze()
    try:
        store.record(make_span())
        wait_for(lambda: store.health().queue_depth == 0)  # the writer took it: stuck
        began = time.monotonic()
        assert output_of_forked_child(lambda: "forked") == "forked"
        assert time.monotonic() - began < 3  # about 10 ms; the wait is 10 s
    finally:
        postgres_server.thaw()
    assert store.flush(10)
