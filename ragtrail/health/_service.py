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
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from ragtrail._records import Severity
from ragtrail.health._auth import DetailedAccess, Headers
from ragtrail.health._check import (
    CheckResult,
    HealthCheck,
    Status,
    aggregate,
    is_check_name,
    registered_checks,
    worst,
)
from ragtrail.health._detailed import DetailedRoutes
from ragtrail.health._own_checks import ExportCheck, StoreCheck
from ragtrail.health._render import (
    HEALTH_JSON,
    TEXT,
    Deferred,
    HealthResponse,
    check_entry,
    dumps,
    health_document,
    respond_with,
)
from ragtrail.health._routes import build_routes, probe_options
from ragtrail.health._runner import CheckRunner
from ragtrail.health._sampler import MetricsSampler
from ragtrail.health._seams import MonitorLike
from ragtrail.health._switched_off import SwitchedOffProbes

__all__ = ["HealthService"]

log = logging.getLogger("ragtrail.health")

_SOURCE = "ragtrail.health"
_HEARTBEAT = "check-loop:heartbeat"
_WRITER = "store:writer"
_PROBES = frozenset(("live", "ready"))

Component = tuple[str, Status, str]  # key, status, output


class HealthService:
    """Serves the liveness, readiness and detailed health routes from background checks.

    Besides ``checks`` (and those registered with ``@health_check``), ragtrail's own pipelines
    are checked, non-critical: the audit store (``StoreCheck``, unless ``store_check=False``
    or the monitor was created switched off, when there may be no store to open)
    and, when the monitor exports spans, the export (``ExportCheck``, unless
    ``export_check=False``).

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
        sampler: MetricsSampler | Literal[False] | None = None,
        include_registered: bool = True,
        store_check: bool = True,
        export_check: bool = True,
        refresh_min_interval: float = 5.0,
        liveness_stale_after: float = 10.0,
        events_limit: int = 50,
    ) -> None:
        if monitor is None:
            from ragtrail.instrument import get_monitor

            monitor = get_monitor()
        self.monitor: MonitorLike = monitor
        self.settings = monitor.settings
        # System metrics come with the health routes unless the app samples them itself
        # (sampler=False), so a service gets them every monitoring_interval out of the box;
        # a monitor created switched off records nothing, samples included.
        if sampler is None:
            sampler = MetricsSampler(monitor) if self.settings.enabled else False
        self.sampler: MetricsSampler | None = sampler or None
        self._routes = build_routes(paths or {})
        self.excluded_paths: frozenset[str] = frozenset(self._routes)
        """Every health path, for the middleware to leave out of spans (exact matches)."""
        self._explicit = tuple(checks)
        self._include_registered = include_registered
        # A monitor created switched off has no writer, and asking for its store opens an
        # existing one read-only or raises: with RAGTRAIL_ENABLED=false on a new pod that would
        # stop the app at start-up. The service then leaves the store alone entirely.
        self._store_check = store_check and self.settings.enabled
        self._export_check = export_check
        self._stale_after = liveness_stale_after
        self._access = DetailedAccess(self.settings, monitor)
        self._detailed = DetailedRoutes(self, refresh_min_interval=refresh_min_interval,
                                        events_limit=events_limit)
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
        self._hook_added = False
        self._cache: dict[tuple[Any, ...], HealthResponse] = {}

    # -- state ----------------------------------------------------------------------------

    @property
    def checks(self) -> tuple[HealthCheck, ...]:
        return self._runner.checks

    @property
    def results(self) -> Mapping[str, CheckResult]:
        """The latest result of each check that has reported, by check name."""
        return self._runner.results

    @property
    def draining(self) -> bool:
        return self._draining

    def readiness(self, exclude: Iterable[str] = ()) -> tuple[Status, str]:
        """The readiness verdict and why: draining, stopped, starting, or the checks'."""
        if self._draining:
            return "fail", "draining"
        if self._stopped:
            return "fail", "stopped"
        excluded = frozenset(exclude)
        checks = [c for c in self._runner.checks if c.name not in excluded]
        results = self._runner.results
        pending = [c.name for c in checks if c.critical and c.name not in results]
        if pending:
            return "fail", "starting: waiting for " + ", ".join(pending)
        return aggregate(checks, results)

    def liveness(self) -> list[Component]:
        """What liveness covers, as (key, status, output): this process, never a dependency."""
        components = [self._heartbeat()]
        if not self.settings.enabled:
            return components
        # The store's writer thread is part of this process; its database is a dependency and
        # stays out of liveness (StoreCheck reports it to readiness).
        if self.monitor.store.health().writer_alive:
            components.append((_WRITER, "pass", ""))
        else:
            components.append((_WRITER, "fail", "the audit store writer thread has died"))
        return components

    def _heartbeat(self) -> Component:
        runner = self._runner
        if self._pid is None or self._stopped:
            return _HEARTBEAT, "pass", ""
        if not runner.alive:
            return _HEARTBEAT, "fail", "the health check loop has stopped"
        age = time.monotonic() - runner.heartbeat
        if age > self._stale_after:
            # A check blocking the loop (a blocking client inside ``async def``) is waiting on
            # a dependency: a warning, not a restart. Readiness fails the checks it stalls.
            return _HEARTBEAT, "warn", f"the health check loop is unresponsive ({age:.0f} s)"
        return _HEARTBEAT, "pass", ""

    # -- lifecycle ------------------------------------------------------------------------

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

    def switched_off_probes(self) -> SwitchedOffProbes:
        """What answers this service's probe paths while ragtrail is switched off."""
        routes = self._routes
        return SwitchedOffProbes((p for p, kind in routes.items() if kind == "live"),
                                 (p for p, kind in routes.items() if kind == "ready"),
                                 self.settings, self._out_of_rotation)

    def _out_of_rotation(self) -> str:
        """Why readiness fails whatever the checks say (as ``readiness``), "" if it need not."""
        return "draining" if self._draining else "stopped" if self._stopped else ""

    def begin_draining(self) -> None:
        """Readiness answers 503 from now on, liveness stays 200 (call on SIGTERM)."""
        if not self._draining:
            self._draining = True
            log.info("ragtrail health: draining, readiness now fails")

    def refresh(self, name: str) -> concurrent.futures.Future[CheckResult]:
        """Run the check called ``name`` now (joining a run in flight); KeyError if unknown."""
        return self._runner.refresh(name)

    # -- the request path -----------------------------------------------------------------

    def respond(self, method: str, path: str, query_string: bytes | str = b"",
                headers: Headers = (), *, client: str | None = None) -> HealthResponse | None:
        """The response for a health route, or None when ``path`` is not one."""
        outcome = self._answer(method, path, query_string, headers, client)
        if isinstance(outcome, Deferred):
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
        if isinstance(outcome, Deferred):
            await asyncio.wait({asyncio.wrap_future(outcome.future)}, timeout=outcome.timeout)
            return outcome.finish(outcome.future.done())
        return outcome

    def _answer(self, method: str, path: str, query: bytes | str, headers: Headers,
                client: str | None) -> HealthResponse | Deferred | None:
        kind = self._routes.get(path)
        if kind is None:
            return None
        if self._pid != os.getpid():
            self._start_failsafe()
        head = method == "HEAD"
        detailed = kind not in _PROBES
        if detailed and self._access.hidden:
            # Every method, and no Cache-Control (a plain 404's headers): nothing tells a
            # scanner that the route exists.
            return respond_with(404, b"Not Found", TEXT, head=head, cache=False)
        if method not in ("GET", "HEAD"):
            # Before the token: a CORS preflight (OPTIONS never carries credentials) or a
            # wrong method is no failed login.
            return respond_with(405, b"Method Not Allowed", TEXT, head=False,
                                extra=[("allow", "GET, HEAD")])
        if detailed and not self._access.allows(headers, path, client):
            return respond_with(401, b"Unauthorized", TEXT, head=head,
                                extra=[("www-authenticate", 'Bearer realm="ragtrail"')])
        text = query.decode("latin-1") if isinstance(query, bytes) else query
        if kind in _PROBES:
            return self._probe(kind, head, text)
        if kind == "detailed":
            return self._detailed.detailed(head)
        if kind == "dependencies":
            return self._detailed.dependencies(head, text)
        return self._detailed.monitoring(head)

    def _start_failsafe(self) -> None:
        try:
            self.start()
        except Exception:
            log.exception("ragtrail health checks could not start")

    def _probe(self, kind: str, head: bool, query: str) -> HealthResponse:
        verbose, excluded = probe_options(query) if query else (False, frozenset[str]())
        runner = self._runner
        components: list[Component] = []
        results: Mapping[str, CheckResult] = runner.results if verbose else {}
        if kind == "ready":
            status, output = self.readiness(excluded)
            # What verbose lists: each check's status as read now (a result nobody renews
            # turns to fail without a new one arriving).
            shown = tuple((n, r.status) for n, r in results.items())
            key: tuple[Any, ...] = (kind, head, status, output, verbose, excluded, shown)
        else:
            components = self.liveness()
            status = worst(c[1] for c in components)
            output = "; ".join(c[2] for c in components if c[1] != "pass")
            key = (kind, head, status, output, verbose)
        # Rendered answers are reused while nothing they show has changed.
        response = self._cache.get(key)
        if response is not None:
            return response
        checks: dict[str, list[dict[str, Any]]] | None = None
        notes: list[str] = []
        if verbose and kind == "ready":
            checks = {c.key: [check_entry(c, results.get(c.name), detailed=False)]
                      for c in runner.checks if c.name not in excluded}
            names = {c.name for c in runner.checks}
            # As kube-apiserver's /readyz?verbose: a mistyped exclude is said, not ignored
            # (echoed only when it could be a check name: this route needs no token).
            notes = [f"excluded: {n}" if n in names else f"not excluded: no check named {n}"
                     for n in sorted(excluded) if is_check_name(n)]
        elif verbose:
            checks = {k: [{"componentId": k.partition(":")[0], "status": s}]
                      for k, s, _ in components}
        what = "readiness" if kind == "ready" else "liveness"
        document = health_document(status, service=self.settings.service_name,
                                   version=self.settings.service_version,
                                   description=f"{what} of {self.settings.service_name}",
                                   output=output, notes=notes, checks=checks)
        response = respond_with(503 if status == "fail" else 200, dumps(document), HEALTH_JSON,
                                head=head)
        if len(self._cache) >= 512:  # bounded: excludes come from the client
            self._cache.clear()
        self._cache[key] = response
        return response

    # -- background hooks -------------------------------------------------------------------

    def _resolve_checks(self) -> list[HealthCheck]:
        checks = list(self._explicit)
        if self._include_registered:
            checks += registered_checks()
        if self._store_check and not any(c.name == "store" for c in checks):
            checks.append(StoreCheck(self.monitor.store))
        if self._export_check and not any(c.name == "export" for c in checks) and \
                _exports(self.monitor):
            checks.append(ExportCheck(self.monitor))
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
                # One source per check: events coalesce (and alerts group) by type and source,
                # so a second dependency going down must not fold into the first one's row.
                f"{_SOURCE}:{check.name}", f"health check {check.name} failed: {result.output}",
                {"check": check.name, "critical": check.critical, "timed_out": result.timed_out})
        elif previous is not None and previous.status == "fail" and result.status != "fail":
            log.info("ragtrail health check %s recovered (%s)", check.name, result.status)


def _on_event_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _exports(monitor: MonitorLike) -> bool:
    try:
        return monitor.health().get("exporter") is not None
    except Exception:  # a monitor of the app's own making: no export check, no crash
        log.warning("ragtrail could not tell whether the monitor exports spans", exc_info=True)
        return False
