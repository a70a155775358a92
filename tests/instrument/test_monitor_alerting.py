"""The monitor's side of alerting: events reach callbacks off-thread, failures are events."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from instrument_support import stored_events

from ragtrail import SecurityEvent, Severity
from ragtrail.instrument import Monitor, _monitor, on_alert, security_event
from ragtrail.store import AuditStore


class Inbox:
    """An alert callback that remembers what it got and on which thread."""

    def __init__(self) -> None:
        self.events: list[SecurityEvent] = []
        self.threads: set[str] = set()
        self.arrived = threading.Event()

    def __call__(self, event: SecurityEvent) -> None:
        self.events.append(event)
        self.threads.add(threading.current_thread().name)
        self.arrived.set()


def test_high_events_reach_a_callback_off_the_callers_thread(monitor: Monitor) -> None:
    """A high event is delivered on an alert worker; a low one is not delivered."""
    inbox = monitor.register_alert_callback(Inbox())
    monitor.security_event("slow_call", "low", "search", "took 3 s")
    monitor.security_event("authz_fail", "high", "10.0.0.7", "role missing")
    assert monitor._alerts.flush(timeout=10)
    assert [e.event_type for e in inbox.events] == ["authz_fail"]
    assert threading.current_thread().name not in inbox.threads
    assert monitor.health()["alerts"]["delivered"] == 1


def test_failing_callback_becomes_an_alert_callback_failure_event(monitor: Monitor) -> None:
    """An exception in a callback never reaches the caller; it is recorded as an event."""
    def broken(event: SecurityEvent) -> None:
        raise RuntimeError("pager down")

    monitor.register_alert_callback(broken, "medium")
    assert monitor.security_event("authz_fail", "high", "api", "denied") is not None
    assert monitor._alerts.flush(timeout=10)
    types = [(e.event_type, e.severity) for e in stored_events(monitor)]
    assert ("alert_callback_failure", Severity.MEDIUM) in types


def test_hung_alert_callbacks_leave_the_audit_trail_its_share_of_shutdown(
        monitor_factory: Any, tmp_path: Path) -> None:
    """Both alert workers stuck in a callback: shutdown still ends within its timeout, and the
    store gets the half the alerts may not take (it got none, and shutdown ran a second
    over, when the alerts waited out the whole timeout and then joined each worker)."""
    url = f"sqlite:///{tmp_path / 'hung-alerts.db'}"
    monitor = monitor_factory(store_url=url)
    release = threading.Event()
    monitor.register_alert_callback(lambda event: release.wait(30), "high")
    for n in range(5):
        monitor.security_event("authz_fail", "high", f"10.0.0.{n}", "role missing")
    started = time.monotonic()
    monitor.shutdown(timeout=2.0)
    took = time.monotonic() - started
    release.set()
    assert took < 2.0 + 0.4, took
    stored = AuditStore(url, read_only=True)
    try:
        assert len(stored.events(event_type="authz_fail")) == 5
    finally:
        stored.close()


def test_on_alert_survives_reconfiguration(monitor_factory: Any) -> None:
    """``@on_alert`` registered before configure() keeps receiving from later monitors."""
    inbox = on_alert(min_severity="critical")(Inbox())
    first = monitor_factory()
    security_event("malicious_file_upload", "critical", "upload", "eicar")
    assert first._alerts.flush(timeout=10)
    second = monitor_factory()
    security_event("malicious_file_upload", "critical", "upload-2", "eicar")
    assert second._alerts.flush(timeout=10)
    assert [e.source for e in inbox.events] == ["upload", "upload-2"]


def test_on_alert_works_without_parentheses(monitor_factory: Any) -> None:
    """``@on_alert`` alone registers the function at the configured minimum (high) and
    returns it unchanged."""
    received: list[str] = []

    @on_alert
    def page(event: Any) -> None:
        received.append(event.source)

    assert page.__name__ == "page"
    monitor = monitor_factory()
    security_event("authz_fail", "medium", "quiet", "below the minimum")
    security_event("authz_fail", "high", "bare", "denied")
    assert monitor._alerts.flush(timeout=10)
    assert received == ["bare"]


def test_on_alert_at_import_time_starts_no_monitor() -> None:
    """Decorating with ``@on_alert`` before any monitor exists creates none."""
    on_alert()(Inbox())
    assert _monitor._active is None
