"""The process-wide monitor: one place that owns the store, redactor, exporter and alerts.

``configure()`` replaces it, ``shutdown()`` stops it, and ``get_monitor()`` makes a default one
on first use so ``@monitored`` works before anyone configured anything. The ``Monitor`` object
itself is in ``_monitor_core``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from ragtrail._process_exit import at_exit
from ragtrail._records import SecurityEvent, Severity
from ragtrail._settings import ConfigurationError, Settings
from ragtrail.instrument._alerts import AlertCallback
from ragtrail.instrument._monitor_core import Monitor
from ragtrail.instrument._redaction import Redactor

__all__ = ["Monitor", "configure", "get_monitor", "on_alert", "security_event", "shutdown"]

logger = logging.getLogger("ragtrail")

_Callback = TypeVar("_Callback", bound=AlertCallback)

_active: Monitor | None = None
_lock = threading.Lock()
_atexit_registered = False
_default_unavailable = False
_enabled_from_environment: bool | None = None
_fallback_redactor: Redactor | None = None
_alert_callbacks: list[tuple[AlertCallback, Severity | str | None]] = []


def get_monitor() -> Monitor:
    """The current monitor, created with defaults (and the environment) on first use."""
    monitor = _active
    if monitor is not None:
        return monitor
    with _lock:
        if _active is None:
            _install(Monitor(Settings.from_env()))
        return _active  # type: ignore[return-value]


def current_redactor() -> Redactor:
    """The active monitor's redactor, or one with default settings; never starts a monitor."""
    global _fallback_redactor
    monitor = _active
    if monitor is not None:
        return monitor.redactor
    if _fallback_redactor is None:
        _fallback_redactor = Redactor(Settings())
    return _fallback_redactor


def monitor_for_calls() -> Monitor | None:
    """``get_monitor()`` for decorated calls, which must never fail because of ragtrail.

    If the default monitor cannot start (say a bad ``RAGTRAIL_*`` variable), that is logged
    once and decorated calls run unrecorded until ``configure()`` succeeds.
    """
    global _default_unavailable
    if _default_unavailable:
        return None
    try:
        return get_monitor()
    except Exception:
        _default_unavailable = True
        logger.error("ragtrail could not start its default monitor; decorated calls run "
                     "unrecorded until ragtrail.configure() succeeds", exc_info=True)
        return None


def decorators_enabled() -> bool:
    """The kill switch as seen at decoration time (``RAGTRAIL_ENABLED``, or the monitor's).

    Read without creating the default monitor, so decorating at import time opens no store.
    """
    global _enabled_from_environment
    if _active is not None:
        return _active.settings.enabled
    if _enabled_from_environment is None:
        try:
            _enabled_from_environment = Settings.from_env().enabled
        except ConfigurationError:
            return True  # the bad value is reported when the monitor starts
    return _enabled_from_environment


def configure(
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    store_url: str | None = None,
    otlp_endpoint: str | None = None,
    **other_settings: Any,
) -> Monitor:
    """Set up ragtrail for this process and return the new monitor.

    Arguments win over ``RAGTRAIL_*``/``OTEL_*`` environment variables, which win over the
    defaults (see docs/configuration.md). A bad value raises ``ConfigurationError`` naming the
    setting. A monitor configured before is shut down. With ``security_scan_on_startup`` (on
    by default in production) the posture scan records its findings as security events.

    >>> monitor = ragtrail.configure(service_name="rag-api", store_url="sqlite:///audit.db")
    """
    settings = Settings.from_env(
        service_name=service_name, service_version=service_version, environment=environment,
        store_url=store_url, otlp_endpoint=otlp_endpoint, **other_settings)
    monitor = Monitor(settings)
    global _default_unavailable
    with _lock:
        previous = _active
        _install(monitor)
        _default_unavailable = False
    if previous is not None:
        previous.shutdown()
    if settings.scan_on_startup:
        _scan_posture(monitor)
    return monitor


def shutdown(timeout: float | None = 5.0) -> None:
    """Flush and stop the current monitor; decorated functions then run unrecorded."""
    monitor = _active
    if monitor is not None:
        monitor.shutdown(timeout)


def security_event(
    event_type: str,
    severity: Severity | str,
    source: str,
    description: str,
    metadata: Mapping[str, Any] | None = None,
) -> SecurityEvent | None:
    """Record a security event on the current monitor (see ``Monitor.security_event``).

    >>> ragtrail.security_event("authz_fail", "high", client_ip, "role missing for /admin")
    """
    return get_monitor().security_event(event_type, severity, source, description, metadata)


@overload
def on_alert(min_severity: _Callback, /) -> _Callback: ...


@overload
def on_alert(min_severity: Severity | str | None = None) -> Callable[[_Callback], _Callback]: ...


def on_alert(min_severity: Severity | str | _Callback | None = None,
             ) -> Callable[[_Callback], _Callback] | _Callback:
    """Decorator: call the function with every event at or above ``min_severity``
    (``@on_alert`` alone: the configured ``alert_min_severity``).

    Registered for this process, not one monitor: it keeps working after ``configure()``
    replaces the monitor, and decorating at import time starts nothing.

    >>> @ragtrail.on_alert(min_severity="critical")
    ... def page(event: ragtrail.SecurityEvent) -> None: ...
    """
    if callable(min_severity):  # used bare, without parentheses
        return _register_alert(min_severity, None)
    severity = Severity.parse(min_severity) if min_severity is not None else None
    return lambda callback: _register_alert(callback, severity)


def _register_alert(callback: _Callback, min_severity: Severity | None) -> _Callback:
    with _lock:
        _alert_callbacks.append((callback, min_severity))
        if _active is not None:
            _active.register_alert_callback(callback, min_severity)
    return callback


def _scan_posture(monitor: Monitor) -> None:
    """The start-up security scan (issue #6); a failure is counted, never raised."""
    try:
        # Imported here: ragtrail.security imports ragtrail.instrument, never the reverse at
        # module level (docs/architecture.md), and only configure() with the scan on needs it.
        from ragtrail.security import run_startup_scan

        run_startup_scan(monitor)
    except Exception:
        monitor.report_failure("startup_scan")


def _install(monitor: Monitor) -> None:
    global _active, _atexit_registered
    for callback, min_severity in _alert_callbacks:
        monitor.register_alert_callback(callback, min_severity)
    _active = monitor
    if not _atexit_registered:
        at_exit(shutdown)
        _atexit_registered = True
