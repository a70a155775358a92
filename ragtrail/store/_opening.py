"""Opening a store: its schema checked (read-only), or created or migrated under a lock
between processes; a database that does not answer yet is left to the writer's retries."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from ragtrail.store._engine import WRITE, Target
from ragtrail.store._errors import StoreError, describe_error
from ragtrail.store._schema import check_readable, ensure_schema, read_version

__all__ = ["SchemaGate"]

log = logging.getLogger("ragtrail.store")

_START_WAIT_S = 2.0  # how long AuditStore() waits for a database server to answer


class SchemaGate:
    """The schema checks of one store; ``ensure`` is also the writer's, after a fault."""

    def __init__(self, engine: Engine, target: Target, capacities: dict[str, int]) -> None:
        self._engine = engine
        self._target = target
        self._capacities = capacities

    def check_readable(self) -> None:
        try:
            with self._engine.connect() as conn:
                stored = read_version(conn)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise StoreError(f"{self._target.shown}: cannot read it "
                             f"({describe_error(exc, self._target.secrets)})") from None
        try:
            check_readable(stored, self._target.shown)
        except StoreError:
            self._engine.dispose()
            raise

    def ensure(self) -> None:
        with self._engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                _lock_schema(conn)
                ensure_schema(conn, self._capacities, self._target.shown)

    def try_ensure(self) -> str | None:
        """Create or migrate now; an unreachable database is left to the writer's retries
        (instrumentation must not stop the application starting) and its error returned, a
        foreign or newer store is refused here."""
        try:
            self.ensure()
        except StoreError:
            self._engine.dispose()
            raise
        except SQLAlchemyError as exc:
            message = describe_error(exc, self._target.secrets)
            log.warning("ragtrail audit store %s not reachable yet (the writer retries): %s",
                        self._target.shown, message)
            return message
        return None

    def at_start(self) -> str | None:
        """``try_ensure()`` given ``_START_WAIT_S``: a server that accepts connections
        but never answers held every worker's start-up for the whole connect timeout (10 s).
        Past the wait the check goes on alone, and the writer (which also ensures the schema,
        under the same lock) takes over; a foreign or newer store found then is logged, and
        the writer refuses it too."""
        checked: Future[str | None] = Future()

        def check() -> None:
            try:
                checked.set_result(self.try_ensure())
            except StoreError as exc:
                checked.set_exception(exc)
            except Exception as exc:  # not the server's silence: say what it was
                checked.set_result(
                    f"schema check failed: {describe_error(exc, self._target.secrets)}")

        threading.Thread(target=check, name="ragtrail-schema-check", daemon=True).start()
        try:
            return checked.result(timeout=_START_WAIT_S)  # a refused store raises here
        except FutureTimeout:
            checked.add_done_callback(_log_late_refusal)  # nobody waits to raise it any more
        message = f"not answering within {_START_WAIT_S:g} s"
        log.warning("ragtrail audit store %s %s (the writer retries)", self._target.shown,
                    message)
        return message


def _lock_schema(conn: Connection) -> None:
    """Serialise schema creation between processes (SQLite: BEGIN IMMEDIATE already has)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7239811205)"))


def _log_late_refusal(checked: Future[str | None]) -> None:
    refused = checked.exception()
    if refused is not None:
        log.error("ragtrail audit store: %s", refused)
