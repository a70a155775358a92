"""``ragtrail quarantine list|show|release|purge``: look at and manage rejected files.

The quarantine directory is ``--dir``, else ``$RAGTRAIL_QUARANTINE_DIR``, else the settings
default. Only that one variable is read, as ``--db`` reads only the store URL: an unrelated bad
setting must not stop anyone handling a quarantined file.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ragtrail._settings import Settings
from ragtrail.cli._args import CommandError, parse_when
from ragtrail.cli._serialize import write_json
from ragtrail.cli._table import Column, printable, render_table
from ragtrail.cli._views import counted, format_bytes, format_datetime

if TYPE_CHECKING:
    from ragtrail.cli._args import Subparsers
    from ragtrail.security import Quarantine, QuarantineEntry, QuarantineUsage

__all__ = ["add_parser"]

QUARANTINE_DIR_ENV = "RAGTRAIL_QUARANTINE_DIR"

_COLUMNS = (
    Column("SHA256"), Column("QUARANTINED"), Column("SIZE", right=True), Column("CLAIMED"),
    Column("DETECTED"), Column("NAME", max_width=40), Column("REASON", max_width=60),
)
_SHOWN_HASH = 16  # enough to be unique in practice; `show` accepts any prefix of 8 or more


def add_parser(subparsers: Subparsers) -> None:
    group = subparsers.add_parser(
        "quarantine", help="list, show, release or purge quarantined files",
        description="Manage files the FileValidator rejected and moved to the quarantine.")
    commands = group.add_subparsers(title="quarantine commands", metavar="ACTION",
                                    required=True)
    _command(commands, "list", "quarantined files, newest first", _list)
    show = _command(commands, "show", "everything known about one file", _show)
    show.add_argument("sha256", help="the file's sha256, or a prefix of at least 8 characters")
    release = _command(commands, "release", "move a file out of the quarantine", _release)
    release.add_argument("sha256", help="the file's sha256, or a prefix of at least 8 characters")
    release.add_argument("destination", help="a new file, or a directory to put it in")
    release.add_argument("--yes", action="store_true",
                         help="confirm: the file was rejected for a reason")
    purge = _command(commands, "purge", "delete quarantined files", _purge)
    when = purge.add_mutually_exclusive_group(required=True)
    when.add_argument("--older-than", metavar="AGE", type=parse_when,
                      help="quarantined before this long ago (7d, 12h) or an ISO-8601 time")
    when.add_argument("--all", action="store_true", help="every quarantined file")


def _command(commands: Subparsers, name: str, summary: str,
             run: Callable[[Quarantine, argparse.Namespace], int]) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=summary.capitalize() + ".")
    parser.add_argument("--dir", metavar="PATH", default=None,
                        help=f"quarantine directory; default: ${QUARANTINE_DIR_ENV}, "
                             f"else ./{Settings().quarantine_dir}")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=functools.partial(_handle, run))
    return parser


def _handle(run: Callable[[Quarantine, argparse.Namespace], int],
            args: argparse.Namespace) -> int:
    from ragtrail.security import Quarantine, QuarantineError

    directory = (args.dir or os.environ.get(QUARANTINE_DIR_ENV, "").strip()
                 or Settings().quarantine_dir)
    try:
        return run(Quarantine(directory), args)
    except QuarantineError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"{exc.strerror or exc}: {exc.filename or directory}") from None


def _list(quarantine: Quarantine, args: argparse.Namespace) -> int:
    entries = quarantine.entries()
    if args.json:
        write_json([entry.as_dict() for entry in entries], sys.stdout)
    elif not entries:
        # A directory that does not exist is normal (nothing quarantined yet), or a typo.
        missing = "" if quarantine.directory.is_dir() else " (no such directory)"
        print(f"no quarantined files in {printable(str(quarantine.directory))}{missing}",
              file=sys.stderr)
    else:
        for line in render_table(_COLUMNS, (_row(entry) for entry in entries)):
            print(line)
        # On stderr, so that the rows alone go down a pipe.
        print(_summary(entries, quarantine.usage()), file=sys.stderr)
    return 0


def _summary(entries: list[QuarantineEntry], usage: QuarantineUsage | None) -> str:
    """Totals, the bounds the application keeps the quarantine within, and what they cost."""
    size = format_bytes(sum(entry.size for entry in entries))
    total = f"{counted(len(entries), 'file')}, {size}"
    if usage is None:
        return total
    bounds = [counted(usage.max_files, "file")] if usage.max_files else []
    if usage.max_bytes:
        bounds.append(format_bytes(usage.max_bytes))
    return (f"{total} (bounds: {', '.join(bounds) or 'none'}); evicted to make room so far: "
            f"{usage.evicted_files} ({format_bytes(usage.evicted_bytes)}), "
            f"not kept: {usage.not_kept}")


def _show(quarantine: Quarantine, args: argparse.Namespace) -> int:
    entry = quarantine.get(args.sha256)
    if args.json:
        write_json(entry.as_dict(), sys.stdout)
        return 0
    fields = entry.as_dict()
    width = max(len(key) for key in fields)
    for key, value in fields.items():
        print(f"{key:<{width}}  {printable('' if value is None else str(value))}")
    return 0


def _release(quarantine: Quarantine, args: argparse.Namespace) -> int:
    if not args.yes:
        raise CommandError("releasing a rejected file needs --yes (it was rejected for a reason)")
    entry = quarantine.get(args.sha256)
    target = quarantine.release(entry.sha256, args.destination)
    if args.json:
        write_json({**entry.as_dict(), "released_to": str(target)}, sys.stdout)
    else:
        print(f"released {entry.sha256} to {printable(str(target))}")
    return 0


def _purge(quarantine: Quarantine, args: argparse.Namespace) -> int:
    cutoff: datetime | None = None if args.all else args.older_than
    if cutoff is not None and cutoff > datetime.now(timezone.utc):
        # Every file was quarantined before a future time: a typo would delete the evidence.
        raise CommandError(f"--older-than {cutoff.isoformat()} is in the future and would purge "
                           "every file; use --all for that")
    removed = quarantine.purge(older_than=cutoff)
    if args.json:
        write_json([entry.as_dict() for entry in removed], sys.stdout)
    else:
        print(f"purged {counted(len(removed), 'file')}")
    return 0


def _row(entry: QuarantineEntry) -> list[str]:
    details = entry.details
    return [
        entry.sha256[:_SHOWN_HASH],
        format_datetime(entry.time, "seconds"),
        format_bytes(entry.size),
        str(details.get("claimed_type") or "-"),
        str(details.get("detected_type") or "-"),
        entry.original_name or "-",
        entry.reason,
    ]
