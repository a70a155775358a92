"""A running writer's second look at the store's compatibility floor.

``AuditStore()`` checks the schema version and its floor when it opens the store; a rolling
deploy of a release that raises the floor migrates the store while older replicas go on
writing. So the writer reads the version row again before its first batch, every
``FLOOR_RECHECK_S``, and before its next attempt after a failed one (a newer release's
migration is when writes fail), and stops writing a store whose floor is now above this
ragtrail's schema version: what it records is dropped and counted, health says why. A writer
that could not reach the database when its store opened finds the floor in its own schema
check instead (``Committer``) and stops the same way. It never migrates anything. A floor
lowered again (the rollout rolled back by hand) lets it write again, as a restart would.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ragtrail.store._counters import Counters
from ragtrail.store._errors import StoreError, describe_error
from ragtrail.store._schema import SCHEMA_VERSION, refusal, version_row

__all__ = ["FLOOR_RECHECK_S", "FloorWatch"]

log = logging.getLogger("ragtrail.store")

# One single-row SELECT per writer per interval, in a connection from the pool: measured
# 0.3-0.4 ms of CPU (0.9-1.1 ms wall) on SQLite, 0.7-1.0 ms (2-3 ms wall, pre-ping included)
# on a local PostgreSQL; every half minute, nothing the writer's rows/s shows. Records
# written between a newer release's migration and the next look go in as this version
# writes them (docs/scaling.md, "Upgrades and rollbacks").
FLOOR_RECHECK_S = 30.0


class FloorWatch:
    """Whether this process may still write the store; ``refused`` says why not (None: it may).

    The writer thread's only: ``due(now)`` costs a comparison, ``check(now)`` one SELECT.
    """

    def __init__(self, engine: Engine, shown: str, secrets: tuple[str, ...],
                 counters: Counters) -> None:
        self._engine = engine
        self._shown = shown
        self._secrets = secrets
        self._counters = counters
        self.interval_s = FLOOR_RECHECK_S
        self.refused: str | None = None
        # Due at once: a child forked from a process that stopped writing starts afresh.
        self._next_at = 0.0

    def due(self, now: float) -> bool:
        return now >= self._next_at

    def expire(self) -> None:
        """Look again before the next attempt (a write failed: a migration may be why)."""
        self._next_at = 0.0

    def passed(self, now: float) -> None:
        """The schema was just checked in full (created, migrated or found usable)."""
        self._allowed()
        self._next_at = now + self.interval_s

    def check(self, now: float) -> None:
        """Read the version row; raises ``StoreError`` (a fault: retried, and looked at
        again first) when the database cannot answer."""
        try:
            with self._engine.connect() as conn:
                stored = version_row(conn)
        except SQLAlchemyError as exc:
            raise StoreError(describe_error(exc, self._secrets)) from None
        refused = None if stored is None else refusal(stored, self._shown)
        if refused is None:
            self._next_at = now + self.interval_s
            self._allowed()
        else:
            self.refuse(refused, now)

    def refuse(self, reason: str, now: float) -> None:
        """Stop writing: the floor is above this version (``reason``, naming both); the next
        look is an interval away."""
        self._next_at = now + self.interval_s
        message = f"{reason}; this process no longer writes it (records are dropped)"
        if self.refused is None:
            log.error("ragtrail audit store: %s. Its compatibility floor is above this "
                      "process's schema version: from now on it writes nothing to the store "
                      "and drops what is recorded, until it is restarted on a newer ragtrail "
                      "or the store allows schema version %d again", reason, SCHEMA_VERSION)
        self.refused = message
        self._counters.error(message)  # again at each look: the reason stays the last error

    def _allowed(self) -> None:
        if self.refused is not None:
            self.refused = None
            log.warning("ragtrail audit store %s allows schema version %d again; writing "
                        "resumed (what was recorded meanwhile was dropped)", self._shown,
                        SCHEMA_VERSION)
