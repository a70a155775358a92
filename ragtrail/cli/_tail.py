"""``ragtrail tail``: print the latest events, then follow new ones until Ctrl-C.

The store is polled: each poll asks for the newest matching events and prints those with an ID
above the last one printed. IDs grow with every insert, whatever the writer process, so nothing
is printed twice; repeats coalesced into an already printed event are not printed again. A poll
that fails (the database restarting, a failover) is retried from the same place, not fatal:
tail is what people keep open during an incident.
"""

from __future__ import annotations

import argparse
import select
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragtrail._records import SecurityEvent
from ragtrail.cli._args import interval_seconds, non_negative_int
from ragtrail.cli._db import add_db_argument, open_store, store_url
from ragtrail.cli._filters import (
    CORRELATION_ID,
    EVENT_TYPE,
    MIN_SEVERITY,
    SOURCE,
    add_filters,
    query_kwargs,
)
from ragtrail.cli._serialize import write_jsonl
from ragtrail.cli._table import format_row
from ragtrail.cli._views import EVENTS

if TYPE_CHECKING:
    from ragtrail.cli._args import Subparsers
    from ragtrail.store import AuditStore

__all__ = ["add_parser"]

_FILTERS = (MIN_SEVERITY, EVENT_TYPE, SOURCE, CORRELATION_ID)
_MAX_POLL = 10_000
_LATE_S = 5.0  # a poll reads a few index entries: milliseconds when the database is well
_WIDTHS = [column.stream_width for column in EVENTS.columns]


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "tail", help="print the latest events, then follow new ones until Ctrl-C",
        description="Print the latest matching events, oldest first, then poll the store and "
                    "print new ones as they arrive. Ctrl-C stops it (exit status 0).")
    add_db_argument(parser)
    parser.add_argument("--json", action="store_true",
                        help="print JSON Lines (one object a line) instead of table lines")
    parser.add_argument("--limit", type=non_negative_int, default=10, metavar="N",
                        help="how many existing events to print first; 0 prints only new "
                             "ones (default: 10)")
    parser.add_argument("--interval", type=interval_seconds, default=0.5, metavar="SECONDS",
                        help="time between polls of the store (default: 0.5)")
    add_filters(parser, _FILTERS)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        with open_store(args) as store:
            _follow(store, args, _StoreFile.of(store_url(args.db)))
    except KeyboardInterrupt:  # the way tail is meant to stop
        pass
    return 0


class _StoreFile:
    """The SQLite file tail follows, by inode. Deleted, or replaced (the application's
    store recreates a deleted file, a backup is restored over it), it used to be followed
    silently in its old inode, where nothing new ever arrives."""

    def __init__(self, path: str) -> None:
        from ragtrail.store._file_guard import file_identity  # the store loads on first use

        self.path = path
        self._identity = file_identity(path)

    @classmethod
    def of(cls, url: str) -> _StoreFile | None:
        from ragtrail.store._engine import parse_target

        path = parse_target(url).sqlite_path
        return None if path is None or path.startswith("file:") else cls(path)

    @property
    def deleted(self) -> bool:
        return self._identity is None

    def change(self) -> str | None:
        """``"deleted"`` or ``"replaced"`` once per change of the file at the path, else None."""
        from ragtrail.store._file_guard import file_identity

        identity = file_identity(self.path)
        if identity == self._identity:
            return None
        self._identity = identity
        return "deleted" if identity is None else "replaced"



def _follow(store: AuditStore, args: argparse.Namespace, file: _StoreFile | None) -> None:
    # With the store: --help never loads SQLAlchemy.
    from ragtrail.store import StoreError, UnreadableRowError

    filters = query_kwargs(args, _FILTERS)
    latest = store.events(**filters, limit=max(args.limit, 1))
    last = max(latest, key=lambda event: event.id or 0, default=None)
    last_id = last.id or 0 if last is not None else 0
    if not args.json:
        print(format_row(EVENTS.columns, _WIDTHS, [c.header for c in EVENTS.columns]))
    _print(list(reversed(latest[:args.limit])), args.json)
    failing = False  # the last poll failed
    while True:
        time.sleep(args.interval)
        if _reader_gone():
            raise BrokenPipeError  # main() ends with 141, as for a write into the closed pipe
        if file is not None:
            last_id = _after_file_change(store, file, last, last_id)
            if file.deleted:
                continue
        late = _LateNote(f"ragtrail: note: the store has not answered for {_LATE_S:g} s; "
                         "still waiting")
        try:
            fresh, complete = _new_events(store, filters, last_id)
        except UnreadableRowError:  # the same row again at every poll: say so, and stop
            raise
        except StoreError as exc:  # a restart or failover: keep the place and try again
            if not failing:
                print(f"ragtrail: note: cannot read the store ({exc}); retrying every "
                      f"{args.interval:g} s", file=sys.stderr, flush=True)
            failing = True
            continue
        finally:
            late.cancel()
        if failing or late.said:
            print("ragtrail: note: reading the store again", file=sys.stderr, flush=True)
            failing = False
        if not complete:
            print(f"ragtrail: note: more than {_MAX_POLL} new events in one poll; "
                  "only the newest are shown", file=sys.stderr)
        if fresh:
            last = fresh[-1]
            last_id = last.id or last_id
            _print(fresh, args.json)


class _LateNote:
    """A note on stderr if a poll has not returned within ``_LATE_S``: a database server that
    hangs (stopped, a frozen VM, packets dropped) neither answers nor refuses, and tail sat
    silent for as long, as if nothing were happening."""

    def __init__(self, note: str) -> None:
        self.said = False
        self._timer = threading.Timer(_LATE_S, self._say, args=(note,))
        self._timer.daemon = True
        self._timer.start()

    def _say(self, note: str) -> None:
        self.said = True
        print(note, file=sys.stderr, flush=True)

    def cancel(self) -> None:
        self._timer.cancel()
        self._timer.join()  # a note being printed is finished, and ``said`` final


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reader closed (``| head -1``): with no new events tail
    writes nothing, so no write would ever fail to tell it."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll(), or stdout is no real file
        return False


def _after_file_change(store: AuditStore, file: _StoreFile, last: SecurityEvent | None,
                       last_id: int) -> int:
    """The ID to follow on from, after a note on stderr if the file changed.

    A replacing file that holds the last event printed is a copy of the same store (a backup
    restored, a copy moved into place): tail goes on after that event. Any other file is
    another store, whose IDs start again from 1: all of its events are new here.
    """
    from ragtrail.store import StoreError

    change = file.change()
    if change is None:
        return last_id
    store.engine.dispose()  # pooled connections still read the old inode
    if change == "deleted":
        print(f"ragtrail: note: {file.path} was deleted; waiting for a new file there",
              file=sys.stderr, flush=True)
        return last_id  # decided when a file appears
    print(f"ragtrail: note: {file.path} is another file now; following it", file=sys.stderr,
          flush=True)
    if last is None:
        return 0
    try:
        same_time = store.events(since=last.time_us, until=last.time_us + 1,
                                 after_id=last_id - 1, limit=None)
    except StoreError:  # not a store yet: the poll says so, and its events are all new
        return 0
    held = any(_same_event(candidate, last) for candidate in same_time)
    return last_id if held else 0


def _same_event(a: SecurityEvent, b: SecurityEvent) -> bool:
    """The same stored event, whatever repeats coalesced into it since (its count)."""
    return (a.id, a.time_us, a.event_type, a.source, a.description) == \
        (b.id, b.time_us, b.event_type, b.source, b.description)


def _new_events(
    store: AuditStore, filters: dict[str, Any], last_id: int,
) -> tuple[list[SecurityEvent], bool]:
    """Matching events with an ID above ``last_id``, oldest first, and whether that is all
    (at most ``_MAX_POLL`` per poll, in one query)."""
    fresh = store.events(**filters, after_id=last_id, limit=_MAX_POLL)
    fresh.reverse()
    return fresh, len(fresh) < _MAX_POLL


def _print(events: Sequence[SecurityEvent], as_json: bool) -> None:
    if as_json:
        write_jsonl(events, sys.stdout)
    else:
        for event in events:
            print(format_row(EVENTS.columns, _WIDTHS, EVENTS.cells(event)))
    sys.stdout.flush()  # a pipe would otherwise hold the lines back
