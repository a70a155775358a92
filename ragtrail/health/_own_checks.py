"""ragtrail's own pipelines as checks: the audit store's writer and the OTLP export.

Their health says ok, degraded or failing; as checks: pass, warn, fail. Both are
non-critical by default: neither ever blocks the app, so losing them should warn (and page
someone) rather than take every pod out of service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ragtrail.health._check import CheckResult, HealthCheck, Status
from ragtrail.health._seams import MonitorLike, StoreLike

__all__ = ["ExportCheck", "StoreCheck"]

_STATUS: dict[str, Status] = {"ok": "pass", "degraded": "warn", "failing": "fail"}


class StoreCheck(HealthCheck):
    """Reports ``AuditStore.health()``; observed value is the writer's queue depth.

    Pass ``critical=True`` where losing the audit trail must stop traffic.
    """

    def __init__(self, store: StoreLike, *, name: str = "store", critical: bool = False,
                 timeout: float | None = None) -> None:
        super().__init__(name, critical=critical, timeout=timeout, measurement="queue",
                         component_type="datastore")
        self.store = store

    def check(self) -> CheckResult:
        health = self.store.health()
        return _result(health.status, [
            f"store {health.status}", f"queue {health.queue_depth}/{health.queue_capacity}",
            f"written {health.written}", f"dropped {health.dropped}",
            # lost at close() in a batch the server may have committed
            *([f"outcome unknown {health.outcome_unknown}"] if health.outcome_unknown else [])],
            health.last_error, health.queue_depth, "records")


class ExportCheck(HealthCheck):
    """Reports the monitor's OpenTelemetry span export (a collector down, hanging or
    refusing); observed value is the export queue's depth. ``HealthService`` adds one when
    the monitor exports."""

    def __init__(self, monitor: MonitorLike, *, name: str = "export", critical: bool = False,
                 timeout: float | None = None) -> None:
        super().__init__(name, critical=critical, timeout=timeout, measurement="queue",
                         component_type="component")
        self.monitor = monitor

    def check(self) -> CheckResult:
        health: Mapping[str, Any] | None = self.monitor.health().get("exporter")
        if health is None:
            return CheckResult("pass", "no export configured")
        target = " ".join(str(health[part]) for part in ("mode", "protocol", "endpoint")
                          if health.get(part))
        return _result(health.get("status", ""), [
            f"export {health.get('status')} ({target})",
            f"queue {health.get('queue_depth')}/{health.get('queue_capacity')}",
            *(f"{name} {health.get(name)}" for name in ("exported", "failed", "dropped"))],
            health.get("last_error"), health.get("queue_depth"), "spans")


def _result(state: str, details: list[str], last_error: str | None, depth: int | None,
            unit: str) -> CheckResult:
    """A pipeline's ok/degraded/failing as a check; its counters are the output unless it
    passes."""
    status = _STATUS.get(state, "fail")
    if last_error:
        details.append(f"last error: {last_error}")
    return CheckResult(status, "; ".join(details) if status != "pass" else "",
                       observed_value=depth, observed_unit=unit)
