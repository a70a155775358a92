"""``ragtrail scan``: the start-up security posture scan, for people and CI pipelines.

Exit status 1 when a finding is at or above ``--fail-on`` (default medium), so a pipeline can
stop a deployment; 0 otherwise; 2 for bad flags or settings.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ragtrail._records import Severity
from ragtrail._settings import ConfigurationError, Settings
from ragtrail.cli._args import CommandError, parse_severity
from ragtrail.cli._db import add_db_argument, store_url
from ragtrail.cli._serialize import write_json
from ragtrail.cli._table import Column, render_table

if TYPE_CHECKING:
    from ragtrail.cli._args import Subparsers

__all__ = ["add_parser"]

EXIT_FINDINGS = 1
_COLUMNS = (Column("SEVERITY"), Column("ID"), Column("FINDING", max_width=70),
            Column("REMEDY"))


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "scan", help="check this deployment's security posture",
        description="Check settings (RAGTRAIL_*/OTEL_* variables) and file modes for "
                    "weaknesses. Exit status 1 when a finding is at or above --fail-on.")
    add_db_argument(parser)
    parser.add_argument("--json", action="store_true",
                        help="print a JSON array of findings instead of a table")
    parser.add_argument("--fail-on", metavar="SEVERITY", type=parse_severity,
                        default=Severity.MEDIUM,
                        help="lowest severity that makes the exit status 1 "
                             "(low, medium, high, critical; default: medium)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ragtrail.security import scan_posture

    try:
        settings = Settings.from_env()
        if args.db:
            settings = settings.replace(store_url=store_url(args.db))
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
    findings = scan_posture(settings)
    if args.json:
        write_json([finding.as_dict() for finding in findings], sys.stdout)
    elif not findings:
        print("no findings", file=sys.stderr)
    else:
        rows = ([str(f.severity), f.id, f.title, f.remedy] for f in findings)
        for line in render_table(_COLUMNS, rows):
            print(line)
    failing = any(finding.severity >= args.fail_on for finding in findings)
    return EXIT_FINDINGS if failing else 0
