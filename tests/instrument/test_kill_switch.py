"""The kill switch: ``RAGTRAIL_ENABLED=false`` or ``enabled=False`` make decorators vanish."""

from __future__ import annotations

from typing import Any

import pytest
from instrument_support import stored_spans

from ragtrail.instrument import configure, get_monitor, monitored


def plain(x: int) -> int:
    return x + 1


def test_environment_switch_returns_the_function_itself(monitor_factory: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``RAGTRAIL_ENABLED=false`` decoration returns the undecorated function."""
    monkeypatch.setenv("RAGTRAIL_ENABLED", "false")
    monitor = monitor_factory()
    assert monitor.enabled is False
    assert monitored(plain) is plain
    assert monitored(kind="retriever", capture_args=True)(plain) is plain


def test_switch_is_read_before_any_monitor_exists(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Any) -> None:
    """Decorating at import time reads the environment without starting a monitor."""
    from ragtrail.instrument import _monitor

    monkeypatch.setenv("RAGTRAIL_ENABLED", "0")
    assert monitored(plain) is plain
    assert _monitor._active is None
    assert not (tmp_path / "default.db").exists()


def test_enabled_false_option_returns_the_function_itself() -> None:
    """``@monitored(enabled=False)`` is a zero-cost no-op."""
    assert monitored(enabled=False)(plain) is plain


def test_switching_off_later_makes_calls_pass_through(monitor_factory: Any) -> None:
    """Functions decorated while enabled stop recording once the monitor is disabled."""
    first = monitor_factory()
    decorated = monitored(plain)
    assert decorated(1) == 2
    assert len(stored_spans(first)) == 1
    second = monitor_factory(enabled=False, store_url=first.settings.store_url)
    assert decorated(1) == 2
    assert len(stored_spans(second)) == 1  # the same store, read-only: nothing new


def test_after_shutdown_calls_pass_through(monitor_factory: Any) -> None:
    """After ``shutdown()`` decorated functions still work and record nothing."""
    monitor = monitor_factory()
    decorated = monitored(plain)
    monitor.shutdown()
    assert decorated(1) == 2
    assert get_monitor() is monitor
    assert monitor.enabled is False


def test_bad_environment_never_breaks_decorated_calls(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """An invalid setting in the environment: calls run unrecorded, logged once; configure()
    then reports the error."""
    decorated = monitored(plain)
    monkeypatch.setenv("RAGTRAIL_QUEUE_SIZE", "lots")
    assert decorated(1) == 2
    assert decorated(2) == 3
    assert [r.levelname for r in caplog.records if r.name == "ragtrail"] == ["ERROR"]
    with pytest.raises(ValueError, match="RAGTRAIL_QUEUE_SIZE"):
        configure()


def _ragtrail_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("ragtrail")]


def test_switched_off_from_the_start_opens_no_store(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Any) -> None:
    """A monitor created switched off (an event, a span via the API, health) writes no
    database file and starts no thread; asked for its store, it has none to read."""
    from ragtrail.instrument import security_event, start_span
    from ragtrail.store import StoreError

    before = _ragtrail_threads()
    monkeypatch.setenv("RAGTRAIL_ENABLED", "false")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    assert security_event("authz_fail", "high", "10.0.0.1", "denied") is None
    start_span("by hand", "internal").end()
    monitor = get_monitor()
    assert monitor.enabled is False
    assert monitor.health()["store"] is None
    with pytest.raises(StoreError):
        monitor.store.spans()
    assert not (tmp_path / "default.db").exists()
    assert _ragtrail_threads() == before


def test_switched_off_reads_an_existing_store_and_never_writes(
        monitor_factory: Any, tmp_path: Any) -> None:
    """Queries on a switched-off monitor read the store read-only; API spans after such a
    query are still not recorded, and shutdown closes the store it opened."""
    from ragtrail.instrument import start_span

    url = f"sqlite:///{tmp_path / 'earlier.db'}"
    earlier = monitor_factory(store_url=url)
    start_span("while on", "internal").end()
    earlier.shutdown()
    off = monitor_factory(store_url=url, enabled=False)
    assert [span.name for span in off.store.spans()] == ["while on"]
    start_span("while off", "internal").end()
    assert [span.name for span in off.store.spans()] == ["while on"]
    assert off.health()["store"] is not None
    off.shutdown()
    assert _ragtrail_threads() == []
