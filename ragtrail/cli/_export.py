"""``ragtrail export``: records as JSON Lines or CSV, to stdout or a file, oldest first."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ragtrail._records import MetricsSample, Record, SecurityEvent, SpanRecord
from ragtrail.cli._args import CommandError
from ragtrail.cli._db import add_db_argument, open_store
from ragtrail.cli._filters import (
    EVENT_FILTERS,
    METRICS_FILTERS,
    SPAN_FILTERS,
    Filter,
    add_filters,
    add_limit,
    check_applies,
    query_kwargs,
)
from ragtrail.cli._serialize import write_csv, write_jsonl

if TYPE_CHECKING:
    from ragtrail.cli._args import Subparsers

__all__ = ["add_parser"]

_KINDS: dict[str, tuple[type[Record], Sequence[Filter]]] = {
    "events": (SecurityEvent, EVENT_FILTERS),
    "spans": (SpanRecord, SPAN_FILTERS),
    "metrics": (MetricsSample, METRICS_FILTERS),
}
_ALL_FILTERS = tuple(dict.fromkeys((*EVENT_FILTERS, *SPAN_FILTERS, *METRICS_FILTERS)))
# export's own --kind picks the record kind, so the span kind filter is spelled --span-kind.
_RENAMED = {"kind": "--span-kind"}
_SQLITE_MAGIC = b"SQLite format 3\x00"


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write records as JSON Lines or CSV",
        description="Write records as JSON Lines or CSV, oldest first, to stdout or a file. "
                    "A filter of another record kind is refused, not ignored.")
    add_db_argument(parser)
    parser.add_argument("--kind", dest="record_kind", choices=tuple(_KINDS), default="events",
                        help="which records (default: events)")
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl",
                        help="JSON Lines, one object a line, or CSV with a header "
                             "(default: jsonl)")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write to FILE (replaced whole, only once complete) "
                             "instead of stdout")
    add_limit(parser, None, help="at most the newest N records")
    add_filters(parser, _ALL_FILTERS, flags=_RENAMED)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    record_type, filters = _KINDS[args.record_kind]
    check_applies(args, _ALL_FILTERS, filters, f"--kind {args.record_kind}", flags=_RENAMED)
    if args.output is not None:
        _refuse_database(Path(args.output))
    kwargs = query_kwargs(args, filters)
    # Streamed, oldest first (files read best in time order): a 1,000,000-row ring took 70 s
    # and 1.2 GB read whole, and `| head -1` waited for all of it.
    with open_store(args) as store, \
            closing(store.stream(args.record_kind, **kwargs, limit=args.limit)) as records, \
            _destination(args.output) as out:
        if args.format == "csv":
            write_csv(record_type, records, out)
        else:
            write_jsonl(records, out)
    return 0


def _refuse_database(path: Path) -> None:
    """A slip like ``--output ragtrail.db`` must not wipe the audit trail it reads."""
    if not path.is_file():  # opening a FIFO to look would wait for a writer
        return
    try:
        with path.open("rb") as existing:
            header = existing.read(len(_SQLITE_MAGIC))
    except OSError:
        return  # absent or unreadable: writing will report any real problem
    if header == _SQLITE_MAGIC:
        raise CommandError(f"{path} is a SQLite database; refusing to overwrite it")


@contextmanager
def _destination(output: str | None) -> Iterator[TextIO]:
    """stdout; a device or pipe written in place; else a temporary file beside FILE renamed
    over it only when complete."""
    if output is None or output == "-":
        yield sys.stdout
        return
    target = Path(output)
    if target.exists() and not target.is_file():
        # /dev/stdout, /dev/null, a FIFO, bash's >(gzip): written into, as the shell's ">"
        # would; a rename over it replaced a device with a regular file (as root, /dev/null).
        try:
            with target.open("w", encoding="utf-8", newline="") as out:
                yield out
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
        return
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        # newline="": the csv module writes its own RFC 4180 line endings.
        with temporary.open("w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(temporary, target)
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
