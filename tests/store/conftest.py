"""Store fixtures: the backend parametrization (SQLite file, PostgreSQL database)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ragtrail.store import AuditStore


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty store on each backend: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    url: str = request.getfixturevalue("postgres_db_url")
    return url


@pytest.fixture
def backend_store(backend_url: str, store_factory: Callable[..., AuditStore]
                  ) -> Callable[..., AuditStore]:
    """``make(**kwargs)``: a store on the parametrized backend."""
    def make(**kwargs: Any) -> AuditStore:
        return store_factory(backend_url, **kwargs)
    return make
