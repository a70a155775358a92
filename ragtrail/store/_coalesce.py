"""Coalescing identical events so a flood becomes one row with a growing count (issue 6).

The first event of a (type, source, severity) key opens a window of ``event_coalesce_seconds``
and goes to the writer as it is; the window is only its end time (an int), and, once the event
is written, its row ID. The first repeat inside the window turns it into a ``Slot`` that counts
repeats on the caller's thread. The writer inserts the first event with ``count = 1 + repeats
so far`` and later adds the repeats seen since with ``UPDATE ... SET count = count + n``.

No object per new event: most windows never see a repeat, and an object kept alive for the
window's length reaches the garbage collector's oldest generation, whose growth triggers full
collections (a flood of distinct events into a full ring: 12-15% of the writer's time).

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


def key_of(event: SecurityEvent) -> _Key:
    """An event's coalescing key. The severity as a plain int, not the Severity member: the
    garbage collector tracks enum members, and so every tuple holding one."""
    return (event.event_type, event.source, int(event.severity))


class Slot:
    """A window with repeats (made at the first one), or the overflow row of a source that
    sent too many types; only the latter carries an event to the writer."""

    __slots__ = ("applied", "dirty", "event", "hits", "key", "row_id", "until_us")

    def __init__(self, event: SecurityEvent | None, until_us: int, key: _Key) -> None:
        self.event = event
        self.key = key
        self.until_us = until_us
        self.hits = 0  # repeats; incremented by callers under the coalescer's lock
        self.dirty = False  # queued in Coalescer's dirty list (under the lock)
        self.row_id: int | None = None  # writer thread only, from here down
        self.applied = 0  # repeats already counted in the database


# An open window: its end (the first event still queued), its end and the first event's row
# ID (written), or a Slot (repeats seen). Ints and tuples of ints are never tracked for long.
_Window = int | tuple[int, int] | Slot


class Coalescer:
    """The open windows by key, and the slots with repeats the database has not seen."""

    def __init__(self, window_s: float, max_keys: int,
                 max_types_per_source: int = MAX_TYPES_PER_SOURCE) -> None:
        self.window_us = int(window_s * 1_000_000)
        self.max_keys = max_keys
        self.max_types_per_source = max_types_per_source
        self.open: dict[_Key, _Window] = {}
        self.lock = threading.Lock()
        self.repeats = 0
        self._dirty: list[Slot] = []
        # Slots whose first event is still queued, by (key, window end): the writer's way to them.
        self._unwritten: dict[tuple[_Key, int], Slot] = {}
        # (source, severity) -> new keys opened in its current window, and when that ends.
        self._types: dict[tuple[str, int], tuple[int, int]] = {}

    def admit(self, event: SecurityEvent) -> SecurityEvent | Slot | None:
        """None when ``event`` repeats an open window (counted); else what to queue: the
        event itself (``register`` opens its window once queued) or an overflow ``Slot``.

        Caller's thread: a dict lookup, and a lock only for repeats (``+=`` is not atomic).
        """
        key = key_of(event)
        if self._counted_as_repeat(key, event.time_us):
            return None
        level = key[2]
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
        return event

    def _counted_as_repeat(self, key: _Key, time_us: int) -> bool:
        window = self.open.get(key)
        if window is None:
            return False
        if isinstance(window, Slot):
            if time_us >= window.until_us or window.row_id == -1:
                return False
            with self.lock:
                window.hits += 1
                self.repeats += 1
                if not window.dirty:
                    window.dirty = True
                    self._dirty.append(window)
            return True
        until_us = _until(window)
        if time_us >= until_us:
            return False
        with self.lock:
            if self.open.get(key) is window:  # the first repeat: the window gets a Slot
                slot = Slot(None, until_us, key)
                if isinstance(window, int):  # its event is queued: the writer will look for it
                    self._unwritten[(key, until_us)] = slot
                else:
                    slot.row_id = window[1]
                slot.hits, slot.dirty = 1, True
                self._dirty.append(slot)
                self.repeats += 1
                self.open[key] = slot
                return True
        return self._counted_as_repeat(key, time_us)  # another caller changed it: again

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

    def register(self, item: SecurityEvent | Slot) -> None:
        """Open the window of a queued event (or overflow slot); beyond ``max_keys`` it stays
        closed (that event is stored alone) so distinct keys cannot grow memory unbounded,
        unless it replaces its key's expired window (which takes no room)."""
        if self.window_us <= 0:
            return
        window: _Window
        if type(item) is Slot:  # type() rather than isinstance(): record()'s path
            key, window = item.key, item
        else:
            event: SecurityEvent = item  # type: ignore[assignment]
            key, window = key_of(event), event.time_us + self.window_us
        if len(self.open) < self.max_keys or key in self.open:
            self.open[key] = window

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

    def _window_of(self, event: SecurityEvent) -> tuple[_Key, int]:
        """The (key, window end) a queued ``event`` opened: how the writer finds its window."""
        return key_of(event), event.time_us + self.window_us

    def promoted(self, event: SecurityEvent) -> Slot | None:
        """The Slot a queued ``event``'s window got from repeats before it was written (kept
        apart from ``open``, which may have dropped or replaced the window meanwhile)."""
        return self._unwritten.get(self._window_of(event))

    def written(self, events: list[SecurityEvent], row_ids: list[int]) -> None:
        """Committed: each window opened by one of these events learns its row ID."""
        with self.lock:
            for event, row_id in zip(events, row_ids, strict=True):
                key, until_us = queued = self._window_of(event)
                slot = self._unwritten.pop(queued, None)
                if slot is not None:
                    if slot.row_id is None:  # got its Slot after the row was built
                        slot.row_id = row_id  # its repeats go in by UPDATE
                elif self.open.get(key) == until_us:
                    self.open[key] = (until_us, row_id)

    def discard(self, item: SecurityEvent | Slot) -> None:
        """``item``'s event was rejected: later repeats open a new window instead."""
        if isinstance(item, Slot):
            item.row_id = -1
            with self.lock:
                if self.open.get(item.key) is item:
                    del self.open[item.key]
            return
        key, until_us = queued = self._window_of(item)
        with self.lock:
            slot = self._unwritten.pop(queued, None)
            if slot is not None:
                slot.row_id = -1
            window = self.open.get(key)
            if window == until_us or (window is not None and window is slot):
                del self.open[key]

    def close_expired(self, now_us: int) -> None:
        """Forget windows that ended (a new dict: callers may be reading the old one; under
        the lock, so a window getting its Slot meanwhile is not lost). Callers open windows
        without the lock, and a garbage collection while iterating lets them run: the sweep
        reads a ``copy()``, taken in one step, never the live table."""
        with self.lock:
            self.open = {key: window for key, window in self.open.copy().items()
                         if _until(window) > now_us}
        self._types = {source: counted for source, counted in self._types.copy().items()
                       if counted[1] > now_us}


def _until(window: _Window) -> int:
    if isinstance(window, int):
        return window
    if isinstance(window, Slot):
        return window.until_us
    return window[0]
