"""Fixtures: a known store on both backends, and the CLI run in-process and as a process.

The known store the read-only fixtures (``known_store``, ``reader``) hand out is written once
per session and backend and shared: the CLI opens stores read-only, which SQLite (``mode=ro``,
``query_only``) and PostgreSQL (read-only transactions) enforce, and the session's end checks
that the records are still exactly the known ones. A test that writes takes ``store_url`` or
``known_file`` (its own store) instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import (
    KNOWN_EVENTS,
    KNOWN_METRICS,
    KNOWN_SPANS,
    Reader,
    Result,
    Runner,
    run_process,
    write_store,
)

from ragtrail.cli import main
from ragtrail.store import AuditStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty place for a store: a SQLite file, or a new PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_db_url")
        return url
    return f"sqlite:///{tmp_path / 'audit.db'}"


def _known_records(url: str) -> tuple[Any, ...]:
    """Every record the store at ``url`` holds (with its ID), and its stats."""
    store = AuditStore(url, read_only=True)
    try:
        return (store.events(limit=None), store.spans(limit=None), store.metrics(limit=None),
                store.stats())
    finally:
        store.close()


def _shared_known_store(url: str) -> Iterator[str]:
    write_store(url, *KNOWN_EVENTS, *KNOWN_SPANS, *KNOWN_METRICS)
    written = _known_records(url)
    yield url
    assert _known_records(url) == written, "a test changed the shared known store"


@pytest.fixture(scope="session")
def _known_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's known store in a SQLite file: for tests that only read it."""
    yield from _shared_known_store(f"sqlite:///{tmp_path_factory.mktemp('known') / 'known.db'}")


@pytest.fixture(scope="session")
def _known_postgres_url(_postgres_cluster: Any) -> Iterator[str]:
    """The session's known store in a PostgreSQL database: for tests that only read it."""
    name = _postgres_cluster.create_database()
    yield from _shared_known_store(_postgres_cluster.url_for(name))
    _postgres_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def known_store(request: pytest.FixtureRequest) -> str:
    """A store holding exactly KNOWN_EVENTS, KNOWN_SPANS and KNOWN_METRICS (both backends),
    shared with the other tests that read it: only read it."""
    url: str = request.getfixturevalue(f"_known_{request.param}_url")
    return url


@pytest.fixture
def known_file(tmp_path: Path) -> Path:
    """The known records in a SQLite file, for tests about files and processes."""
    path = tmp_path / "known.db"
    write_store(f"sqlite:///{path}", *KNOWN_EVENTS, *KNOWN_SPANS, *KNOWN_METRICS)
    return path


@pytest.fixture
def run_inprocess(capsys: pytest.CaptureFixture[str]) -> Runner:
    """``main(argv)`` in this process, with its stdout and stderr captured."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        status = main(list(argv))
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return run


@pytest.fixture(params=[
    pytest.param(("sqlite", "in-process"), id="sqlite-in-process"),
    pytest.param(("sqlite", "subprocess"), id="sqlite-subprocess"),
    pytest.param(("postgres", "in-process"), id="postgres-in-process",
                 marks=pytest.mark.postgres),
])
def reader(request: pytest.FixtureRequest, run_inprocess: Runner) -> Reader:
    """The known store read by ``main([...])`` on both backends and by ``python -m ragtrail``
    (the shared known store: only read it).

    A real process on PostgreSQL too would only repeat what these three already cover.
    """
    backend, mode = request.param
    url: str = request.getfixturevalue(f"_known_{backend}_url")
    return Reader(url, run_inprocess if mode == "in-process" else run_process)
