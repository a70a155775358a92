"""``store_engine_options``: SQLAlchemy engine arguments from the settings reach the store's
engine (a real PostgreSQL server shows which connections exist and what they are called)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from store_helpers import make_event

from ragtrail import Settings
from ragtrail.instrument import Monitor

pytestmark = pytest.mark.postgres


@pytest.fixture
def connections_named(postgres_url: str) -> Iterator[Callable[[str], int]]:
    """Count the server's connections with a given application_name."""
    engine = create_engine(postgres_url, poolclass=NullPool)

    def count(name: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": name}).scalar_one())

    yield count
    engine.dispose()


def _flushed_monitor(url: str, options: dict[str, object]) -> Monitor:
    monitor = Monitor(Settings(store_url=url, store_engine_options=options,
                               health_check_interval=60, monitoring_interval=60))
    monitor.store.record(make_event("engine_options"))
    assert monitor.store.flush(20)
    return monitor


def _poll(probe: Callable[[], int], expected: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.02)


def test_connect_args_and_pool_class_reach_the_engine(
        postgres_db_url: str, connections_named: Callable[[str], int]) -> None:
    pooled, unpooled = (f"ragtrail-{kind}-{secrets.token_hex(3)}" for kind in ("pool", "null"))
    kept = _flushed_monitor(postgres_db_url, {"connect_args": {"application_name": pooled}})
    # PgBouncer's recipe: no pool of ours, no server-side prepared statements.
    passed = _flushed_monitor(postgres_db_url, {
        "poolclass": NullPool,
        "connect_args": {"application_name": unpooled, "prepare_threshold": None}})
    try:
        assert len(passed.store.events(event_type="engine_options")) == 2  # both wrote
        # The default pool keeps the writer's connection, named as asked; NullPool closes it.
        assert _poll(lambda: connections_named(pooled), 1) == 1
        assert _poll(lambda: connections_named(unpooled), 0) == 0
    finally:
        kept.shutdown(timeout=5)
        passed.shutdown(timeout=5)


def test_engine_options_are_never_shown() -> None:
    """connect_args may carry a password: the settings' repr leaves the field out."""
    settings = Settings(store_engine_options={"connect_args": {"password": "hunter2-canary"}})
    assert "hunter2-canary" not in repr(settings)
    assert "hunter2-canary" not in str(settings)
