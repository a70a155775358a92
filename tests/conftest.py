"""Shared fixtures: a real, throwaway PostgreSQL server and fresh audit stores.

PostgreSQL: one cluster per test session, started from the server binaries found on this
machine (``$PG_BINDIR``, ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``, or ``PATH``)
in a temporary directory, on a free loopback port, with durability off for speed. Tests that
use it are marked ``postgres`` automatically. Without server binaries those tests are skipped
with the reason, except when ``CI`` or ``RAGTRAIL_REQUIRE_POSTGRES=1`` is set: then they fail,
because a missing PostgreSQL in CI must never pass silently (issue 2).

Fixtures:
- ``postgres_url``: session-scoped SQLAlchemy URL of the server's ``postgres`` database.
- ``postgres_db_url``: a new, empty database for one test (dropped afterwards).
- ``_postgres_cluster``: the session's ``PostgresServer`` itself, for fixtures of a wider scope
  that keep a database of their own (``create_database()``/``drop_database()``); tests that
  use it directly are marked ``postgres`` by hand.
- ``postgres_server``: the running server with ``stop()``/``start()`` for outage tests and
  ``freeze()``/``thaw()`` for a server that stops answering (its processes SIGSTOPped, so
  connections hang instead of being refused); it is thawed and started again after the test
  whatever happened.
- ``store_factory``: ``store_factory(url=None, **kwargs)`` makes an ``AuditStore`` (default: a
  SQLite file in ``tmp_path``) and closes every store it made at teardown.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ragtrail.store import AuditStore

POSTGRES_FIXTURES = frozenset({"postgres_url", "postgres_db_url", "postgres_server"})
_START_TIMEOUT = 30
# A pipeline's shutdown joins its metric reader, so none should be left; the grace covers a
# last export that a loaded machine finishes just after the pipeline's timeout.
_READER_STOP_GRACE_S = 1.0


def _required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("RAGTRAIL_REQUIRE_POSTGRES") == "1"


def find_postgres_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None when there is none."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True)
            candidates.append(out.stdout.strip())
    # Debian/Ubuntu keep the server binaries off PATH, one directory per major version.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                         else 0, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A throwaway cluster: ``initdb`` once, then ``start()``/``stop()`` at will.

    ``initdb`` refuses to run as root, so as root every server command runs as the
    ``postgres`` user via ``runuser``, in a directory that user owns.
    """

    user = "postgres"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="ragtrail-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.password = secrets.token_urlsafe(12)
        self.running = False
        self.frozen: list[int] = []
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return (f"postgresql+psycopg://{self.user}:{self.password}"
                f"@127.0.0.1:{self.port}/{database}")

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                check=False)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): "
                               f"{result.stderr.strip()}\n{log}")

    def init(self) -> None:
        self.socket_dir.mkdir()
        password_file = self.root / "pw"
        password_file.write_text(self.password)
        if self._as_root:
            shutil.chown(self.root, self.user)
            for path in (self.socket_dir, password_file):
                shutil.chown(path, self.user)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--pwfile",
                  str(password_file), "--auth-local=trust", "--auth-host=scram-sha-256",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        password_file.unlink()

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=100 -c shared_buffers=32MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", str(_START_TIMEOUT), "start")
        self.running = True

    def stop(self) -> None:
        """Stop now (``-m fast``): clients are disconnected, as in an outage."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def _processes(self) -> list[int]:
        """The postmaster and its children (the backends serving connections)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat_file in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(stat_file).read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:  # field 4 of proc(5): the parent's PID
                    children.append(int(Path(stat_file).parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """Stop every server process (SIGSTOP): the server hangs like a dead host, connections
        and queries wait instead of failing (Linux /proc; the test needs the right to signal
        the postgres user's processes, which root has)."""
        self.frozen = self._processes()
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = []

    def destroy(self) -> None:
        self.thaw()
        if self.running:
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A new, empty database (the server started first if a test left it stopped): its
        name, for ``url_for()``."""
        if not self.running:
            self.start()
        name = f"t_{secrets.token_hex(6)}"
        # FILE_COPY: with fsync off it is ~5x faster than PostgreSQL 15's default WAL_LOG.
        self.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database made by ``create_database()``, disconnecting its clients."""
        if not self.running:
            self.start()
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, sql: str) -> None:
        """Run one statement in autocommit mode (CREATE/DROP DATABASE need it)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                             password=self.password, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]  # sql built from our own names


def pytest_configure(config: pytest.Config) -> None:
    """A suite started as a background job of a non-interactive shell inherits SIGINT ignored,
    and so would every process a test starts, which Ctrl-C tests then cannot stop (seen: a
    whole CI run's tail, demo and server tests timing out). A handler of this process's own
    is reset to the default in children, where an ignored signal stays ignored."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def _no_metric_reader_left_running() -> Iterator[None]:
    """A metric reader a test started has stopped by the end of the test. One left running
    goes on exporting after the test's collector is gone, and its refused exports were logged
    in a later test (seen in py310-compat); shut pipelines down while their collector still
    answers, and wait for a reader whose last export hangs."""
    from instrument.otlp_receivers import metric_readers

    before = metric_readers()
    yield
    deadline = time.monotonic() + _READER_STOP_GRACE_S
    while left := metric_readers() - before:
        if time.monotonic() > deadline:
            pytest.fail(f"{len(left)} metric reader(s) still running after the test: its "
                        "pipeline was not shut down, or its last export hangs")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def _postgres_cluster() -> Iterator[PostgresServer]:
    bindir = find_postgres_bindir()
    if bindir is None:
        reason = ("PostgreSQL server binaries (initdb, pg_ctl) not found via $PG_BINDIR, "
                  "pg_config --bindir, /usr/lib/postgresql/*/bin or PATH")
        if _required():
            pytest.fail(f"{reason}; CI/RAGTRAIL_REQUIRE_POSTGRES requires them")
        pytest.skip(f"{reason} (install Debian's 'postgresql' package to run these tests)")
    server = PostgresServer(bindir)
    try:
        server.init()
        server.start()
    except Exception:
        server.destroy()
        raise
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def postgres_url(_postgres_cluster: PostgresServer) -> str:
    """The SQLAlchemy URL (psycopg 3) of the session server's ``postgres`` database."""
    return _postgres_cluster.url


@pytest.fixture
def postgres_server(_postgres_cluster: PostgresServer) -> Iterator[PostgresServer]:
    """The session server, for tests that stop and start it; always left running."""
    yield _postgres_cluster
    _postgres_cluster.thaw()
    if not _postgres_cluster.running:
        _postgres_cluster.start()


@pytest.fixture
def postgres_db_url(_postgres_cluster: PostgresServer) -> Iterator[str]:
    """A new, empty database on the session server for this test only."""
    name = _postgres_cluster.create_database()
    yield _postgres_cluster.url_for(name)
    _postgres_cluster.drop_database(name)


@pytest.fixture
def store_factory(tmp_path: Path) -> Iterator[Callable[..., AuditStore]]:
    """Make audit stores (default: a new SQLite file in ``tmp_path``); all closed afterwards."""
    from ragtrail.store import AuditStore

    made: list[AuditStore] = []

    def make(url: str | None = None, **kwargs: Any) -> AuditStore:
        store = AuditStore(url or f"sqlite:///{tmp_path / f'store{len(made)}.db'}", **kwargs)
        made.append(store)
        return store

    yield make
    for store in reversed(made):
        store.close(timeout=10)


@pytest.fixture
def isolated_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No process-wide monitor and no ``RAGTRAIL_*``/``OTEL_*`` settings from the outer shell;
    a default monitor stores in ``tmp_path``; whatever monitor the test configured is shut down
    afterwards. Test packages that need it make it autouse in their own conftest."""
    from ragtrail.instrument import _monitor

    for name in list(os.environ):
        if name.startswith(("RAGTRAIL_", "OTEL_")) and name != "RAGTRAIL_REQUIRE_POSTGRES":
            monkeypatch.delenv(name)
    monkeypatch.setenv("RAGTRAIL_STORE_URL", f"sqlite:///{tmp_path / 'default.db'}")
    monkeypatch.setattr(_monitor, "_active", None)
    monkeypatch.setattr(_monitor, "_enabled_from_environment", None)
    monkeypatch.setattr(_monitor, "_default_unavailable", False)
    monkeypatch.setattr(_monitor, "_alert_callbacks", [])
    yield
    if _monitor._active is not None:
        _monitor._active.shutdown(timeout=10)


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(directory, the same directory bind-mounted read-only): a volume mounted readOnly, an
    evidence copy on read-only media. A real mount, so it needs root where mounts are allowed
    (CI's container); root ignores file modes, so nothing else makes a directory unwritable."""
    source, view = tmp_path / "data", tmp_path / "read-only"
    source.mkdir()
    view.mkdir()
    for command in (["mount", "--bind", str(source), str(view)],
                    ["mount", "-o", "remount,ro,bind", str(view)]):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", str(view)], capture_output=True, check=False)
            pytest.skip(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
    try:
        yield source, view
    finally:
        subprocess.run(["umount", str(view)], check=True)
