"""Fixtures: a known store on both backends, and the CLI run in-process and as a process."""

from __future__ import annotations

from pathlib import Path

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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty place for a store: a SQLite file, or a new PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_db_url")
        return url
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
def known_store(store_url: str) -> str:
    """A store holding exactly KNOWN_EVENTS, KNOWN_SPANS and KNOWN_METRICS (both backends)."""
    write_store(store_url, *KNOWN_EVENTS, *KNOWN_SPANS, *KNOWN_METRICS)
    return store_url


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
def reader(request: pytest.FixtureRequest, tmp_path: Path, run_inprocess: Runner) -> Reader:
    """The known store read by ``main([...])`` on both backends and by ``python -m ragtrail``.

    A real process on PostgreSQL too would only repeat what these three already cover.
    """
    backend, mode = request.param
    url = (request.getfixturevalue("postgres_db_url") if backend == "postgres"
           else f"sqlite:///{tmp_path / 'known.db'}")
    write_store(url, *KNOWN_EVENTS, *KNOWN_SPANS, *KNOWN_METRICS)
    return Reader(url, run_inprocess if mode == "in-process" else run_process)
