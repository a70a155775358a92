"""Coalescing identical events so a flood becomes one row with a growing count (issue 6).

The first event of a (type, source, severity) key opens a window of ``event_coalesce_seconds``
and goes to the writer inside a ``Slot``; repeats inside the window only bump the slot's
counter on the caller's thread. The writer inserts the first event with ``count = 1 + repeats
so far`` and later adds the repeats seen since with ``UPDATE ... SET count = count + n``.
"""

from __future__ import annotations

import threading

from ragtrail._records import SecurityEvent

__all__ = ["Coalescer", "Slot"]

_Key = tuple[str, str, int]


class Slot:
    """One coalescing window: the event that opened it and the repeats seen since."""

    __slots__ = ("applied", "dirty", "event", "hits", "row_id", "until_us")

    def __init__(self, event: SecurityEvent, until_us: int) -> None:
        self.event = event
        self.until_us = until_us
        self.hits = 0  # repeats; incremented by callers under the coalescer's lock
        self.dirty = False  # queued in Coalescer's dirty list (under the lock)
        self.row_id: int | None = None  # writer thread only, from here down
        self.applied = 0  # repeats already counted in the database


class Coalescer:
    """The open windows by key, and the slots with repeats the database has not seen."""

    def __init__(self, window_s: float, max_keys: int) -> None:
        self.window_us = int(window_s * 1_000_000)
        self.max_keys = max_keys
        self.open: dict[_Key, Slot] = {}
        self.lock = threading.Lock()
        self.repeats = 0
        self._dirty: list[Slot] = []

    def admit(self, event: SecurityEvent) -> Slot | None:
        """None when ``event`` repeats an open window (counted); else a new, unregistered slot.

        Caller's thread: a dict lookup, and a lock only for repeats (``+=`` is not atomic).
        """
        slot = self.open.get((event.event_type, event.source, event.severity))
        if slot is not None and event.time_us < slot.until_us and slot.row_id != -1:
            with self.lock:
                slot.hits += 1
                self.repeats += 1
                if not slot.dirty:
                    slot.dirty = True
                    self._dirty.append(slot)
            return None
        return Slot(event, event.time_us + self.window_us)

    def register(self, slot: Slot) -> None:
        """Open ``slot``'s window once its event is queued; beyond ``max_keys`` it stays
        closed (that event is stored alone) so distinct keys cannot grow memory unbounded."""
        if self.window_us > 0 and len(self.open) < self.max_keys:
            event = slot.event
            self.open[(event.event_type, event.source, event.severity)] = slot

    # -- writer thread ---------------------------------------------------------------------

    def take_dirty(self) -> list[Slot]:
        with self.lock:
            dirty, self._dirty = self._dirty, []
            for slot in dirty:
                slot.dirty = False
        return dirty

    def restore_dirty(self, slots: list[Slot]) -> None:
        """Put back slots whose repeats did not reach the database (a failed or early write)."""
        with self.lock:
            for slot in slots:
                if not slot.dirty:
                    slot.dirty = True
                    self._dirty.append(slot)

    @property
    def has_dirty(self) -> bool:
        return bool(self._dirty)

    def discard(self, slot: Slot) -> None:
        """``slot``'s event was rejected: later repeats open a new window instead."""
        slot.row_id = -1
        event = slot.event
        key = (event.event_type, event.source, event.severity)
        with self.lock:
            if self.open.get(key) is slot:
                del self.open[key]

    def close_expired(self, now_us: int) -> None:
        """Forget windows that ended (a new dict: callers may be reading the old one)."""
        self.open = {key: slot for key, slot in list(self.open.items())
                     if slot.until_us > now_us}
