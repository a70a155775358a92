"""gunicorn settings for the ``--preload`` test: right before each worker is forked, the
master records a burst of spans, as an app warming up with ``@monitored`` calls at import
would, so its audit store's writer is most likely inside a transaction at the fork."""

from __future__ import annotations

from typing import Any

import ragtrail


def pre_fork(server: Any, worker: Any) -> None:
    for n in range(3000):
        ragtrail.start_span(f"warm-up {n % 10}", "function").end()
