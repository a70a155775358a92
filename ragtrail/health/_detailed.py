"""The detailed routes: every check with its output, one check refreshed on demand, and the
``/api/monitoring`` overview. Access control happens before these are called (``_auth``).
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl

from ragtrail.health._check import HealthCheck, Status, aggregate, worst
from ragtrail.health._monitoring import collect, collect_live, metrics_document
from ragtrail.health._render import (
    HEALTH_JSON,
    TEXT,
    Deferred,
    HealthResponse,
    check_entry,
    dumps,
    health_document,
    iso_time,
    respond_with,
)
from ragtrail.health._routes import flag
from ragtrail.health._runner import run_in_thread

if TYPE_CHECKING:
    from ragtrail.health._service import HealthService

__all__ = ["DetailedRoutes"]

_MONITORING_MAX_AGE = 2.0  # seconds a collection is reused: the store is not queried per hit


class _Snapshot(NamedTuple):
    """One ``/api/monitoring`` collection: when (monotonic, and wall clock in us), and what."""

    at: float
    collected_us: int | None
    parts: dict[str, Any]


class DetailedRoutes:
    """Renders the detailed routes of one HealthService; holds their rate limit and cache."""

    def __init__(self, service: HealthService, *, refresh_min_interval: float,
                 events_limit: int) -> None:
        self._service = service
        self._refresh_min_interval = refresh_min_interval
        self._events_limit = events_limit
        self._lock = threading.Lock()
        self._refreshed_at: dict[str, float] = {}
        self._snapshot: _Snapshot | None = None
        self._collecting: concurrent.futures.Future[_Snapshot] | None = None
        self._collecting_since = 0.0

    def detailed(self, head: bool) -> HealthResponse:
        service = self._service
        status, output = service.readiness()
        results = service.results
        checks = {c.key: [check_entry(c, results.get(c.name), detailed=True)]
                  for c in service.checks}
        for key, live_status, live_output in service.liveness():
            entry: dict[str, Any] = {"componentId": key.partition(":")[0], "status": live_status,
                                     "componentType": "system", "critical": True}
            if live_output:
                entry["output"] = live_output
            checks[key] = [entry]
        return self._document(status, "health of", head, output, checks)

    def dependencies(self, head: bool, query: str) -> HealthResponse | Deferred:
        params = parse_qsl(query, keep_blank_values=True)
        names = [v for k, v in params if k == "check"]
        known = {c.name: c for c in self._service.checks}
        if any(n not in known for n in names):
            return respond_with(404, b"unknown check", TEXT, head=head)
        selected = [known[n] for n in names] if names else list(known.values())
        if not any(k == "refresh" and flag(v) for k, v in params):
            return self._dependencies_document(selected, head)
        if len(names) != 1:
            return respond_with(400, b"refresh needs exactly one check=name", TEXT, head=head)
        wait = self._claim_refresh(names[0])
        if wait > 0:
            return respond_with(429, b"this check was refreshed moments ago", TEXT, head=head,
                                extra=[("retry-after", str(math.ceil(wait)))])
        future = self._service.refresh(names[0])
        timeout = known[names[0]].timeout or self._service.settings.health_check_timeout

        def finish(done: bool) -> HealthResponse:
            if not done:
                return self._dependencies_document(
                    selected, head, note="refresh started; this answer is cached", code=202)
            # The runner was stopped before or during the run: what is shown is not fresh.
            error = "cancelled" if future.cancelled() else future.exception()
            if error is not None:
                return self._dependencies_document(
                    selected, head, note=f"refresh failed ({error}); this answer is cached")
            return self._dependencies_document(selected, head, fresh=names[0])

        # The run is bounded by the check's timeout; the extra second covers scheduling.
        return Deferred(future, timeout + 1.0, finish)

    def monitoring(self, head: bool) -> HealthResponse | Deferred:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - snapshot.at < _MONITORING_MAX_AGE:
            return self._monitoring_document(snapshot, head)
        service = self._service
        with self._lock:  # single flight: one collection at a time, shared by all waiters
            future = self._collecting
            if future is None or future.done():
                future = run_in_thread(self._collect)
                future.add_done_callback(self._keep)
                self._collecting = future
                self._collecting_since = time.monotonic()
            waited = time.monotonic() - self._collecting_since
        timeout = service.settings.health_check_timeout
        if waited >= timeout:  # stuck on a hung database: every caller would wait in vain
            return self._monitoring_fallback(head, self._not_answering())

        def finish(done: bool) -> HealthResponse:
            if not done:
                return self._monitoring_fallback(head, self._not_answering())
            if future.exception() is None:
                return self._monitoring_document(future.result(), head)
            return self._monitoring_fallback(
                head, f"the last collection failed ({type(future.exception()).__name__})")

        return Deferred(future, timeout - waited, finish)

    def _collect(self) -> _Snapshot:
        service = self._service
        started_us = time.time_ns() // 1000
        parts = collect(service.monitor, service.sampler, self._events_limit)
        # Reused for _MONITORING_MAX_AGE from when it is ready: a slow collection is still
        # worth keeping.
        return _Snapshot(time.monotonic(), started_us, parts)

    # -- rendering ----------------------------------------------------------------------------

    def _dependencies_document(self, checks: list[HealthCheck], head: bool, *,
                               fresh: str | None = None, note: str = "",
                               code: int | None = None) -> HealthResponse:
        results = self._service.results
        status, output = aggregate(checks, results)
        document = {c.key: [check_entry(c, results.get(c.name), detailed=True,
                                        cached=c.name != fresh)] for c in checks}
        return self._document(status, "dependencies of", head, output, document,
                              notes=[note] if note else [], code=code)

    def _document(self, status: Status, what: str, head: bool, output: str,
                  checks: dict[str, list[dict[str, Any]]], *, notes: list[str] | None = None,
                  code: int | None = None) -> HealthResponse:
        settings = self._service.settings
        document = health_document(status, service=settings.service_name,
                                   version=settings.service_version,
                                   description=f"{what} {settings.service_name}",
                                   output=output, notes=notes or (), checks=checks)
        if code is None:
            code = 503 if status == "fail" else 200
        return respond_with(code, dumps(document), HEALTH_JSON, head=head)

    def _not_answering(self) -> str:
        waited = time.monotonic() - self._collecting_since
        return f"the audit store has not answered for {waited:.1f} s"

    def _monitoring_fallback(self, head: bool, why: str) -> HealthResponse:
        """No collection now: the last one's events (or none), with what lives in memory
        current, saying why."""
        service = self._service
        last = self._snapshot
        parts = dict(last.parts) if last is not None else {
            "events": {"error": "unavailable (the store has not answered yet)"},
            "metrics": None}
        if service.sampler is not None and service.sampler.latest is not None:
            parts["metrics"] = metrics_document(service.sampler.latest, service.sampler)
        parts.update(collect_live(service.monitor))
        fallback = _Snapshot(time.monotonic(), last.collected_us if last is not None else None,
                             parts)
        told = "events are from the last collection" if last is not None else "no events yet"
        return self._monitoring_document(fallback, head,
                                         stale=f"{why}; {told}, counters are current")

    def _monitoring_document(self, snapshot: _Snapshot, head: bool, *,
                             stale: str | None = None) -> HealthResponse:
        service = self._service
        settings = service.settings
        results = service.results
        collected = snapshot.collected_us
        ready, output = service.readiness()
        # A health document (status and checks as the probe routes give them), with the
        # overview in members of its own: clients of the draft format read it as one.
        document = health_document(
            ready, service=settings.service_name, version=settings.service_version,
            description=f"monitoring overview of {settings.service_name}", output=output,
            checks={c.key: [check_entry(c, results.get(c.name), detailed=False)]
                    for c in service.checks})
        document.update({
            "environment": settings.environment,
            "time": iso_time(time.time_ns() // 1000),
            "probes": {"live": worst(c[1] for c in service.liveness()), "ready": ready,
                       "draining": service.draining},
            "collected": None if collected is None else iso_time(collected),
            "stale": stale,
            **snapshot.parts,
        })
        return respond_with(200, dumps(document), HEALTH_JSON, head=head)

    # -- state --------------------------------------------------------------------------------

    def _claim_refresh(self, name: str) -> float:
        """Seconds to wait before this check may be refreshed again; 0 claims it now."""
        with self._lock:  # the time read under the lock: claims are made in its order
            now = time.monotonic()
            last = self._refreshed_at.get(name)
            if last is not None and now - last < self._refresh_min_interval:
                return self._refresh_min_interval - (now - last)
            self._refreshed_at[name] = now
        return 0.0

    def _keep(self, future: concurrent.futures.Future[_Snapshot]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._snapshot = future.result()
