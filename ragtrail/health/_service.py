"""HealthService: the health routes' answers, computed from cached check results.

``respond()`` is called by the middleware for every request whose path is a health route; it
never waits on a check (Kubernetes probes time out after ``timeoutSeconds``, 1 s by default, and
a probe that waits on a hanging dependency would restart healthy pods). The only two answers
that may wait are the explicit ``refresh=1`` of one check and ``/api/monitoring``'s store
queries; ``respond_async()`` awaits those without blocking an event loop, and ``respond()``
does not wait for them at all when it is called on an event loop's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ragtrail._records import Severity
from ragtrail.health._auth import DetailedAccess, Headers
from ragtrail.health._check import CheckResult, HealthCheck, Status, registered_checks
from ragtrail.health._monitoring import collect
from ragtrail.health._render import (
    HEALTH_JSON,
    HealthResponse,
    check_entry,
    dumps,
    health_document,
    iso_time,
    respond_with,
)
from ragtrail.health._runner import CheckRunner
from ragtrail.health._sampler import MetricsSampler
from ragtrail.health._seams import MonitorLike
from ragtrail.health._store_check import StoreCheck

__all__ = ["DEFAULT_PATHS", "HealthService"]

log = logging.getLogger("ragtrail.health")

DEFAULT_PATHS: Mapping[str, tuple[str, ...]] = {
    "live": ("/health", "/livez"),
    "ready": ("/ready", "/readyz"),
    "detailed": ("/api/health/detailed",),
    "dependencies": ("/api/health/dependencies",),
    "monitoring": ("/api/monitoring",),
}
_SOURCE = "ragtrail.health"
_TEXT = "text/plain; charset=utf-8"
_MONITORING_MAX_AGE = 2.0
_HEARTBEAT = "check-loop:heartbeat"
_FALSE = frozenset(("0", "false", "no", "off"))


@dataclass(frozen=True, slots=True)
class _Deferred:
    """An answer that needs ``future`` first; ``finish(completed)`` renders it either way."""

    future: concurrent.futures.Future[Any]
    timeout: float
    finish: Callable[[bool], HealthResponse]


class HealthService:
    """Serves the liveness, readiness and detailed health routes from background checks.

    >>> service = HealthService(checks=[HTTPCheck("http://127.0.0.1:11434/api/tags",
    ...                                           name="ollama")])  # doctest: +SKIP
    >>> service.respond("GET", "/ready", b"", {}).status  # doctest: +SKIP
    503
    """

    def __init__(
        self,
        monitor: MonitorLike | None = None,
        checks: Iterable[HealthCheck] = (),
        *,
        paths: Mapping[str, str | Sequence[str]] | None = None,
        sampler: MetricsSampler | None = None,
        include_registered: bool = True,
        store_check: bool = True,
        refresh_min_interval: float = 5.0,
        liveness_stale_after: float = 10.0,
        events_limit: int = 50,
    ) -> None:
        if monitor is None:
            from ragtrail.instrument import get_monitor

            monitor = get_monitor()
        self.monitor: MonitorLike = monitor
        self.settings = monitor.settings
        self.sampler = sampler
        self._routes = _build_routes(paths or {})
        self.excluded_paths: frozenset[str] = frozenset(self._routes)
        """Every health path, for the middleware to leave out of spans (exact matches)."""
        self._explicit = tuple(checks)
        self._include_registered = include_registered
        self._store_check = store_check
        self._refresh_min_interval = refresh_min_interval
        self._stale_after = liveness_stale_after
        self._events_limit = events_limit
        self._access = DetailedAccess(self.settings, monitor)
        interval = self.settings.health_check_interval
        self._runner_options: dict[str, Any] = {
            "interval": interval,
            "default_timeout": self.settings.health_check_timeout,
            "failure_interval": min(interval, max(1.0, interval / 3)),
            "redact": self._redact,
            "on_result": self._on_result,
        }
        self._runner = CheckRunner(self._resolve_checks(), **self._runner_options)
        self._pid: int | None = None  # the process the runner was started in
        self._stopped = False
        self._draining = False
        self._lock = threading.Lock()
        self._refreshed_at: dict[str, float] = {}
        self._monitoring: tuple[float, dict[str, Any]] | None = None
        self._monitoring_future: concurrent.futures.Future[dict[str, Any]] | None = None
        self._hook_added = False
        self._cache: dict[tuple[Any, ...], HealthResponse] = {}

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def checks(self) -> tuple[HealthCheck, ...]:
        return self._runner.checks

    @property
    def draining(self) -> bool:
        return self._draining

    def start(self) -> None:
        """Start the background checks (and the sampler); idempotent, fork-aware."""
        with self._lock:
            if self._pid == os.getpid() or self._stopped:
                return
            # A fresh runner: checks registered since construction join, and after a fork
            # the parent's threads did not come along.
            self._runner = CheckRunner(self._resolve_checks(), **self._runner_options)
            self._runner.start()
            self._pid = os.getpid()
            if self.sampler is not None:
                self.sampler.start()
            if not self._hook_added:
                self.monitor.add_shutdown_hook(self.stop)
                self._hook_added = True

    def stop(self) -> None:
        """Stop the background threads; readiness answers 503 from then on."""
        with self._lock:
            self._stopped = True
        self._runner.stop()
        if self.sampler is not None:
            self.sampler.stop()

    def begin_draining(self) -> None:
        """Readiness answers 503 from now on, liveness stays 200 (call on SIGTERM)."""
        if not self._draining:
            self._draining = True
            log.info("ragtrail health: draining, readiness now fails")

    # -- the request path -----------------------------------------------------------------

    def respond(self, method: str, path: str, query_string: bytes | str = b"",
                headers: Headers = (), *, client: str | None = None) -> HealthResponse | None:
        """The response for a health route, or None when ``path`` is not one."""
        outcome = self._answer(method, path, query_string, headers, client)
        if isinstance(outcome, _Deferred):
            if _on_event_loop_thread():  # blocking here would stall every request on it
                return outcome.finish(outcome.future.done())
            # finish() reports a failure or a timeout itself.
            with contextlib.suppress(Exception):
                outcome.future.result(outcome.timeout)
            return outcome.finish(outcome.future.done())
        return outcome

    async def respond_async(self, method: str, path: str, query_string: bytes | str = b"",
                            headers: Headers = (), *, client: str | None = None
                            ) -> HealthResponse | None:
        """``respond()`` for ASGI: waits for a refresh without blocking the event loop."""
        outcome = self._answer(method, path, query_string, headers, client)
        if isinstance(outcome, _Deferred):
            await asyncio.wait({asyncio.wrap_future(outcome.future)}, timeout=outcome.timeout)
            return outcome.finish(outcome.future.done())
        return outcome

    def _answer(self, method: str, path: str, query: bytes | str, headers: Headers,
                client: str | None) -> HealthResponse | _Deferred | None:
        kind = self._routes.get(path)
        if kind is None:
            return None
        if self._pid != os.getpid():
            self._start_failsafe()
        head = method == "HEAD"
        if kind not in ("live", "ready"):
            verdict = self._access.decide(headers, path, client)
            if verdict == "hide":
                return respond_with(404, b"Not Found", _TEXT, head=head)
            if verdict == "deny":
                return respond_with(401, b"Unauthorized", _TEXT, head=head,
                                    extra=[("www-authenticate", 'Bearer realm="ragtrail"')])
        if method not in ("GET", "HEAD"):
            return respond_with(405, b"Method Not Allowed", _TEXT, head=False,
                                extra=[("allow", "GET, HEAD")])
        text = query.decode("latin-1") if isinstance(query, bytes) else query
        if kind in ("live", "ready"):
            return self._probe(kind, head, text)
        if kind == "detailed":
            return self._detailed(head)
        if kind == "dependencies":
            return self._dependencies(head, text)
        return self._monitoring_answer(head)

    def _start_failsafe(self) -> None:
        try:
            self.start()
        except Exception:
            log.exception("ragtrail health checks could not start")

    # -- probes -----------------------------------------------------------------------------

    def _probe(self, kind: str, head: bool, query: str) -> HealthResponse:
        verbose, excluded = _probe_options(query) if query else (False, frozenset[str]())
        runner = self._runner
        if kind == "ready":
            status, output = self._readiness(excluded)
            key: tuple[Any, ...] = (kind, head, status, output, verbose, excluded,
                                    runner.version if verbose else -1)
        else:
            components = self._liveness()
            status = _worst(c[1] for c in components)
            output = "; ".join(c[2] for c in components if c[1] != "pass")
            key = (kind, head, status, output, verbose)
        response = self._cache.get(key)
        if response is not None:
            return response
        checks: dict[str, list[dict[str, Any]]] | None = None
        notes: list[str] = []
        if verbose and kind == "ready":
            results = runner.results
            checks = {c.key: [check_entry(c, results.get(c.name), detailed=False)]
                      for c in runner.checks if c.name not in excluded}
            names = {c.name for c in runner.checks}
            notes = [f"excluded: {n}" for n in sorted(excluded) if n in names]
        elif verbose:
            checks = {k: [{"componentId": k.partition(":")[0], "status": s}]
                      for k, s, _ in components}
        document = health_document(status, service=self.settings.service_name,
                                   version=self.settings.service_version,
                                   description=f"{'readiness' if kind == 'ready' else 'liveness'}"
                                               f" of {self.settings.service_name}",
                                   output=output, notes=notes, checks=checks)
        response = respond_with(503 if status == "fail" else 200, dumps(document), HEALTH_JSON,
                                head=head)
        if len(self._cache) >= 512:  # bounded: excludes come from the client
            self._cache.clear()
        self._cache[key] = response
        return response

    def _readiness(self, excluded: frozenset[str] = frozenset()) -> tuple[Status, str]:
        if self._draining:
            return "fail", "draining"
        if self._stopped:
            return "fail", "stopped"
        checks = [c for c in self._runner.checks if c.name not in excluded]
        results = self._runner.results
        pending = [c.name for c in checks if c.critical and c.name not in results]
        if pending:
            return "fail", "starting: waiting for " + ", ".join(pending)
        return _aggregate(checks, results)

    def _liveness(self) -> list[tuple[str, Status, str]]:
        """(key, status, output) of what liveness covers: this process only, no dependency."""
        runner = self._runner
        if self._pid is None or self._stopped:
            return [(_HEARTBEAT, "pass", "")]
        if not runner.alive:
            return [(_HEARTBEAT, "fail", "the health check loop has stopped")]
        age = time.monotonic() - runner.heartbeat
        if age > self._stale_after:
            return [(_HEARTBEAT, "fail", f"the health check loop is unresponsive "
                                                 f"({age:.0f} s)")]
        return [(_HEARTBEAT, "pass", "")]

    # -- detailed routes ------------------------------------------------------------------

    def _detailed(self, head: bool) -> HealthResponse:
        status, output = self._readiness()
        results = self._runner.results
        checks = {c.key: [check_entry(c, results.get(c.name), detailed=True)]
                  for c in self._runner.checks}
        for key, live_status, live_output in self._liveness():
            entry: dict[str, Any] = {"componentId": key.partition(":")[0], "status": live_status,
                                     "componentType": "system", "critical": True}
            if live_output:
                entry["output"] = live_output
            checks[key] = [entry]
        return self._document(status, "health of", head, output, checks)

    def _dependencies(self, head: bool, query: str) -> HealthResponse | _Deferred:
        params = parse_qsl(query, keep_blank_values=True)
        names = [v for k, v in params if k == "check"]
        known = {c.name: c for c in self._runner.checks}
        if any(n not in known for n in names):
            return respond_with(404, b"unknown check", _TEXT, head=head)
        selected = [known[n] for n in names] if names else list(known.values())
        refresh = any(k == "refresh" and v.lower() not in _FALSE for k, v in params)
        if not refresh:
            return self._dependencies_document(selected, head)
        if len(names) != 1:
            return respond_with(400, b"refresh needs exactly one check=name", _TEXT, head=head)
        wait = self._claim_refresh(names[0])
        if wait > 0:
            return respond_with(429, b"this check was refreshed moments ago", _TEXT, head=head,
                                extra=[("retry-after", str(math.ceil(wait)))])
        future = self._runner.refresh(names[0])
        return _Deferred(future, self._runner.timeout_of(names[0]) + 1.0,
                         lambda done: self._dependencies_document(
                             selected, head, fresh=names[0] if done else None,
                             note="" if done else "refresh started; this answer is cached"))

    def _dependencies_document(self, checks: list[HealthCheck], head: bool, *,
                               fresh: str | None = None, note: str = "") -> HealthResponse:
        results = self._runner.results
        status, output = _aggregate(checks, results)
        document = {c.key: [check_entry(c, results.get(c.name), detailed=True,
                                        cached=c.name != fresh)] for c in checks}
        return self._document(status, "dependencies of", head, output, document,
                              notes=[note] if note else [], code=202 if note else None)

    def _claim_refresh(self, name: str) -> float:
        """Seconds to wait before this check may be refreshed again; 0 claims it now."""
        now = time.monotonic()
        with self._lock:
            last = self._refreshed_at.get(name)
            if last is not None and now - last < self._refresh_min_interval:
                return self._refresh_min_interval - (now - last)
            self._refreshed_at[name] = now
        return 0.0

    def _document(self, status: Status, what: str, head: bool, output: str,
                  checks: dict[str, list[dict[str, Any]]], *, notes: Sequence[str] = (),
                  code: int | None = None) -> HealthResponse:
        document = health_document(status, service=self.settings.service_name,
                                   version=self.settings.service_version,
                                   description=f"{what} {self.settings.service_name}",
                                   output=output, notes=notes, checks=checks)
        if code is None:
            code = 503 if status == "fail" else 200
        return respond_with(code, dumps(document), HEALTH_JSON, head=head)

    def _monitoring_answer(self, head: bool) -> HealthResponse | _Deferred:
        snapshot = self._monitoring
        if snapshot is not None and time.monotonic() - snapshot[0] < _MONITORING_MAX_AGE:
            return self._monitoring_document(snapshot[1], head)
        with self._lock:
            future = self._monitoring_future
            if future is None or future.done():
                future = self._runner.submit(
                    lambda: collect(self.monitor, self.sampler, self._events_limit))
                future.add_done_callback(self._keep_snapshot)
                self._monitoring_future = future
        return _Deferred(future, self.settings.health_check_timeout,
                         lambda done: self._monitoring_fallback(head))

    def _keep_snapshot(self, future: concurrent.futures.Future[dict[str, Any]]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._monitoring = (time.monotonic(), future.result())

    def _monitoring_fallback(self, head: bool) -> HealthResponse:
        snapshot = self._monitoring
        if snapshot is None:
            return respond_with(503, b"monitoring data is being collected", _TEXT, head=head,
                                extra=[("retry-after", "1")])
        return self._monitoring_document(snapshot[1], head)

    def _monitoring_document(self, snapshot: dict[str, Any], head: bool) -> HealthResponse:
        ready, _ = self._readiness()
        live = _worst(c[1] for c in self._liveness())
        results = self._runner.results
        document = {
            "serviceId": self.settings.service_name,
            "version": self.settings.service_version,
            "environment": self.settings.environment,
            "time": iso_time(time.time_ns() // 1000),
            "status": {"live": live, "ready": ready, "draining": self._draining},
            "checks": {c.name: (results[c.name].status if c.name in results else None)
                       for c in self._runner.checks},
            **snapshot,
        }
        return respond_with(200, dumps(document), "application/json", head=head)

    # -- background hooks -------------------------------------------------------------------

    def _resolve_checks(self) -> list[HealthCheck]:
        checks = list(self._explicit)
        if self._include_registered:
            checks += registered_checks()
        if self._store_check and not any(c.name == "store" for c in checks):
            checks.append(StoreCheck(self.monitor.store))
        seen: set[str] = set()
        for check in checks:
            if check.name in seen:
                raise ValueError(f"two health checks are named {check.name!r}; names must be "
                                 "unique (they are used in ?exclude= and ?check=)")
            seen.add(check.name)
        return checks

    def _redact(self, text: str) -> str:
        try:
            return self.monitor.redactor.redact_text(text)
        except Exception:  # never show an unredacted message because redaction broke
            return "[output withheld: redaction failed]"

    def _on_result(self, check: HealthCheck, previous: CheckResult | None,
                   result: CheckResult) -> None:
        # An event on the transition to fail only, not on every failing run (issue #4).
        if result.status == "fail" and (previous is None or previous.status != "fail"):
            self.monitor.security_event(
                "dependency_unhealthy", Severity.HIGH if check.critical else Severity.MEDIUM,
                _SOURCE, f"health check {check.name} failed: {result.output}",
                {"check": check.name, "critical": check.critical, "timed_out": result.timed_out})
        elif previous is not None and previous.status == "fail" and result.status != "fail":
            log.info("ragtrail health check %s recovered (%s)", check.name, result.status)


def _build_routes(paths: Mapping[str, str | Sequence[str]]) -> dict[str, str]:
    unknown = sorted(set(paths) - set(DEFAULT_PATHS))
    if unknown:
        raise ValueError(f"unknown health route(s) {', '.join(unknown)}; "
                         f"expected {', '.join(DEFAULT_PATHS)}")
    routes: dict[str, str] = {}
    for kind, default in DEFAULT_PATHS.items():
        chosen = paths.get(kind, default)
        for path in (chosen,) if isinstance(chosen, str) else chosen:
            if not path.startswith("/") or "?" in path or "#" in path:
                raise ValueError(f"health path must start with '/' and hold no query: {path!r}")
            if path in routes:
                raise ValueError(f"health path {path!r} is used twice")
            routes[path] = kind
    return routes


def _probe_options(query: str) -> tuple[bool, frozenset[str]]:
    """``?verbose`` and repeatable ``?exclude=name``, as kube-apiserver's /readyz takes them."""
    verbose = False
    excluded: set[str] = set()
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "verbose":
            verbose = value.lower() not in _FALSE
        elif key == "exclude" and value:
            excluded.add(value)
    return verbose, frozenset(excluded)


def _aggregate(checks: Iterable[HealthCheck], results: Mapping[str, CheckResult]
               ) -> tuple[Status, str]:
    """fail if a critical check fails; warn if anything else fails or warns; else pass."""
    failing: list[str] = []
    status: Status = "pass"
    for check in checks:
        result = results.get(check.name)
        if result is None or result.status == "pass":
            continue
        if result.status == "fail" and check.critical:
            failing.append(check.name)
        else:
            status = "warn"
    if failing:
        return "fail", "failing: " + ", ".join(failing)
    return status, ""


def _worst(statuses: Iterable[Status]) -> Status:
    found = set(statuses)
    return "fail" if "fail" in found else "warn" if "warn" in found else "pass"


def _on_event_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
