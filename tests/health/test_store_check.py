"""StoreCheck over a real AuditStore: ok passes, a store that cannot write fails readiness
only when it is marked critical."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from ragtrail import SecurityEvent, Severity
from ragtrail.health import StoreCheck
from ragtrail.store import AuditStore

from ._servers import wait_until


def event() -> SecurityEvent:
    return SecurityEvent(event_type="authz_fail", severity=Severity.MEDIUM, source="test",
                         description="denied", time_us=1_700_000_000_000_000)


def test_healthy_store_passes_with_queue_depth(store_factory: Callable[..., AuditStore]) -> None:
    """An ok store passes; the observed value is the writer's queue depth."""
    store = store_factory()
    store.record(event())
    assert store.flush(5.0)
    check = StoreCheck(store)
    result = check.check()
    assert (check.key, check.critical) == ("store:queue", False)
    assert (result.status, result.observed_value, result.observed_unit, result.output) == (
        "pass", 0, "records", "")


@pytest.mark.postgres
def test_store_that_cannot_write_fails(store_factory: Callable[..., AuditStore],
                                       postgres_server: Any, postgres_db_url: str) -> None:
    """PostgreSQL stopped under the store: the writer fails, the check fails with the
    store's own (redacted) last error and counters."""
    store = store_factory(postgres_db_url)
    store.record(event())
    assert store.flush(5.0)
    postgres_server.stop()
    store.record(event())
    check = StoreCheck(store, critical=True)
    wait_until(lambda: check.check().status == "fail", timeout=15)
    output = check.check().output
    assert output.startswith("store failing; queue ")
    assert "last error: " in output
    assert postgres_server.password not in output
    # Closing with the database still gone takes the timeout given, not the default, and
    # counts what it could not write (a new event: a repeat of the first only coalesces).
    store.record(SecurityEvent(event_type="authn_login_fail", severity=Severity.MEDIUM,
                               source="test", description="bad password", time_us=1))
    started = time.monotonic()
    store.close(timeout=0.2)
    assert time.monotonic() - started < 3.0
    assert store.health().dropped >= 1
