"""DatabaseCheck against a real PostgreSQL server, including one that is stopped mid-test."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from ragtrail import Severity
from ragtrail.health import DatabaseCheck
from ragtrail.instrument import Monitor

from ._servers import wait_until
from .conftest import ServiceFactory

pytestmark = pytest.mark.postgres


def test_select_one_passes(postgres_url: str) -> None:
    """SELECT 1 on a live server passes with the round trip in ms."""
    check = DatabaseCheck(postgres_url)
    result = check.check()
    assert (check.key, result.status, result.observed_unit) == (
        "postgres:responseTime", "pass", "ms")


def test_wrong_password_fails_without_showing_either_password(postgres_url: str) -> None:
    """Authentication failure is a fail whose output holds neither password."""
    url = make_url(postgres_url)
    wrong = url.set(password="Wr0ng-" + str(url.password))
    check = DatabaseCheck(wrong)
    result = check.check()
    assert result.status == "fail"
    assert "password authentication failed" in result.output
    for secret in (str(url.password), str(wrong.password)):
        assert secret not in result.output + repr(check)


def test_stopped_server_fails_readiness_and_recovers(
        postgres_server: Any, make_service: ServiceFactory, monitor: Monitor) -> None:
    """Stopping PostgreSQL fails the check (readiness 503, one high event); restarting it
    brings readiness back."""
    service = make_service(DatabaseCheck(postgres_server.url, timeout=3.0))

    def ready() -> int:
        response = service.respond("GET", "/ready", b"", {})
        assert response is not None
        return response.status

    wait_until(lambda: ready() == 200, timeout=10)
    postgres_server.stop()
    wait_until(lambda: ready() == 503, timeout=10)
    detailed = service.respond("GET", "/api/health/detailed", b"", {})
    assert detailed is not None
    entry = json.loads(detailed.body)["checks"]["postgres:responseTime"][0]
    assert entry["output"].startswith("OperationalError: ")
    assert postgres_server.password not in detailed.body.decode()
    postgres_server.start()
    wait_until(lambda: ready() == 200, timeout=15)
    monitor.store.flush(5.0)
    events = monitor.store.events(event_type="dependency_unhealthy")
    assert [(e.severity, e.metadata["check"]) for e in events] == [(Severity.HIGH, "postgres")]
    assert postgres_server.password not in events[0].description


def test_unresponsive_server_gives_up_within_the_driver_timeout() -> None:
    """A server that accepts TCP and never speaks: the worker thread itself ends soon after
    the timeout (libpq connect_timeout), so hung checks do not pile up threads."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        started = time.monotonic()
        result = DatabaseCheck(f"postgresql+psycopg://rag:pw@127.0.0.1:{port}/rag",
                               timeout=1.0).check()
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert result.status == "fail"
    assert elapsed < 5.0  # libpq counts at least 2 s
