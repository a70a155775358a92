"""``capture()``: what ragtrail records while a block runs, for the application's own tests.

The block runs under a monitor of its own, on a real store in a temporary directory, so a
test sees exactly what production would keep (redacted, coalesced, as stored), never writes
into the app's trail, and never exports or pages: the environment's ``RAGTRAIL_*`` and
``OTEL_*`` variables are ignored. Whatever monitor was current comes back afterwards,
untouched. The store stays readable after the block and is deleted with the ``Trail``.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ragtrail._records import SecurityEvent, SpanRecord
from ragtrail._settings import Settings
from ragtrail.instrument import _monitor
from ragtrail.instrument._monitor import Monitor
from ragtrail.testing._stable import IdsMode, StableRecords, TimesMode

__all__ = ["Trail", "capture"]

_R = TypeVar("_R", SpanRecord, SecurityEvent)

_FLUSH_TIMEOUT_S = 10.0


class Trail:
    """The spans and security events recorded inside one ``capture()`` block.

    Each read waits for the store's writer first, so what the code under test recorded is
    there; lists are oldest first, and take the store's own filters (``name=``, ``kind=``,
    ``errors_only=``, ``correlation_id=`` for spans; ``event_type=``, ``min_severity=``,
    ``source=`` for events). Under ``capture(ids="sequential")`` or ``times="fixed"`` they
    come back with stable IDs and times (and take the stable IDs as filters).
    """

    def __init__(self, monitor: Monitor, stable: StableRecords | None = None) -> None:
        self.monitor = monitor
        self._stable = stable if stable is not None and stable.active else None

    def flush(self) -> None:
        """Wait until everything recorded so far is stored (raises if the writer is stuck)."""
        if not self.monitor.flush(_FLUSH_TIMEOUT_S):
            raise TimeoutError(
                f"ragtrail's store did not finish writing within {_FLUSH_TIMEOUT_S:g} s: "
                f"{self.monitor.store.health()}")

    def spans(self, **filters: Any) -> list[SpanRecord]:
        """Finished spans, oldest first."""
        return self._read(self.monitor.store.spans, StableRecords.span, filters)

    def span(self, name: str) -> SpanRecord:
        """The one finished span called ``name``; fails naming the spans there are if there
        is no such span or more than one."""
        spans = self.spans()
        matching = [span for span in spans if span.name == name]
        if len(matching) != 1:
            raise AssertionError(
                f"expected one span named {name!r}, found {len(matching)}; "
                f"spans recorded: {[span.name for span in spans]}")
        return matching[0]

    def events(self, **filters: Any) -> list[SecurityEvent]:
        """Security events, oldest first."""
        return self._read(self.monitor.store.events, StableRecords.event, filters)

    def _read(self, query: Callable[..., list[_R]], stabilise: Callable[[StableRecords, _R], _R],
              filters: dict[str, Any]) -> list[_R]:
        """Flush and read oldest first; with stable records asked for, number what was stored
        since the last read first, so an ID reads the same whichever read (and filter) meets it
        first."""
        self.flush()
        stable = self._stable
        if stable is None:
            return query(limit=None, **filters)[::-1]
        store = self.monitor.store
        stable.learn(store.spans(limit=None)[::-1], store.events(limit=None)[::-1])
        return [stabilise(stable, record)
                for record in query(limit=None, **stable.filters(filters))[::-1]]


@contextmanager
def capture(*, ids: IdsMode = "random", times: TimesMode = "real",
            **settings: Any) -> Iterator[Trail]:
    """Record what the block does under a monitor of its own; read it from the ``Trail``.

    Keyword arguments are settings, as for ``ragtrail.configure()`` (the environment is not
    read; the store is a new SQLite file, deleted with the ``Trail``). Alert callbacks
    registered with ``@ragtrail.on_alert`` are called as in production.

    For snapshot tests, ``ids="sequential"`` reads trace, span and correlation IDs back
    numbered 1, 2, 3... in the order they were stored, and ``times="fixed"`` reads every
    time back as 2000-01-01T00:00:00Z with zero durations. The code in the block runs
    exactly as without them.

    >>> with capture() as trail:
    ...     retrieve("refund policy")
    >>> trail.span("retrieve").status
    'ok'
    """
    stable = StableRecords(ids, times)  # validates both before anything starts
    directory = tempfile.mkdtemp(prefix="ragtrail-capture-")
    try:
        store = Path(directory, "capture.db")
        monitor = Monitor(Settings.from_env({}, **{"store_url": f"sqlite:///{store}",
                                                   "service_name": "ragtrail-capture",
                                                   **settings}))
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    trail = Trail(monitor, stable)
    weakref.finalize(trail, shutil.rmtree, directory, ignore_errors=True)
    with _monitor._lock:
        mine = _Open(previous=_monitor._active)
        _open.append(mine)
        _monitor._install(monitor)
    try:
        yield trail
    finally:
        with _monitor._lock:
            _open.remove(mine)
            if _monitor._active is monitor:  # not replaced by configure() in the block
                _monitor._active = mine.previous
            for other in _open:  # a capture begun inside this one and still open
                if other.previous is monitor:
                    other.previous = mine.previous
        monitor.shutdown(_FLUSH_TIMEOUT_S)


@dataclass
class _Open:
    """An open capture: the monitor current before it, to put back at its end."""

    previous: Monitor | None


# Captures open now, in any thread: two that end in the order they began must still hand
# the app its own monitor back, never one already shut down.
_open: list[_Open] = []
