"""Who may read the detailed health routes, which expose internals.

With ``settings.api_token`` set, a request needs ``Authorization: Bearer <token>`` (RFC 6750).
Both sides are hashed to equal-length digests before ``hmac.compare_digest``, so neither the
comparison time nor an early length mismatch reveals anything about the token. Without a token,
production hides the routes (404) unless ``settings.detailed_routes_open``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping

from ragtrail._records import Severity
from ragtrail._settings import Settings
from ragtrail.health._seams import MonitorLike

__all__ = ["DetailedAccess", "Headers"]

Headers = Mapping[str, str] | Iterable[tuple[bytes, bytes]]
_SOURCE = "ragtrail.health"


class DetailedAccess:
    """Who may see the detailed routes: hidden (404) for everyone, or a bearer token (401
    without it); records failed attempts."""

    def __init__(self, settings: Settings, monitor: MonitorLike, *, burst_limit: int = 10,
                 burst_window: float = 60.0) -> None:
        token = settings.api_token
        self._digest = _digest(token) if token else None
        self._hidden = token is None and settings.is_production and \
            not settings.detailed_routes_open
        self._monitor = monitor
        self._burst_limit = burst_limit
        self._burst_window = burst_window
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    @property
    def requires_token(self) -> bool:
        return self._digest is not None

    @property
    def hidden(self) -> bool:
        """Production without a token: the detailed routes answer as if they did not exist."""
        return self._hidden

    def allows(self, headers: Headers, path: str, client: str | None = None) -> bool:
        """Whether the request may see a detailed route (not ``hidden``); a refusal is
        recorded as a failed login."""
        if self._digest is None:
            return True
        supplied = _bearer_token(headers)
        if supplied is not None and hmac.compare_digest(_digest(supplied), self._digest):
            return True
        self._record_failure(path, client, "missing" if supplied is None else "invalid")
        return False

    def _record_failure(self, path: str, client: str | None, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures.append(now)
            while self._failures and self._failures[0] < now - self._burst_window:
                self._failures.popleft()
            recent = len(self._failures)
        # OWASP logging vocabulary: authn_login_fail; a burst suggests guessing, so it escalates.
        burst = recent >= self._burst_limit  # the tenth failure in a minute, as the middleware
        metadata: dict[str, object] = {"path": path, "reason": reason,
                                       "failures_in_window": recent}
        if client:
            metadata["client"] = client
        try:
            self._monitor.security_event(
                # The client as the source, as the middleware's events have it: failures
                # coalesce per client, so one guesser cannot hide the others.
                "authn_login_fail", Severity.HIGH if burst else Severity.MEDIUM,
                client or _SOURCE,
                f"{reason} bearer token for {path}" + (" (repeated failures)" if burst else ""),
                metadata)
        except Exception:  # recording must never turn a 401 into a 500
            return


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _bearer_token(headers: Headers) -> str | None:
    value: str | None = None
    if isinstance(headers, Mapping):
        for name, raw in headers.items():
            if name.lower() == "authorization":
                value = raw
                break
    else:
        for name_bytes, raw_bytes in headers:
            if name_bytes.lower() == b"authorization":
                value = raw_bytes.decode("latin-1")
                break
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    # The auth-scheme is case-insensitive (RFC 9110 section 11.1).
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
