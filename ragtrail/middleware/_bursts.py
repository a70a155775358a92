"""Authentication and authorisation failures per client, to tell a burst from a typo.

One 401 is a user mistyping a password; ten from one address within a minute is credential
stuffing or token guessing (OWASP ASVS V2.2), so the middleware escalates those to high.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

__all__ = ["FailureBursts"]

# Addresses remembered at once; the least recently failing is forgotten first, so a spray
# from many addresses costs bounded memory.
_MAX_CLIENTS = 10_000


class FailureBursts:
    """Sliding-window failure counts per client, bounded in memory and thread-safe."""

    __slots__ = ("_clients", "_lock", "_threshold", "_window")

    def __init__(self, threshold: int, window: float) -> None:
        self._threshold = threshold
        self._window = window
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def failed(self, client: str, now: float) -> bool:
        """Record a failure at ``now`` (monotonic seconds); True when it completes a burst."""
        with self._lock:
            times = self._clients.get(client)
            if times is None:
                times = self._clients[client] = deque(maxlen=self._threshold)
                if len(self._clients) > _MAX_CLIENTS:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(client)
            times.append(now)
            while times and now - times[0] > self._window:
                times.popleft()
            # The least recently failing clients whose last failure left the window are
            # forgotten as failures go on: a spray from many addresses does not stay for good.
            for _ in range(2):
                oldest = next(iter(self._clients.values()))
                if now - oldest[-1] <= self._window:
                    break
                self._clients.popitem(last=False)
            return len(times) >= self._threshold
