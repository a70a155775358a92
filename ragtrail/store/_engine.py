"""Engines: SQLite tuned for many writers (WAL, BEGIN IMMEDIATE), anything else unchanged.

SQLite facts measured on the target machines (issue 2): writers that start with
``BEGIN IMMEDIATE`` and wait on a busy timeout never hit SQLITE_BUSY mid-transaction (8
processes x 300 transactions, 0 errors), deferred transactions did (1,491 of 2,400), because a
deferred reader cannot upgrade to a writer once another process committed. WAL lets readers
(the CLI) run while a writer writes; ``synchronous=NORMAL`` in WAL loses no committed
transaction on a process crash (only on power loss).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.pool import ConnectionPoolEntry, SingletonThreadPool, StaticPool

from ragtrail.store._errors import StoreError

__all__ = [
    "WRITE",
    "Target",
    "create_private",
    "database_url",
    "make_engine",
    "missing_driver",
    "parse_target",
]

WRITE = "ragtrail_write"
"""Execution option marking a writer's connection: its transactions begin IMMEDIATE."""

_BUSY_TIMEOUT_S = 5.0
# A full spans ring is the steady state of a busy service, and its trace_id and correlation_id
# indexes take random keys: each row inserted or trimmed dirties pages all over both. With
# SQLite's defaults (a 2 MiB page cache, a checkpoint every 1,000 WAL pages) the writer kept
# re-reading those pages and checkpointed (copy + fsync) after nearly every batch: 82 us per
# span row into a full 100,000-row ring against 20 us into an empty one. A 16 MiB cache holds
# the indexes of the default rings, and checkpoints every 10,000 pages of 4 KiB (a WAL of up
# to 40 MiB) write each hot page once for many batches: 31-36 us full, 10-11 us empty.
_CACHE_KIB = 16384
_CHECKPOINT_BYTES = 10_000 * 4096  # 5,000 pages of 8 KiB
# On a small volume a 40 MiB WAL fills the disk before its first checkpoint, and a full disk
# leaves no room for the checkpoint that would empty it: a 30 MiB tmpfs failed for good with
# an 8 KiB database and a 30 MiB WAL. So the WAL gets at most a quarter of the room on its
# volume (free space plus its own size), no less than 1 MiB, measured when a connection opens
# and again when it is taken from the pool after _REFIT_SECONDS (the writer's connection lives
# on while other files fill the volume).
_WAL_SHARE = 4
_MIN_CHECKPOINT_BYTES = 1 << 20
_REFIT_SECONDS = 30.0
_FITTED_AT = "ragtrail_wal_fitted_at"
# New files get 8 KiB pages (SQLite's default is 4 KiB): a span with captured values (2-3 KB)
# left most of a 4 KiB page empty, and every page goes through the WAL and a checkpoint.
# Into a full ring: 22-23 against 38-46 us per captured span, events ingest 89,500-93,000
# against 72,700-77,800 rows per second, request spans unchanged. A store created earlier
# keeps its page size (WAL mode cannot change it).
_PAGE_SIZE = 8192
_CONNECT_TIMEOUT_S = 10
# Primary result codes (those of the extended codes too) that reopening may cure, with the
# message that shows them where sqlite3 has no ``sqlite_errorcode`` (Python 3.10).
_REFUSALS = {8: "readonly database", 13: "database or disk is full"}  # READONLY, FULL
_LIBPQ_DRIVERS = ("psycopg", "psycopg2")
_SECRET_PARAMETERS = ("password", "sslpassword")  # libpq's keywords holding secrets


@dataclass(frozen=True)
class Target:
    """What a store URL points at, with what is safe to show about it."""

    url: URL
    shown: str  # for messages: the file path, or the URL without its password
    secrets: tuple[str, ...]  # strings to mask in error messages

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def sqlite_path(self) -> str | None:
        """The database file, or None for an in-memory SQLite database."""
        database = self.url.database
        if not self.is_sqlite or not database or database == ":memory:" or \
                database.startswith("file::memory:"):
            return None
        return database


def database_url(url: str | URL) -> URL:
    """``make_url``, also taking ``postgres://``: the scheme of the ``DATABASE_URL`` that
    Heroku, Render and many Helm charts hand out, which SQLAlchemy dropped in 1.4."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgres":
        return parsed.set(drivername="postgresql" + parsed.drivername[len("postgres"):])
    return parsed


def parse_target(url: str | URL) -> Target:
    try:
        parsed = database_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError, ValueError
        raise StoreError(f"not a database URL: {type(exc).__name__}") from None
    # libpq also takes its password from the query (``postgresql://u@db/audit?password=...``).
    hidden = {key: "***" for key in _SECRET_PARAMETERS if key in parsed.query}
    secrets = tuple(value for value in (parsed.password, *map(parsed.query.get, hidden))
                    if isinstance(value, str) and value)
    target = Target(parsed, "", secrets)
    shown = target.sqlite_path or parsed.update_query_dict(hidden).render_as_string(
        hide_password=True).replace("=%2A%2A%2A", "=***")  # as the user part shows it
    return Target(parsed, shown, secrets)


def make_engine(target: Target, *, read_only: bool,
                engine_options: Mapping[str, Any] | None = None) -> Engine:
    """An engine for ``target``; ``engine_options`` go to ``create_engine`` (e.g.
    ``connect_args``, ``pool_size``) and win over ragtrail's defaults."""
    options: dict[str, Any] = dict(engine_options or {})
    if not target.is_sqlite:
        options.setdefault("pool_pre_ping", True)  # a restarted server left dead connections
        if target.url.get_driver_name() in _LIBPQ_DRIVERS:
            # libpq waits forever for a host that does not answer; the writer must get back
            # to its retries (and close() to its deadline) instead.
            connect_args = dict(options.get("connect_args", {}))
            connect_args.setdefault("connect_timeout", _CONNECT_TIMEOUT_S)
            options["connect_args"] = connect_args
        try:
            engine = create_engine(target.url, **options)
        except ImportError as exc:  # ModuleNotFoundError: No module named 'psycopg'
            raise StoreError(f"{target.shown}: {missing_driver(exc, target.url)}") from None
        if read_only and target.url.get_backend_name() == "postgresql":
            engine = engine.execution_options(postgresql_readonly=True)
        return engine
    return _sqlite_engine(target, read_only, options)


def _sqlite_engine(target: Target, read_only: bool, options: dict[str, Any]) -> Engine:
    path = target.sqlite_path
    url = target.url
    connect_args = dict(options.pop("connect_args", {}))
    connect_args.setdefault("timeout", _BUSY_TIMEOUT_S)  # sqlite3's busy timeout
    if path is None:
        # One shared connection: every new connection to ":memory:" is another database.
        options.setdefault("poolclass", StaticPool)
        connect_args.setdefault("check_same_thread", False)
    elif read_only:
        if not os.path.isfile(path):
            raise StoreError(f"{path}: no such file (reading never creates a store)")
        # URI mode=ro: SQLite itself refuses to create or write the file.
        uri = "file:" + quote(os.path.abspath(path))
        query = {"mode": "ro", "uri": "true"}
        if _closed_on_read_only_directory(path):
            query["immutable"] = "1"
        url = url.set(database=uri, query=query)
    elif not url.query.get("uri") and not path.startswith("file:"):
        create_private(path)
    engine = create_engine(url, connect_args=connect_args, **options)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Leave transactions to the "begin" hook below instead of pysqlite's implicit BEGIN,
        # which starts late (at the first write) and deferred.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if read_only:
                cursor.execute("PRAGMA query_only = ON")
            else:
                cursor.execute(f"PRAGMA page_size = {_PAGE_SIZE}")  # an empty file only
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")  # negative: KiB, not pages
                _fit_wal_to_volume(cursor, record)
        finally:
            cursor.close()

    if path is not None and not read_only:
        @event.listens_for(engine, "checkout")
        def _refit(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
            if time.monotonic() - record.info.get(_FITTED_AT, 0.0) >= _REFIT_SECONDS:
                cursor = dbapi_connection.cursor()
                try:
                    _fit_wal_to_volume(cursor, record)
                finally:
                    cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    if path is not None and not read_only and \
            not isinstance(engine.pool, StaticPool | SingletonThreadPool):
        # Those pools share one connection between threads: closing it under a reader fails
        # the reader's query.
        _ReopenAfterFault(engine)
    return engine


def _closed_on_read_only_directory(path: str) -> bool:
    """A store whose writers all closed (no -wal or -shm file) in a directory this process
    cannot write: a read-only volume, a copy kept as evidence, another user's directory.

    SQLite opens a WAL database only if it can create the -shm file, so reading such a copy
    failed ("unable to open database file"). With no -wal file the database file holds every
    row, and nothing writes it through a directory nobody here can write to: SQLite may read
    it as immutable (no locks, no -shm)."""
    directory = os.path.dirname(os.path.abspath(path))
    return not os.access(directory, os.W_OK) and not any(
        os.path.exists(path + suffix) for suffix in ("-wal", "-shm"))


def _fit_wal_to_volume(cursor: Any, record: ConnectionPoolEntry) -> None:
    """Checkpoint before the WAL outgrows its share of the volume, and have SQLite cut the
    file back to that share when it starts the WAL over; an oversized WAL (a fuller volume,
    an older run) is checkpointed now, without waiting for readers (PASSIVE)."""
    record.info[_FITTED_AT] = time.monotonic()
    path = next((row[2] for row in cursor.execute("PRAGMA database_list") if row[1] == "main"),
                "")
    if not path:  # in memory: no WAL, no volume
        return
    try:
        volume = os.statvfs(os.path.dirname(path))
        wal = os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0
    except OSError:
        budget, wal = _CHECKPOINT_BYTES, 0
    else:
        room = volume.f_bavail * volume.f_frsize + wal
        budget = max(_MIN_CHECKPOINT_BYTES, min(_CHECKPOINT_BYTES, room // _WAL_SHARE))
    (page_size,) = cursor.execute("PRAGMA page_size").fetchone()
    cursor.execute(f"PRAGMA wal_autocheckpoint = {max(1, budget // page_size)}")
    cursor.execute(f"PRAGMA journal_size_limit = {budget}")
    if wal > budget + budget // 2:
        with contextlib.suppress(sqlite3.Error):  # full: the next connect tries again
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class _ReopenAfterFault:
    """Closes every connection of the engine after SQLite refused a write as read-only or
    as full, so the writer's next attempt opens the file afresh.

    SQLite opens a file it may not write (a volume mounted read-only, a file without write
    permission) read-only instead of failing, and while any connection of the process that
    was opened so stays open, new connections to that file come out read-only too (seen on
    a read-only bind mount made writable again): pooled, they refused every later batch for
    good. A full volume: new connections size the WAL to the room left and checkpoint it
    (``_fit_wal_to_volume``). Idle connections are closed at once; any connection that began
    opening before the fault (a reader mid-query, one still connecting) when it comes back.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._fault_at = 0.0  # time.time(), as SQLAlchemy's record.starttime
        event.listen(engine, "checkin", self._close_if_stale)
        event.listen(engine, "handle_error", self._after_error)

    def _close_if_stale(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # starttime is set before the DBAPI connect starts: a connection still opening when
        # the fault came counts as opened before it.
        if dbapi_connection is not None and \
                getattr(record, "starttime", 0.0) <= self._fault_at:
            record.invalidate()

    def _after_error(self, context: ExceptionContext) -> None:
        original = context.original_exception
        code = getattr(original, "sqlite_errorcode", None)  # Python 3.11 and later
        if code is None:
            refused = any(text in str(original) for text in _REFUSALS.values())
        else:
            refused = code & 0xFF in _REFUSALS
        if refused:
            with self._lock:
                self._engine.dispose()
                self._fault_at = time.time()  # after: what opens meanwhile is closed too


def missing_driver(exc: ImportError, url: URL) -> str:
    """What to say when SQLAlchemy cannot import the database's driver."""
    missing = f"its database driver is not installed ({type(exc).__name__}: {exc})"
    if url.get_backend_name() != "postgresql":
        return f"{missing}; install the driver SQLAlchemy's {url.get_backend_name()} dialect uses"
    return (f"{missing}; install ragtrail's postgres extra, which brings psycopg, and name it "
            "in the URL: postgresql+psycopg://")


def create_private(path: str) -> None:
    """Create a missing database file 0600 (its directory 0700) before SQLite does: SQLite
    creates files 0644 less the umask and gives ``-wal`` and ``-shm`` the database file's
    mode, so an audit trail would be world-readable. Existing files keep their mode. Errors
    are left to SQLite's own open, which reports them like any other fault."""
    missing: list[str] = []
    directory = os.path.dirname(os.path.abspath(path))
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    try:
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):  # another process made it meanwhile
                os.mkdir(directory, 0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:  # FileExistsError: the usual case
        pass
