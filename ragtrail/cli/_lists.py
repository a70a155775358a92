"""``ragtrail events``, ``spans`` and ``metrics``: one query, printed as a table or as JSON."""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragtrail._records import Record
from ragtrail.cli._db import add_db_argument, open_store
from ragtrail.cli._filters import (
    EVENT_FILTERS,
    METRICS_FILTERS,
    SPAN_FILTERS,
    Filter,
    add_filters,
    add_limit,
    query_kwargs,
)
from ragtrail.cli._serialize import json_elements, record_dict, write_json_array
from ragtrail.cli._table import render_table
from ragtrail.cli._views import EVENTS, METRICS, SPANS, View

if TYPE_CHECKING:
    from ragtrail.cli._args import Subparsers

__all__ = ["add_parser"]


@dataclass(frozen=True, slots=True)
class _ListCommand:
    """A list command; its name is also the ``AuditStore`` query method it calls."""

    name: str
    help: str
    filters: Sequence[Filter]
    view: View[Any]


_COMMANDS = (
    _ListCommand("events", "security and operations events, newest first", EVENT_FILTERS,
                 EVENTS),
    _ListCommand("spans", "finished spans (calls, requests, RAG steps), newest first",
                 SPAN_FILTERS, SPANS),
    _ListCommand("metrics", "host and process samples, newest first", METRICS_FILTERS,
                 METRICS),
)


def add_parser(subparsers: Subparsers) -> None:
    for command in _COMMANDS:
        # Not str.capitalize(): it lowercases the rest ("RAG steps" became "rag steps").
        description = command.help[0].upper() + command.help[1:] + "."
        parser = subparsers.add_parser(command.name, help=command.help, description=description)
        add_db_argument(parser)
        parser.add_argument("--json", action="store_true",
                            help="print one JSON array of objects instead of a table")
        add_limit(parser)
        add_filters(parser, command.filters)
        parser.set_defaults(handler=functools.partial(_run, command))


def _print_records(records: Sequence[Record], view: View[Any], noun: str) -> None:
    """The table, or a note on stderr when nothing matched (stdout stays empty)."""
    if not records:
        print(f"no {noun} match", file=sys.stderr)
        return
    for line in render_table(view.columns, (view.cells(record) for record in records)):
        print(line)


def _run(command: _ListCommand, args: argparse.Namespace) -> int:
    filters = query_kwargs(args, command.filters)  # refused before the store is opened
    with open_store(args) as store:
        if args.json:
            _print_json(store.stream(command.name, **filters, limit=args.limit,
                                     newest_first=True))
            return 0
        query = getattr(store, command.name)
        records: list[Record] = query(**filters, limit=args.limit)
    _print_records(records, command.view, command.name)
    return 0


def _print_json(records: Generator[Record, None, None]) -> None:
    """The array, newest first, in flat memory (read whole, 200,000 events took 1 GB): each
    thousand records is read in a short transaction of its own, so a slow reader (``| less``)
    holds no database, and encoded in one call."""
    with closing(records):
        plain = (record_dict(record) for record in records)
        pieces = iter(lambda: json_elements(list(itertools.islice(plain, _PIECE))), "")
        write_json_array(pieces, sys.stdout)


_PIECE = 1000  # records encoded at a time
