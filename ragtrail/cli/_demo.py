"""``ragtrail demo``: run the example service through a scripted scenario (see docs/cli.md).

Thin: the service, the scenario and the report live in ``ragtrail.demo``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ragtrail.cli._args import CommandError, non_negative_int
from ragtrail.cli._db import add_db_argument, store_url

if TYPE_CHECKING:
    from ragtrail.cli._args import Subparsers

__all__ = ["INSTALL_HINT", "add_parser"]

INSTALL_HINT = "the demo needs uvicorn: pip install uvicorn"


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run an example RAG service through attacks and an outage, then report",
        description="Start an example RAG service on 127.0.0.1 with a stand-in Ollama, send it "
                    "questions, a streamed answer, failed logins, hostile requests and uploads, "
                    "make its model server slow and then fail, and print what the audit store "
                    "recorded. Works offline. Ctrl-C stops it cleanly at any point.",
        epilog="Exit status: 0 done, 1 the service misbehaved, 2 bad input or uvicorn missing, "
               "130 interrupted.")
    add_db_argument(parser)
    parser.add_argument("--serve", action="store_true",
                        help="keep the service running after the report, until Ctrl-C")
    parser.add_argument("--port", type=non_negative_int, default=0,
                        help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--data-dir", metavar="DIR", type=Path, default=Path("ragtrail-demo"),
                        help="where uploads and quarantined files go (default: ./ragtrail-demo)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401  # only to say how to install it, before starting anything
    except ImportError:
        raise CommandError(INSTALL_HINT) from None
    from ragtrail.demo import DemoError, DemoOptions, run_demo

    if args.port > 65535:
        raise CommandError(f"argument --port: expected a port from 0 to 65535; got {args.port}")
    options = DemoOptions(store_url=store_url(args.db), data_dir=args.data_dir,
                          serve=args.serve, port=args.port)
    previous = _stop_on_sigterm()  # None: not the main thread, nothing to restore
    try:
        return run_demo(options)
    except DemoError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


_Handler = Callable[[int, FrameType | None], Any] | int | None


def _stop_on_sigterm() -> _Handler:
    """SIGTERM (``docker stop``, Kubernetes, ``kill``) stops the demo as Ctrl-C does, with the
    store flushed, instead of ending the process on the spot."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
