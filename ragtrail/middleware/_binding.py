"""Which monitor (and health service) a middleware instance reports to.

Shared by the ASGI and WSGI adapters. Holds configuration only, never per-request state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from ragtrail._settings import ConfigurationError, Settings
from ragtrail.health import DEFAULT_PATHS, HealthCheck, HealthResponse, HealthService
from ragtrail.health._switched_off import SwitchedOffProbes
from ragtrail.instrument import _textmap as textmap
from ragtrail.instrument import get_monitor
from ragtrail.middleware._core import MiddlewareCore
from ragtrail.middleware._options import MiddlewareOptions

if TYPE_CHECKING:
    from ragtrail.instrument import Monitor

__all__ = ["CoreBinding"]

log = logging.getLogger("ragtrail.middleware")


class CoreBinding:
    """The monitor a middleware reports to: the one given, else whichever is current.

    Following ``get_monitor()`` lets an app add the middleware before ``ragtrail.configure()``
    runs; the options (and the default health service) are rebuilt only when the monitor
    changes. The options alone are rebuilt when the app sets another global propagator
    (``set_global_textmap`` after the middleware was added, as late auto-instrumentation
    does), so the headers it reads are collected from then on.
    """

    __slots__ = ("_checks", "_core", "_global_textmap", "_health", "_lock", "_monitor",
                 "_overrides", "_switched_off")

    def __init__(self, monitor: Monitor | None, overrides: dict[str, Any],
                 health: HealthService | Literal[False] | None,
                 checks: Iterable[HealthCheck]) -> None:
        self._monitor = monitor
        self._overrides = overrides
        self._health = health
        self._checks = tuple(checks)
        if health is not None and self._checks:
            raise ConfigurationError(
                "give checks to the HealthService you pass as health=, or checks= alone")
        # Validate now, so a bad argument fails at start-up, not on the first request.
        MiddlewareOptions.build(monitor.settings if monitor is not None else Settings(),
                                **overrides)
        self._core: MiddlewareCore | None = None
        self._lock = threading.Lock()
        self._global_textmap = textmap.global_textmap()
        self._switched_off: tuple[Monitor, SwitchedOffProbes | None] | None = None

    def current(self) -> MiddlewareCore | None:
        """The core for this request, or None when ragtrail is disabled or shut down."""
        monitor = self._monitor or get_monitor()
        if not monitor.enabled:
            return None
        core = self._core
        if (core is None or core.monitor is not monitor
                or core.options.propagator is not self._global_textmap()):
            with self._lock:  # one health service per monitor, even when threads race here
                core = self._core
                if core is None or core.monitor is not monitor:
                    core = self._core = self._build(monitor)
                elif core.options.propagator is not self._global_textmap():
                    # Requests under way keep the options they read; the core's caches stay.
                    core.options = self._options(monitor, core.health)
        return core

    def switched_off_answer(self, method: str, path: str) -> HealthResponse | None:
        """While ``current()`` is None: the probe routes' answer (ragtrail switched off must
        not make Kubernetes restart or unroute the pods), None for every other path."""
        monitor = self._monitor or get_monitor()
        known = self._switched_off
        if known is None or known[0] is not monitor:
            health = self._health
            core = self._core
            if health is None and core is not None and core.monitor is monitor:
                # A monitor shut down while the app serves: its default service was stopped
                # with it, and readiness must say so, not turn into a fresh pass.
                health = core.health
            try:
                probes = (None if health is False
                          else health.switched_off_probes() if health is not None
                          else SwitchedOffProbes(DEFAULT_PATHS["live"], DEFAULT_PATHS["ready"],
                                                 monitor.settings))
            except Exception:  # switched off, ragtrail least of all may break the requests
                log.warning("ragtrail could not build its switched-off probe answers; probes "
                            "reach the app", exc_info=True)
                probes = None
            known = self._switched_off = (monitor, probes)
        probes = known[1]
        return None if probes is None else probes.answer(method, path)

    def _build(self, monitor: Monitor) -> MiddlewareCore:
        health = self._health
        if health is None:
            health = HealthService(monitor, self._checks)
        if health is False:
            return MiddlewareCore(monitor, self._options(monitor, None), None)
        options = self._options(monitor, health)
        try:  # checks start with the app, not at the first probe (which would say "starting")
            health.start()
        except Exception:
            log.warning("ragtrail health checks could not start", exc_info=True)
        return MiddlewareCore(monitor, options, health)

    def _options(self, monitor: Monitor, health: HealthService | None) -> MiddlewareOptions:
        overrides = self._overrides
        if health is not None:
            # The routes this service answers never get a span, whatever their paths; the
            # app's exclude_paths adds to them (docs/middleware.md).
            overrides = {**overrides, "exclude_paths": [
                *health.excluded_paths, *(overrides["exclude_paths"] or ())]}
        return MiddlewareOptions.build(monitor.settings, **overrides)
