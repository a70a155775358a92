"""The process-wide monitor: configure, default, shutdown, health, security-event wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from instrument_support import only_span, stored_events, stored_spans

from ragtrail import ConfigurationError, Severity
from ragtrail.health import ExportCheck
from ragtrail.instrument import (
    Monitor,
    configure,
    correlation_scope,
    get_monitor,
    monitored,
    shutdown,
    start_span,
)
from ragtrail.instrument._export import ExportPipeline


def test_monitored_works_before_configure(tmp_path: Path) -> None:
    """The first decorated call creates a default monitor (store from the environment)."""
    @monitored(name="early")
    def early() -> int:
        return 1

    assert early() == 1
    monitor = get_monitor()
    assert monitor.settings.store_url == f"sqlite:///{tmp_path / 'default.db'}"
    assert [s.name for s in stored_spans(monitor)] == ["early"]


def test_configure_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """Precedence: argument, then environment, then default."""
    monkeypatch.setenv("RAGTRAIL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("RAGTRAIL_ENVIRONMENT", "staging")
    monitor = configure(service_name="from-argument",
                        store_url=f"sqlite:///{tmp_path / 'a.db'}")
    assert (monitor.settings.service_name, monitor.settings.environment) == (
        "from-argument", "staging")
    assert get_monitor() is monitor


def test_bad_value_raises_configuration_error_naming_it(tmp_path: Path) -> None:
    """An invalid setting fails at configure(), naming the setting and what is accepted."""
    with pytest.raises(ConfigurationError, match=r"traces_sampler.*always_on"):
        configure(traces_sampler="sometimes", store_url=f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(ConfigurationError, match="unknown setting"):
        configure(colour="blue")


def test_configure_replaces_and_shuts_down_the_previous_monitor(
        monitor_factory: Any) -> None:
    """A second configure() stops the first monitor after flushing what it had."""
    first = monitor_factory()

    @monitored(name="step")
    def step() -> None:
        pass

    step()
    second = monitor_factory()
    step()
    assert first.enabled is False
    assert [s.name for s in first.store.spans(limit=10)] == ["step"]
    assert [s.name for s in stored_spans(second)] == ["step"]


def test_a_call_in_flight_across_configure_is_kept_by_the_new_monitor(
        monitor_factory: Any) -> None:
    """A call that began under the old monitor and ends after configure() replaced it (a
    request or a stream in flight, a lifespan that configures): its span and its events go
    to the new monitor's store instead of being dropped by the closed one."""
    first = monitor_factory()
    replaced: list[Monitor] = []

    @monitored(name="reconfiguring", record_errors=True)
    def step() -> None:
        replaced.append(monitor_factory())
        raise LookupError("index gone")

    with pytest.raises(LookupError):
        step()
    (second,) = replaced
    assert first.store.health().dropped == 0
    assert [s.name for s in stored_spans(second)] == ["reconfiguring"]
    assert [e.event_type for e in second.store.events()] == ["function_error"]


def test_shutdown_runs_hooks_once_and_flushes(monitor: Monitor) -> None:
    """``shutdown()`` runs the hooks once, flushes the store and stops recording."""
    calls: list[str] = []
    monitor.add_shutdown_hook(lambda: calls.append("hook"))
    monitor.add_shutdown_hook(_failing_hook)
    start_span("last", "function").end()
    shutdown()
    shutdown()
    assert calls == ["hook"]
    assert [s.name for s in monitor.store.spans(limit=10)] == ["last"]
    assert monitor.health()["failures"] == {"shutdown_hook": 1}


def _failing_hook() -> None:
    raise RuntimeError("hook failed")


def test_health_reports_store_exporter_and_events(monitor: Monitor) -> None:
    """``health()`` has the store's status, the exporter (none here) and event counters."""
    monitor.security_event("authz_fail", "high", "api", "denied")
    monitor.security_event("authz_fail", "high", "api", "denied")
    health = monitor.health()
    assert health["enabled"] is True
    assert health["store"]["status"] == "ok"
    assert health["exporter"] is None
    assert health["security_events"] == {"authz_fail:high": 2}


def test_security_event_is_stored_with_ids_and_attached_to_the_span(monitor: Monitor) -> None:
    """The event row has the correlation and trace IDs; the current span gets a span event."""
    with correlation_scope("abcabcabcabcabcabcabcabcabcabcab"):
        span = start_span("request", "server")
        event = monitor.security_event("input_validation_fail", "Medium", "upload",
                                       "bad mime type", {"filename": "a.exe"})
        span.end()
    assert event is not None
    stored_span = only_span(monitor, "request")
    (stored,) = stored_events(monitor)
    assert (stored.event_type, stored.severity, stored.source) == (
        "input_validation_fail", Severity.MEDIUM, "upload")
    assert (stored.correlation_id, stored.trace_id, stored.span_id) == (
        "abcabcabcabcabcabcabcabcabcabcab", stored_span.trace_id, stored_span.span_id)
    assert stored.metadata == {"filename": "a.exe"}
    assert [e.name for e in stored_span.events] == ["input_validation_fail"]


def test_security_event_rejects_an_unknown_severity(monitor: Monitor) -> None:
    """A severity outside the four names raises ValueError naming them."""
    with pytest.raises(ValueError, match="low, medium, high, critical"):
        monitor.security_event("authz_fail", "urgent", "api", "denied")


def test_security_events_can_be_switched_off(monitor_factory: Any) -> None:
    """With ``security_enabled=False`` nothing is recorded and None is returned."""
    monitor = monitor_factory(security_enabled=False)
    assert monitor.security_event("authz_fail", "high", "api", "denied") is None
    assert stored_events(monitor) == []


def test_an_exporter_that_cannot_be_built_does_not_stop_configure(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """configure() goes on without export, spans are still stored, and health says why (with
    a configured secret in the error redacted). A stand-in raises here: the real exporters no
    longer fail to build on any value this test suite can give them."""
    token = "export-token-1234567890"

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"the SDK refused the header value {token}")

    monkeypatch.setattr(ExportPipeline, "create", refuse)
    monitor = configure(store_url=f"sqlite:///{tmp_path / 'a.db'}",
                        otlp_endpoint="http://127.0.0.1:4318", otlp_headers={"api-key": token})

    @monitored(name="step")
    def step() -> int:
        return 7

    assert step() == 7
    assert [s.name for s in stored_spans(monitor)] == ["step"]
    exporter = monitor.health()["exporter"]
    assert exporter["status"] == "failing"
    assert exporter["last_error"].startswith("could not start: RuntimeError: the SDK refused")
    assert token not in exporter["last_error"]
    result = ExportCheck(monitor).check()
    assert (result.status, "could not start" in result.output) == ("fail", True)
