"""The parts of the monitor and the audit store that the health package relies on.

Structural types, so the seam is written down in one place (docs/architecture.md, "Monitor"
and "Store") and the health package stays usable with any object that honours it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ragtrail._records import MetricsSample, Record, SecurityEvent, Severity
from ragtrail._settings import Settings

__all__ = ["MonitorLike", "RedactorLike", "StoreHealthLike", "StoreLike"]


class StoreHealthLike(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def queue_depth(self) -> int: ...
    @property
    def queue_capacity(self) -> int: ...
    @property
    def written(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def outcome_unknown(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def ring_usage(self) -> Mapping[str, Any]: ...
    @property
    def writer_alive(self) -> bool: ...


class StoreLike(Protocol):
    def record(self, rec: Record) -> None: ...
    def health(self) -> StoreHealthLike: ...
    def events(self, *, limit: int = ...) -> Sequence[SecurityEvent]: ...
    def metrics(self, *, limit: int = ...) -> Sequence[MetricsSample]: ...


class RedactorLike(Protocol):
    def redact_text(self, text: str) -> str: ...


class MonitorLike(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> StoreLike: ...
    @property
    def redactor(self) -> RedactorLike: ...

    def security_event(
        self,
        event_type: str,
        severity: Severity | str,
        source: str,
        description: str,
        metadata: dict[str, Any] | None = None,
    ) -> SecurityEvent | None: ...

    def health(self) -> Mapping[str, Any]: ...

    def add_shutdown_hook(self, fn: Any) -> None: ...
