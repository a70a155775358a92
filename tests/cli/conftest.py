"""Fixtures: a known store on both backends, and the CLI run in-process and as a process."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import (
    KNOWN_EVENTS,
    KNOWN_METRICS,
    KNOWN_SPANS,
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


@pytest.fixture(params=["in-process", "subprocess"])
def run_cli(request: pytest.FixtureRequest, run_inprocess: Runner) -> Runner:
    """The CLI run both ways: ``main([...])`` and ``python -m ragtrail``."""
    return run_inprocess if request.param == "in-process" else run_process
