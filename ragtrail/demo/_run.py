"""``run_demo``: the service under uvicorn, a fake Ollama, the scenario, the report, a clean stop.

The server runs in a thread and the scenario in the main thread, so Ctrl-C (a
``KeyboardInterrupt`` in the main thread) can arrive anywhere: the ``finally`` stops the server,
then shuts the monitor down, which flushes every queued record to the store. A second Ctrl-C
(or a SIGTERM) during that stop is ignored, so the flush cannot be cut short.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ragtrail._settings import ConfigurationError
from ragtrail.cli._views import counted
from ragtrail.demo._fake_ollama import FakeOllama
from ragtrail.demo._report import STORE_URL_VARIABLE, render_explore, render_report
from ragtrail.demo._scenario import QUESTION, QUESTION_ID, Scenario, ScenarioError
from ragtrail.demo.service import create_app
from ragtrail.store import StoreError

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from ragtrail import Monitor

__all__ = ["DemoError", "DemoOptions", "run_demo"]

_START_TIMEOUT = 15.0
# Fast checks, so readiness follows the fake Ollama within a second (the defaults,
# 15 s apart, suit production, not a 10-second demo).
_DEMO_SETTINGS: dict[str, Any] = {
    "service_name": "ragtrail-demo",
    "health_check_interval": 0.5,
    "health_check_timeout": 2.0,
    "monitoring_interval": 2.0,
}


class DemoError(Exception):
    """The demo cannot start (the port is taken, say); one line for the user."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``ragtrail demo`` was asked to do."""

    store_url: str = "sqlite:///ragtrail.db"
    data_dir: Path = Path("ragtrail-demo")
    serve: bool = False
    port: int = 0


def run_demo(options: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo, printing progress and the report to ``out``; returns the exit status.

    0 when the scenario ran, 1 when the service misbehaved; Ctrl-C propagates as
    ``KeyboardInterrupt`` after a clean stop (with ``serve``, Ctrl-C is the normal end: 0).
    """
    stream = out or sys.stdout

    def say(line: str = "", end: str = "\n") -> None:
        print(line, end=end, file=stream, flush=True)

    started = time.perf_counter()
    since_us = time.time_ns() // 1000
    api_token = secrets.token_urlsafe(18)
    server = _Server(options.port)  # first: a port in use fails before anything is created
    fake = FakeOllama(slow_seconds=0.4).start()
    monitor: Monitor | None = None
    flush_budget = 10.0  # seconds the stop may spend writing queued records to the store
    try:
        base_url = f"http://127.0.0.1:{server.port}"
        say(f"Starting the example RAG service on {base_url}")
        say(f"  audit store {_masked(options.store_url)}, uploads and quarantine in "
            f"{options.data_dir}/, a stand-in Ollama on {fake.url}")
        try:
            app = create_app(
                store_url=options.store_url, ollama_url=fake.url, data_dir=options.data_dir,
                api_token=api_token, ollama_timeout=5.0, **_DEMO_SETTINGS)
            monitor = app.state.monitor
            monitor.store.events(limit=1)  # an unreachable database: say so now, not later
            server.start(app)
        except (StoreError, ConfigurationError, OSError, ScenarioError) as exc:
            flush_budget = 1.0  # before the scenario: an unreachable store is not waited for
            raise DemoError(str(exc)) from None
        scenario = Scenario(server.port, fake, api_token)
        status = _run_phases(scenario, say)
        monitor.store.flush(timeout=10)
        say()
        for line in render_report(monitor.store, since_us=since_us, question_id=QUESTION_ID,
                                  question=QUESTION, probes=scenario.probes):
            say(line)
        for line in render_explore(
                db=_db_argument(options.store_url), question_id=QUESTION_ID,
                quarantine_dir=shlex.quote(str(options.data_dir / "quarantine")),
                data_dir=shlex.quote(str(options.data_dir)),
                base_url=base_url, api_token=api_token, serving=options.serve):
            say(line)
        say()
        say(f"The scenario and the report took {time.perf_counter() - started:.1f} s.")
        if options.serve:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how --serve ends
                server.wait()
            say()
    except KeyboardInterrupt:
        say()
        say("Interrupted: stopping the service and flushing the audit store.")
        raise
    finally:
        with _stop_signals_ignored():
            server.stop()
            fake.stop()
            if monitor is not None:
                monitor.shutdown(timeout=flush_budget)
                health = monitor.store.health()
                say(f"Stopped. {counted(health.written, 'record')} written to the audit store, "
                    f"{health.dropped} dropped, {health.queue_depth} left in the queue.")
    return status


def _run_phases(scenario: Scenario, say: Callable[..., None]) -> int:
    """Each phase with its one-line outcome; 1 (and the reason on stderr) if one fails."""
    phases = list(scenario.phases())
    for number, (title, run) in enumerate(phases, 1):
        say(f"[{number}/{len(phases)}] {title} ... ", end="")
        started = time.perf_counter()
        try:
            summary = run()
        except ScenarioError as exc:
            say()
            print(f"ragtrail: error: demo: {exc}", file=sys.stderr, flush=True)
            return 1
        say(f"{summary} ({time.perf_counter() - started:.1f} s)")
    return 0


class _Server:
    """uvicorn on a socket bound here (so the port is known before it starts), in a thread."""

    def __init__(self, port: int) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(("127.0.0.1", port))
        except OSError as exc:
            self._socket.close()
            raise DemoError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        self.port: int = self._socket.getsockname()[1]
        self._server: uvicorn.Server | None = None
        # An Event, not Thread.join: a join interrupted by Ctrl-C can leave the thread looking
        # finished while it still runs (CPython gh-90882), and the stop would not wait for it.
        self._done = threading.Event()

    def _run(self, server: uvicorn.Server) -> None:
        try:
            server.run(sockets=[self._socket])
        finally:
            self._done.set()

    def start(self, app: Starlette) -> None:
        import uvicorn

        server = self._server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on",
            timeout_graceful_shutdown=3))
        self._thread = threading.Thread(target=self._run, args=(server,),
                                        name="ragtrail-demo-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if self._done.is_set() or time.monotonic() > deadline:
                raise ScenarioError("the service did not start (see the log above)")
            time.sleep(0.02)

    def wait(self) -> None:
        """Until the server stops; a short timeout keeps Ctrl-C responsive."""
        while not self._done.wait(0.25):
            pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._done.wait(10)
        self._socket.close()


@contextlib.contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, signal.SIG_IGN)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: the store will say so itself
        return url


def _db_argument(url: str) -> str:
    """``--db`` as the user should type it: a SQLite file as its path, no password ever."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return shlex.quote(parsed.database)
    if parsed.password is not None:
        return STORE_URL_VARIABLE
    return shlex.quote(url)
