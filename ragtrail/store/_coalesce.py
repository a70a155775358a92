"""Coalescing identical events so a flood becomes one row with a growing count (issue 6).

The first event of a (type, source, severity) key opens a window of ``event_coalesce_seconds``
and goes to the writer inside a ``Slot``; repeats inside the window only bump the slot's
counter on the caller's thread. The writer inserts the first event with ``count = 1 + repeats
so far`` and later adds the repeats seen since with ``UPDATE ... SET count = count + n``.

A source that varies its high or critical event types to escape coalescing gets
``MAX_TYPES_PER_SOURCE`` keys per severity and window; every further new type from it joins one
overflow row for that (source, severity), whose description says so. So one source adds a
bounded number of high and critical rows per window whatever it sends, and cannot push other
sources' out of the ring's reserves for them. Low and medium events are not counted (it would
cost every new event on the caller's thread): their floods only compete with each other, as
the ring's per-severity reserves keep them from evicting anything more severe.
"""

from __future__ import annotations

import dataclasses
import threading

from ragtrail._records import SecurityEvent, Severity

__all__ = ["MAX_TYPES_PER_SOURCE", "Coalescer", "Slot"]

MAX_TYPES_PER_SOURCE = 32  # the middleware emits about ten types: room for honest sources
_CAPPED_FROM = int(Severity.HIGH)
_OVERFLOW = "\x00overflow"  # the overflow key's type: no real event type contains NUL

_Key = tuple[str, str, int]


class Slot:
    """One coalescing window: the event that opened it and the repeats seen since."""

    __slots__ = ("applied", "dirty", "event", "hits", "key", "row_id", "until_us")

    def __init__(self, event: SecurityEvent, until_us: int, key: _Key) -> None:
        self.event = event
        self.key = key
        self.until_us = until_us
        self.hits = 0  # repeats; incremented by callers under the coalescer's lock
        self.dirty = False  # queued in Coalescer's dirty list (under the lock)
        self.row_id: int | None = None  # writer thread only, from here down
        self.applied = 0  # repeats already counted in the database


class Coalescer:
    """The open windows by key, and the slots with repeats the database has not seen."""

    def __init__(self, window_s: float, max_keys: int,
                 max_types_per_source: int = MAX_TYPES_PER_SOURCE) -> None:
        self.window_us = int(window_s * 1_000_000)
        self.max_keys = max_keys
        self.max_types_per_source = max_types_per_source
        self.open: dict[_Key, Slot] = {}
        self.lock = threading.Lock()
        self.repeats = 0
        self._dirty: list[Slot] = []
        # (source, severity) -> new keys opened in its current window, and when that ends.
        self._types: dict[tuple[str, int], tuple[int, int]] = {}

    def admit(self, event: SecurityEvent) -> Slot | None:
        """None when ``event`` repeats an open window (counted); else a new, unregistered slot.

        Caller's thread: a dict lookup, and a lock only for repeats (``+=`` is not atomic).
        """
        # A plain int, not the Severity member: the garbage collector tracks enum members,
        # and so every key tuple holding one for as long as its window stays open; with ints
        # the tuples are untracked at their first collection and never reach the old
        # generation, whose growth is what triggers full collections.
        level = int(event.severity)
        key = (event.event_type, event.source, level)
        if self._counted_as_repeat(key, event.time_us):
            return None
        if (level >= _CAPPED_FROM and self.window_us > 0
                and self._one_type_too_many(event.source, level, event.time_us)):
            key = (_OVERFLOW, event.source, level)
            if self._counted_as_repeat(key, event.time_us):
                return None
            event = dataclasses.replace(event, description=(
                f"more than {self.max_types_per_source} event types from this source in "
                f"{self.window_us // 1_000_000} s: this row counts the rest; the first was: "
                f"{event.description}"))
        return Slot(event, event.time_us + self.window_us, key)

    def _counted_as_repeat(self, key: _Key, time_us: int) -> bool:
        slot = self.open.get(key)
        if slot is None or time_us >= slot.until_us or slot.row_id == -1:
            return False
        with self.lock:
            slot.hits += 1
            self.repeats += 1
            if not slot.dirty:
                slot.dirty = True
                self._dirty.append(slot)
        return True

    def _one_type_too_many(self, source_name: str, level: int, time_us: int) -> bool:
        """Count a new high or critical key for the event's (source, severity); True past
        the cap.

        Unlocked: racing callers may miscount by one or two, which only moves the cap."""
        source = (source_name, level)
        opened, until_us = self._types.get(source, (0, 0))
        if time_us >= until_us:
            opened, until_us = 0, time_us + self.window_us
        opened += 1
        if source in self._types or len(self._types) < self.max_keys:
            self._types[source] = (opened, until_us)
        return opened > self.max_types_per_source

    def register(self, slot: Slot) -> None:
        """Open ``slot``'s window once its event is queued; beyond ``max_keys`` it stays
        closed (that event is stored alone) so distinct keys cannot grow memory unbounded."""
        if self.window_us > 0 and len(self.open) < self.max_keys:
            self.open[slot.key] = slot

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
        with self.lock:
            if self.open.get(slot.key) is slot:
                del self.open[slot.key]

    def close_expired(self, now_us: int) -> None:
        """Forget windows that ended (a new dict: callers may be reading the old one)."""
        self.open = {key: slot for key, slot in list(self.open.items())
                     if slot.until_us > now_us}
        self._types = {source: counted for source, counted in list(self._types.items())
                       if counted[1] > now_us}
