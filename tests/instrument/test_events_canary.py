"""End to end: canary secrets pushed through every door never reach the SQLite file (and its
WAL), ragtrail's own logs, alert callbacks, or the OTLP collector."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from otlp_receivers import RotelReceiver, isolated_otel_globals
from redaction_canaries import CANARIES, leaked

from ragtrail._records import SecurityEvent
from ragtrail.instrument import (
    configure,
    correlation_scope,
    get_monitor,
    monitored,
    security_event,
    shutdown,
)
from ragtrail.store import AuditStore

SECRET_TEXT = " | ".join(c.text for c in CANARIES)
HARMLESS_LOOKING_KEY = "plain-looking-value-7f3a"  # secret only because of its argument name


def exercise_every_door() -> list[SecurityEvent]:
    """Captured arguments and results, an exception, an event, a failing alert callback."""
    alerted: list[SecurityEvent] = []
    monitor = get_monitor()
    monitor.register_alert_callback(alerted.append, min_severity="low")

    def broken_pager(event: SecurityEvent) -> None:
        raise ConnectionError(f"pager rejected {SECRET_TEXT}")

    monitor.register_alert_callback(broken_pager, min_severity="low")

    @monitored(kind="retriever", capture_args=True, capture_result=True)
    def retrieve(query: str, api_key: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"id": "doc-1", "text": SECRET_TEXT, "score": 0.9}]

    @monitored(kind="llm", record_errors=True)
    def generate(prompt: str) -> str:
        raise RuntimeError(f"upstream said: {SECRET_TEXT}")

    with correlation_scope():
        retrieve(SECRET_TEXT, api_key=HARMLESS_LOOKING_KEY,
                 filters={"password": "hunter2-canary", "note": SECRET_TEXT})
        with pytest.raises(RuntimeError):
            generate(SECRET_TEXT)
        security_event("authn_login_fail", "critical", CANARIES[-1].text, SECRET_TEXT,
                       {"detail": SECRET_TEXT, CANARIES[0].text: 1, "nested": [SECRET_TEXT]})
    return alerted  # filled by the time shutdown() has drained the alert queue


def raw_store_bytes(database: Path) -> bytes:
    parts = [database, database.with_name(database.name + "-wal")]
    return b"".join(part.read_bytes() for part in parts if part.exists())


def assert_store_holds_only_redacted_rows(database: Path) -> None:
    raw = raw_store_bytes(database)
    assert leaked(raw) == []
    assert HARMLESS_LOOKING_KEY.encode() not in raw
    assert b"hunter2-canary" not in raw
    assert b"[REDACTED]" in raw
    store = AuditStore(f"sqlite:///{database}", read_only=True)
    try:
        event_types = {e.event_type for e in store.events(limit=None)}
        assert {"authn_login_fail", "function_error"} <= event_types
        assert {"retrieve", "generate"} <= {s.name.rsplit(".", 1)[-1]
                                            for s in store.spans(limit=None)}
    finally:
        store.close()


def test_canaries_never_reach_the_sqlite_file_logs_or_alerts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Raw bytes of the database and its WAL, every ragtrail log line and every alerted
    event are free of all canary secrets after a flush."""
    database = tmp_path / "canary.db"
    configure(service_name="canary", store_url=f"sqlite:///{database}")
    with caplog.at_level(logging.DEBUG):
        alerted = exercise_every_door()
        shutdown(10.0)
    assert_store_holds_only_redacted_rows(database)
    assert "alert callback" in caplog.text  # the pager failure was logged...
    assert leaked(caplog.text) == []        # ...without what its exception said
    assert {e.event_type for e in alerted} >= {"authn_login_fail", "function_error"}
    assert leaked(repr(alerted)) == []


@pytest.fixture
def rotel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RotelReceiver]:
    workdir = tmp_path_factory.mktemp("rotel")
    with isolated_otel_globals(), RotelReceiver(workdir) as receiver:
        yield receiver


@pytest.mark.network
def test_canaries_never_reach_the_otlp_collector(rotel: RotelReceiver, tmp_path: Path) -> None:
    """What a real collector receives (spans, span events, attributes) holds no canary."""
    database = tmp_path / "canary.db"
    configure(service_name="canary-otlp", store_url=f"sqlite:///{database}",
              otlp_endpoint=rotel.http_endpoint)
    exercise_every_door()
    shutdown(10.0)
    spans = rotel.wait_for_spans(
        lambda s: s.resource is not None and s.resource["service.name"] == "canary-otlp",
        count=2)
    assert any("[REDACTED]" in str(span.attributes) for span in spans)
    raw = rotel.raw_text()
    assert leaked(raw) == []
    assert HARMLESS_LOOKING_KEY not in raw
    assert_store_holds_only_redacted_rows(database)
