"""``Monitor``: the settings and the parts that act on them (store, redactor, exporter,
alerts), each call into a part behind a failsafe.

The process-wide monitor that ``configure()`` installs and ``get_monitor()`` returns is kept
in ``_monitor``; this module is the object itself.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from opentelemetry import trace

from ragtrail._records import SecurityEvent, Severity, SpanRecord
from ragtrail._settings import Settings
from ragtrail.instrument._alerts import AlertCallback, AlertDispatcher
from ragtrail.instrument._attributes import (
    EVENT_DESCRIPTION,
    EVENT_SEVERITY,
    EVENT_SOURCE,
    TRACE_STATE,
)
from ragtrail.instrument._event_types import ALERT_CALLBACK_FAILURE
from ragtrail.instrument._events import build_security_event
from ragtrail.instrument._export import ExportPipeline
from ragtrail.instrument._redaction import Redactor
from ragtrail.instrument._sampling import head_sampler
from ragtrail.instrument._spans import span_ids
from ragtrail.instrument._webhook import WebhookAlert
from ragtrail.store import AuditStore

__all__ = ["Monitor"]

logger = logging.getLogger("ragtrail")

_Callback = TypeVar("_Callback", bound=AlertCallback)


class Monitor:
    """Settings plus the parts that act on them; most code reaches it via ``get_monitor()``.

    Every call into a part runs behind a failsafe: a failing store, exporter or alert callback
    is logged and counted, never raised into the application.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        """Checked by every decorated call; False after ``shutdown()``."""
        self.sampler = head_sampler(settings)
        self.slow_ns = None if settings.slow_ms is None else int(settings.slow_ms * 1_000_000)
        """The default ``slow_call`` threshold of ``@monitored`` in nanoseconds, or None."""
        self.redactor = Redactor(settings)
        # Switched off from the start, a monitor never records: no database file, no writer
        # or export thread; the store opens read-only if something queries it.
        self._store: AuditStore | None = (
            AuditStore.from_settings(settings) if settings.enabled else None)
        self._export_error: dict[str, Any] | None = None
        self._exporter = self._start_export() if settings.enabled else None
        self._alerts = AlertDispatcher(settings, redactor=self.redactor,
                                       on_failure=self._alert_failed)
        if settings.alert_webhook_url:
            self._alerts.register(WebhookAlert(
                settings.alert_webhook_url, min_severity=settings.alert_min_severity,
                redactor=self.redactor))
        self._event_counts: Counter[tuple[str, str]] = Counter()
        self._failures: Counter[str] = Counter()
        self._shutdown_hooks: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._closed = False

    def _start_export(self) -> ExportPipeline | None:
        # An exporter the OTel SDK refuses to build (a value its version rejects) must not stop
        # the app at configure(): the store still records, and health says export failed.
        try:
            return ExportPipeline.create(self.settings, redact=self.redactor.redact_text,
                                         sampler=self.sampler)
        except Exception as exc:
            error = f"could not start: {type(exc).__name__}: {self.redactor.redact_text(str(exc))}"
            logger.error("ragtrail span export %s; spans are only stored", error)
            self._export_error = {"status": "failing", "last_error": error}
            return None

    @property
    def store(self) -> AuditStore:
        """The audit store. A monitor created switched off opens the existing one read-only
        when first asked (``StoreError`` if there is none): it never writes."""
        store = self._store
        if store is None:
            with self._lock:
                store = self._store
                if store is None:
                    store = self._store = AuditStore.from_settings(self.settings,
                                                                   read_only=True)
        return store

    @store.setter
    def store(self, store: AuditStore) -> None:
        self._store = store

    # -- the hot path ---------------------------------------------------------------------

    def record_span(self, record: SpanRecord) -> None:
        """Hand a finished span to the store's queue and the exporter's buffer; never raises."""
        if not self.settings.enabled:
            return  # a monitor created switched off records nothing (spans of start_span())
        if self._closed and (successor := self._successor()) is not None:
            successor.record_span(record)
            return
        try:
            store = self._store  # set at creation when enabled
            if store is not None:
                store.record(record if TRACE_STATE not in record.attributes
                             else _without_trace_state(record))
            exporter = self._exporter
            if exporter is not None:
                exporter.submit(record)
        except Exception:
            self.report_failure("record_span")

    # -- security events ------------------------------------------------------------------

    def security_event(
        self,
        event_type: str,
        severity: Severity | str,
        source: str,
        description: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> SecurityEvent | None:
        """Record an event with the current correlation and trace IDs; None when disabled.

        The event goes to the store, onto the current span (as a span event), to the
        exporter's counters and to the alerts. An unknown severity raises ``ValueError``
        naming the choices (a programming error); everything after validation is failsafe.
        """
        level = Severity.from_name(severity)
        if self._closed and (successor := self._successor()) is not None:
            return successor.security_event(event_type, severity, source, description, metadata)
        if not (self.enabled and self.settings.security_enabled):
            return None
        current = trace.get_current_span()
        trace_id, span_id = span_ids(current)
        event = build_security_event(
            self.settings, self.redactor, event_type, level, source, description, metadata,
            trace_id=trace_id, span_id=span_id)
        try:
            self.store.record(event)
            if current.is_recording():
                current.add_event(event.event_type, {
                    EVENT_SEVERITY: str(level),
                    EVENT_SOURCE: event.source,
                    EVENT_DESCRIPTION: event.description,
                })
            if self._exporter is not None:
                self._exporter.count_event(event)
            self._alerts.submit(event)
            self._event_counts[(event.event_type, str(level))] += 1
        except Exception:
            self.report_failure("security_event")
        return event

    # -- alerts ---------------------------------------------------------------------------

    def register_alert_callback(self, callback: _Callback,
                                min_severity: Severity | str | None = None) -> _Callback:
        """Call ``callback(event)`` off the caller's thread for events at or above
        ``min_severity`` (default: the ``alert_min_severity`` setting, high); returns it."""
        return self._alerts.register(callback, min_severity)

    def _alert_failed(self, callback: str, reason: str, event: SecurityEvent) -> None:
        self.security_event(
            ALERT_CALLBACK_FAILURE, Severity.MEDIUM, callback,
            f"alert callback {callback} {'timed out' if reason == 'timeout' else 'failed'} "
            f"on {event.event_type}", {"reason": reason, "event_type": event.event_type})

    # -- lifecycle ------------------------------------------------------------------------

    def add_shutdown_hook(self, hook: Callable[[], object]) -> None:
        """Run ``hook()`` (failsafe) at shutdown, before the store is flushed."""
        with self._lock:
            self._shutdown_hooks.append(hook)

    def health(self) -> dict[str, Any]:
        """Store, exporter and event counters, for the detailed health routes."""
        return {
            "enabled": self.enabled,
            # A monitor created switched off has no store to report unless one was queried.
            "store": None if self._store is None else dataclasses.asdict(self._store.health()),
            "exporter": (self._export_error if self._exporter is None
                         else self._exporter.health()),
            "alerts": self._alerts.health(),
            "security_events": {
                f"{event_type}:{severity}": count
                for (event_type, severity), count in sorted(self._event_counts.items())},
            "failures": dict(self._failures),
        }

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what is queued for the alerts, the store and the export without stopping,
        all within ``timeout`` (default ``store_close_timeout``); False if time ran out.

        For servers that end the process without running exit handlers: uvicorn re-raises
        SIGTERM after its lifespan shutdown, where the ASGI middleware calls this.
        """
        budget = self.settings.store_close_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        try:
            done = self._alerts.flush(left())  # a failed alert is an event for the store
            with self._lock:
                store = self._store
            if store is not None:
                done = store.flush(left()) and done
            if self._exporter is not None:
                done = self._exporter.force_flush(left()) and done
        except Exception:
            self.report_failure("flush")
            return False
        return done

    def shutdown(self, timeout: float | None = 5.0) -> None:
        """Stop recording, run shutdown hooks, deliver the alerts, flush and close the store,
        drain the exporter: all within one ``timeout`` (None: each part's own bound), so a
        hung database and a hung collector together still fit a pod's grace period."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.enabled = False
            hooks = list(self._shutdown_hooks)
        for hook in hooks:
            try:
                hook()
            except Exception:
                self.report_failure("shutdown_hook")
        deadline = None if timeout is None else time.monotonic() + timeout

        def left(unbounded: float | None) -> float | None:
            return unbounded if deadline is None else max(0.0, deadline - time.monotonic())

        try:  # at most half: a hung alert callback must not leave the audit trail no time
            self._alerts.shutdown(None if timeout is None else timeout / 2)
        except Exception:
            self.report_failure("alerts_shutdown")
        with self._lock:  # a store opened for a query at this moment is closed too
            store = self._store
        try:  # the audit trail before the export; bounded by store_close_timeout for None
            if store is not None:
                store.close(left(None))
        except Exception:
            self.report_failure("store_close")
        if self._exporter is not None:
            try:
                self._exporter.shutdown(left(10.0))
            except Exception:
                self.report_failure("exporter_shutdown")

    def _successor(self) -> Monitor | None:
        """The monitor that replaced this one through ``configure()``, if any: calls that
        began under this one (a request, a stream) end after it closed, and their spans and
        events belong in the trail the process now keeps."""
        # Imported here: _monitor imports this module (and only a closed monitor asks).
        from ragtrail.instrument import _monitor

        successor = _monitor._active
        return successor if successor is not None and successor is not self else None

    def report_failure(self, where: str) -> None:
        """Count and log a failure inside ragtrail (call from an ``except`` block)."""
        self._failures[where] += 1
        # The first failure of each kind with its traceback; repeats only at debug level, so
        # a failure on every call cannot flood the application's logs.
        level = logging.WARNING if self._failures[where] == 1 else logging.DEBUG
        logger.log(level, "ragtrail %s failed; the application is not affected", where,
                   exc_info=True)


def _without_trace_state(record: SpanRecord) -> SpanRecord:
    """``record`` as the audit store keeps it: without the inbound ``tracestate``. The client
    sends that header (vendors put tenant and session data in it) and the collector needs it
    on the OTLP span; the audit trail does not, so it is never written to disk."""
    attributes = dict(record.attributes)
    del attributes[TRACE_STATE]
    return dataclasses.replace(record, attributes=attributes)
