"""A database check: ``SELECT 1`` through SQLAlchemy on a fresh connection, with timeouts.

A fresh connection every run (``NullPool``) because the question is "can this pod reach the
database now", which a pooled connection opened an hour ago does not answer. The runner bounds
the run; the driver timeouts below make the worker thread itself give up soon after.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any
from urllib.parse import quote

import sqlalchemy
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ragtrail.health._check import CheckResult, HealthCheck
from ragtrail.store._engine import database_url, missing_driver, parse_target

__all__ = ["DatabaseCheck"]

_FALLBACK_TIMEOUT = 5.0


class DatabaseCheck(HealthCheck):
    """Run ``SELECT 1``; observed value is the round trip (connect included) in ms.

    The password (in the URL's user part, or libpq's ``?password=`` and ``?sslpassword=``)
    never appears in the check's output, name or repr.

    >>> DatabaseCheck("postgresql+psycopg://app:s3cret@db:5432/rag").key
    'postgres:responseTime'
    """

    def __init__(
        self,
        url: str | sqlalchemy.URL,
        *,
        name: str | None = None,
        critical: bool = True,
        timeout: float | None = None,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = database_url(url)
        target = parse_target(self.url)
        self._shown, self._secrets = target.shown, target.secrets
        self._sqlite_path = target.sqlite_path
        backend = self.url.get_backend_name()
        super().__init__(name or ("postgres" if backend == "postgresql" else backend),
                         critical=critical, timeout=timeout, measurement="responseTime",
                         component_type="datastore")
        self._engine_options = engine_options or {}
        self._engine: Engine | None = None

    def _connect_args(self) -> dict[str, Any]:
        seconds = self.timeout or _FALLBACK_TIMEOUT
        backend = self.url.get_backend_name()
        if backend == "postgresql":
            # libpq takes whole seconds (and treats 1 as 2); statement_timeout is in ms.
            return {"connect_timeout": max(2, math.ceil(seconds)),
                    "options": f"-c statement_timeout={int(seconds * 1000)}"}
        if backend == "sqlite":
            return {"timeout": seconds}
        return {}

    def _engine_for_checks(self) -> Engine:
        if self._engine is None:
            options = {"poolclass": NullPool, "connect_args": self._connect_args(),
                       **self._engine_options}
            self._engine = sqlalchemy.create_engine(self._checked_url(), **options)
        return self._engine

    def _checked_url(self) -> sqlalchemy.URL:
        """The URL to connect to; a SQLite file is opened as a URI with ``mode=rw``, which
        fails on a missing file: a plain path would create an empty database, and pass."""
        path, url = self._sqlite_path, self.url
        if path is None or path.startswith("file:") or url.query.get("uri"):
            return url
        return url.set(database="file:" + quote(os.path.abspath(path)),
                       query={**url.query, "mode": "rw", "uri": "true"})

    def check(self) -> CheckResult:
        started = time.perf_counter()
        try:
            with self._engine_for_checks().connect() as connection:
                connection.execute(sqlalchemy.text("SELECT 1")).scalar_one()
        except Exception as exc:  # described here, where the password is known
            return CheckResult("fail", self._describe(exc), observed_unit="ms")
        elapsed_ms = round((time.perf_counter() - started) * 1000.0, 1)
        return CheckResult("pass", observed_value=elapsed_ms, observed_unit="ms")

    def _describe(self, exc: Exception) -> str:
        # The driver's own message, first line only: SQLAlchemy appends the SQL and a link.
        cause = (exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
        text = (str(cause).strip().splitlines() or [""])[0]
        message = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
        if isinstance(cause, ImportError):
            message = missing_driver(cause, self.url)
        for secret in self._secrets:
            message = message.replace(secret, "[REDACTED]")
        return message

    def __repr__(self) -> str:
        return f"DatabaseCheck({self._shown!r}, name={self.name!r}, critical={self.critical})"
