"""``ragtrail stats``: what the store holds (filled in once StoreStats lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragtrail.cli._args import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    subparsers.add_parser("stats", help="counts, latencies and ring usage")
