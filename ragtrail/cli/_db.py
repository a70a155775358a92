"""Which store the CLI reads, and opening it strictly for reading."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ragtrail._setting_values import store_url_or_path
from ragtrail._settings import Settings
from ragtrail.cli._args import CommandError

if TYPE_CHECKING:
    from ragtrail.store import AuditStore

__all__ = ["STORE_URL_ENV", "add_db_argument", "open_store", "store_url"]

STORE_URL_ENV = "RAGTRAIL_STORE_URL"


def add_db_argument(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """``--db`` on the top-level parser and on every subcommand, so it can go either side.

    The subcommand's copy defaults to SUPPRESS: argparse copies a subparser's defaults over the
    values the top-level parser already set, which would erase ``ragtrail --db X events``.
    """
    parser.add_argument(
        "--db", metavar="URL", default=None if top_level else argparse.SUPPRESS,
        help=f"store URL (any SQLAlchemy URL) or SQLite file path; default: ${STORE_URL_ENV}, "
             f"else {Settings().store_url}")


def store_url(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The URL to read: ``--db``, else ``$RAGTRAIL_STORE_URL``, else the settings default.

    Only this one variable is read (not ``Settings.from_env()``): an unrelated bad setting must
    not stop anyone reading the audit trail during an incident. A value without ``://`` is a
    file path and becomes a SQLite URL.
    """
    env = os.environ if environ is None else environ
    value = (given or "").strip() or env.get(STORE_URL_ENV, "").strip() or Settings().store_url
    return store_url_or_path(value)


@contextmanager
def open_store(args: argparse.Namespace) -> Iterator[AuditStore]:
    """The store named by ``args.db``, opened read-only: reading never creates or changes it."""
    # Imported here so that --help and usage errors never pay for SQLAlchemy's import.
    from ragtrail.store import AuditStore, StoreError

    try:
        store = AuditStore(store_url(args.db), read_only=True)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield store
    except StoreError as exc:  # e.g. the server went away between two queries
        raise CommandError(str(exc)) from None
    finally:
        store.close()
