"""Store URLs as users copy them: ``postgres://`` from a platform's ``DATABASE_URL``, and a
URL whose driver is missing, which must say what to install for that database."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.engine import make_url
from store_helpers import make_event

from ragtrail.health import DatabaseCheck
from ragtrail.store import AuditStore, StoreError


def _alias(url: str) -> str:
    """The same URL as Heroku, Render and many Helm charts write it: ``postgres://``."""
    scheme, rest = url.split("://", 1)
    assert scheme.startswith("postgresql")
    return "postgres" + scheme[len("postgresql"):] + "://" + rest


@pytest.mark.postgres
@pytest.mark.parametrize("driverless", [False, True], ids=["postgres+psycopg", "postgres"])
def test_postgres_scheme_opens_the_store(postgres_db_url: str, driverless: bool,
                                         store_factory: Callable[..., AuditStore]) -> None:
    """``postgres://`` (which SQLAlchemy refuses since 1.4) reaches the same PostgreSQL
    database, with or without a driver named."""
    url = _alias(postgres_db_url)
    if driverless:
        if make_url("postgresql://").get_dialect().driver != "psycopg":
            pytest.skip("this SQLAlchemy's default PostgreSQL driver is psycopg2 (before 2.1), "
                        "which ragtrail's postgres extra does not install")
        url = url.replace("postgres+psycopg://", "postgres://")
    store = store_factory(url)
    store.record(make_event("alias_scheme"))
    assert store.flush(20)
    assert [event.event_type for event in store.events()] == ["alias_scheme"]
    assert store_factory(postgres_db_url, read_only=True).events()[0].event_type == \
        "alias_scheme"


@pytest.mark.postgres
def test_postgres_scheme_in_a_database_check(postgres_url: str) -> None:
    check = DatabaseCheck(_alias(postgres_url))
    assert check.key == "postgres:responseTime"
    assert check.check().status == "pass"


def test_a_missing_driver_names_its_own_database() -> None:
    """MySQL's missing driver is not answered with advice about PostgreSQL."""
    with pytest.raises(StoreError, match="driver is not installed") as raised:
        AuditStore("mysql://app:hunter2@127.0.0.1:9/audit", read_only=True)
    message = str(raised.value)
    assert "mysql dialect" in message
    assert "postgres" not in message
    assert "hunter2" not in message


def test_a_missing_postgresql_driver_names_the_extra_and_the_url_form() -> None:
    with pytest.raises(StoreError, match="postgres extra") as raised:
        AuditStore("postgres+pg8000://app:hunter2@127.0.0.1:9/audit", read_only=True)
    assert "postgresql+psycopg://" in str(raised.value)
    assert "hunter2" not in str(raised.value)
