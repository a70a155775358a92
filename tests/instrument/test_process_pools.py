"""Spans recorded in multiprocessing workers reach the store when the workers exit.

multiprocessing ends its workers with ``os._exit()``, so the store's ``atexit`` flush never ran
there: 20 ``embed`` calls mapped over a ``ProcessPoolExecutor`` left 0-1 spans, the rest still
queued in the workers' writers when they exited.
"""

from __future__ import annotations

import collections
import multiprocessing
import subprocess
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ragtrail.instrument import Monitor, configure, monitored


@monitored(kind="embedding")
def embed(text: str) -> list[float]:
    return [float(len(text))]


def configure_worker(store_url: str) -> None:
    configure(store_url=store_url)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_spans_of_pool_workers_are_stored(method: str, tmp_path: Path) -> None:
    """Forked workers inherit the monitor; spawned ones configure it in the initializer, as
    docs/decorator.md says."""
    store_url = f"sqlite:///{tmp_path / 'audit.db'}"
    monitor: Monitor = configure(store_url=store_url)
    options: dict[str, Any] = {} if method == "fork" else {
        "initializer": configure_worker, "initargs": (store_url,)}
    texts = [f"chunk {n}" for n in range(20)]
    with warnings.catch_warnings():  # 3.12+: fork() in a process with threads (the store's)
        warnings.simplefilter("ignore", DeprecationWarning)
        with ProcessPoolExecutor(2 if method == "fork" else 1,
                                 mp_context=multiprocessing.get_context(method),
                                 **options) as pool:
            assert list(pool.map(embed, texts)) == [[7.0]] * 10 + [[8.0]] * 10
    assert monitor.store.flush(timeout=10)
    spans = monitor.store.spans(name="embed", limit=None)
    assert len(spans) == len(texts)


_NESTED = '''
import multiprocessing as mp, os, sys
from ragtrail._process_exit import at_exit

def handler():
    with open(sys.argv[1], "a") as log:
        log.write(f"{os.getpid()}\\n")

def leaf():
    pass

def middle():
    child = mp.get_context("fork").Process(target=leaf)
    child.start()
    child.join()

def spawned():
    at_exit(handler)  # as configure() in a pool's initializer

if __name__ == "__main__":
    at_exit(handler)
    for method, target in (("fork", middle), ("spawn", spawned)):
        worker = mp.get_context(method).Process(target=target)
        worker.start()
        worker.join()
'''


def test_each_process_runs_an_exit_handler_once(tmp_path: Path) -> None:
    """A worker forked by a worker inherited its parent's after-fork registration and made
    its own; a spawned worker (which ends with sys.exit()) ran atexit and the finalizer."""
    script, log = tmp_path / "nested.py", tmp_path / "ran.log"
    script.write_text(_NESTED)
    done = subprocess.run([sys.executable, "-W", "ignore", str(script), str(log)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-800:]
    runs = collections.Counter(log.read_text().split())
    assert len(runs) == 4  # the main process, the fork, the fork's fork, the spawned one
    assert set(runs.values()) == {1}
