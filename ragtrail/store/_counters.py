"""What the writer and ``record()`` count in this process, for ``health()`` and for the
lifetime totals stored with each batch."""

from __future__ import annotations

import threading
import time

__all__ = ["Counters"]


class Counters:
    """Totals shared by callers (drops) and the writer; a lock keeps increments exact."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.written = 0
        self.dropped = 0
        self.outcome_unknown = 0  # lost to close() in a batch whose COMMIT went unanswered
        self.last_drop: float | None = None
        self.last_error: str | None = None
        self.last_error_time_us: int | None = None
        self.last_error_at: float | None = None
        self._unsaved: dict[str, int] = {}  # drops not yet added to the stored totals

    def drop(self, ring: str, n: int = 1) -> None:
        with self.lock:
            self.dropped += n
            self._unsaved[ring] = self._unsaved.get(ring, 0) + n
            self.last_drop = time.monotonic()

    def unknown(self, n: int) -> None:
        with self.lock:
            self.outcome_unknown += n

    def take_unsaved(self) -> dict[str, int]:
        with self.lock:
            unsaved, self._unsaved = self._unsaved, {}
        return unsaved

    def restore_unsaved(self, unsaved: dict[str, int]) -> None:
        with self.lock:
            for ring, n in unsaved.items():
                self._unsaved[ring] = self._unsaved.get(ring, 0) + n

    @property
    def has_unsaved(self) -> bool:
        return bool(self._unsaved)

    def error(self, message: str) -> None:
        self.last_error = message
        self.last_error_time_us = time.time_ns() // 1000
        self.last_error_at = time.monotonic()
