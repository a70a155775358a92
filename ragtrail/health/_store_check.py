"""The audit store's own health as a check: ok -> pass, degraded -> warn, failing -> fail."""

from __future__ import annotations

from ragtrail.health._check import CheckResult, HealthCheck, Status
from ragtrail.health._seams import StoreLike

__all__ = ["StoreCheck"]

_STATUS: dict[str, Status] = {"ok": "pass", "degraded": "warn", "failing": "fail"}


class StoreCheck(HealthCheck):
    """Reports ``AuditStore.health()``; observed value is the writer's queue depth.

    Non-critical by default: ``record()`` never blocks the app, so a failing audit store
    should warn (and page someone) rather than take every pod out of service. Pass
    ``critical=True`` where losing the audit trail must stop traffic.
    """

    def __init__(self, store: StoreLike, *, name: str = "store", critical: bool = False,
                 timeout: float | None = None) -> None:
        super().__init__(name, critical=critical, timeout=timeout, measurement="queue",
                         component_type="datastore")
        self.store = store

    def check(self) -> CheckResult:
        health = self.store.health()
        status = _STATUS.get(health.status, "fail")
        details = [f"store {health.status}", f"queue {health.queue_depth}/{health.queue_capacity}",
                   f"written {health.written}", f"dropped {health.dropped}"]
        if health.last_error:
            details.append(f"last error: {health.last_error}")
        return CheckResult(status, "; ".join(details) if status != "pass" else "",
                           observed_value=health.queue_depth, observed_unit="records")
