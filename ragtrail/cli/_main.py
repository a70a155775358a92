"""``main``: builds the parser from the command modules, runs a command, maps failures to exits.

Exit statuses: 0 success; 2 bad input or an unusable store (one ``ragtrail: error:`` line on
stderr, never a traceback); 130 interrupted (Ctrl-C); 141 stdout closed early (``| head``),
as a shell reports a tool killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import io
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from ragtrail.cli._args import CommandError, CommandParser
from ragtrail.cli._db import add_db_argument
from ragtrail.cli._table import printable

__all__ = ["build_parser", "main"]

# The command modules, in --help order. Each exposes add_parser(subparsers), adds its
# subcommands and sets ``handler`` (Namespace -> exit status) on each. A new command group is
# one line here (e.g. "ragtrail.cli._quarantine", "ragtrail.cli._scan", "ragtrail.cli._demo").
COMMAND_MODULES: tuple[str, ...] = (
    "ragtrail.cli._lists",  # events, spans, metrics
    "ragtrail.cli._stats",
    "ragtrail.cli._tail",
    "ragtrail.cli._export",
    "ragtrail.cli._quarantine",
    "ragtrail.cli._scan",
    "ragtrail.cli._demo",
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> CommandParser:
    from ragtrail import __version__

    parser = CommandParser(
        prog="ragtrail",
        description="Read a ragtrail audit store (security events, spans, metrics, stats), "
                    "follow it, export it, and run ragtrail's security tools.",
        epilog="Run 'ragtrail COMMAND --help' for a command's flags. Exit status: 0 success, "
               "2 bad input, an unusable store or output that cannot be written, 130 "
               "interrupted, 141 stdout closed early (| head) (other statuses are listed in a "
               "command's help).")
    parser.add_argument("--version", action="version", version=f"ragtrail {__version__}")
    add_db_argument(parser, top_level=True)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ragtrail`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    _prepare_stdout()
    _quiet_sqlalchemy()
    try:
        try:
            with _ended_by_signals():
                status = _run(argv)
        finally:
            # Inside the try: a reader that went away shows up here, at the final flush.
            sys.stdout.flush()
    except _Terminated as exc:
        return exc.status
    except CommandError as exc:
        # Store text in an error (a row SQLite cannot decode) may hold terminal escapes.
        print(f"ragtrail: error: {printable(' '.join(str(exc).split()))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # stdout on a full disk, over a file-size limit: one line
        _discard_stdout()
        print(f"ragtrail: error: cannot write the output: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_USAGE
    return status


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and --version, after printing
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    handler: Handler = args.handler
    return handler(args)


class _Terminated(BaseException):  # not an Exception: no failsafe may swallow it
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _quiet_sqlalchemy() -> None:
    """SQLAlchemy logs what it fails to clean up after an interruption (closing the cursor of
    a connection it just invalidated) with a traceback, which Python's last-resort handler
    printed under the one line promised. Whatever it logs is also raised to the command,
    which reports it."""
    logger = logging.getLogger("sqlalchemy")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def _terminate(number: int, _frame: FrameType | None) -> None:
    raise _Terminated(128 + number)


@contextmanager
def _ended_by_signals() -> Iterator[None]:
    """SIGTERM (kill, timeout, systemd) and SIGHUP (the terminal closed) end the command by
    an exception, so ``finally`` blocks run: a terminated ``export -o FILE`` left its
    temporary ``.FILE.PID.tmp``, as large as the export so far. The status stays 128 + the
    signal's number, as for a process the signal killed."""
    numbers = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers
        return
    previous = {number: signal.getsignal(number) for number in numbers}
    for number, handler in previous.items():
        if handler is signal.SIG_DFL:  # an ignored signal (nohup) stays ignored
            signal.signal(number, _terminate)
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler is signal.SIG_DFL:
                signal.signal(number, handler)


class _ClosedStdout(io.TextIOBase):
    """What stdout is when the process started with it closed (``ragtrail events >&-``):
    writing fails as a write to a closed descriptor does, which ``main`` reports."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")


def _prepare_stdout() -> None:
    """Make every output reportable: Python sets stdout to None when descriptor 1 is closed,
    and an encoding that lacks a character (a Latin-1 locale, ``PYTHONIOENCODING=ascii``)
    raised UnicodeEncodeError for stored text, or for the table's ``…``: such characters are
    written as ``\\u`` escapes instead, like the control characters ``printable`` escapes."""
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    elif isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's exit-time flush cannot fail again.

    The recipe from the Python docs (library/signal.html, "Note on SIGPIPE").
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor, e.g. captured in tests
        pass
