"""An export blocked on its reader must not pin the live store's WAL.

``ragtrail export`` writes while it streams. When its reader is slow (``| less`` left open
during an incident, a full pipe, a slow network copy), a read transaction held for as long
would stop every checkpoint of the application's WAL on SQLite (the -wal file grows without
bound): each batch of rows is read in a transaction of its own.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from ragtrail._records import SecurityEvent, Severity
from ragtrail.store import AuditStore

ROWS = 5_000  # 1 KB each: far more than a pipe holds


def _event(n: int) -> SecurityEvent:
    return SecurityEvent("flood", Severity.LOW, "gateway", f"{n:06d}" + "x" * 1000,
                         1_714_564_800_000_000 + n)


def test_an_export_waiting_on_its_reader_does_not_hold_back_checkpoints(tmp_path: Path) -> None:
    """The application writes and checkpoints its store while an export of it waits for a
    slow reader: the checkpoint copies the whole WAL back (the export holds no snapshot)."""
    path = tmp_path / "audit.db"
    app = AuditStore(f"sqlite:///{path}", queue_size=ROWS, event_coalesce_seconds=0)
    try:
        for n in range(ROWS):
            app.record(_event(n))
        assert app.flush(timeout=60)
        with subprocess.Popen([sys.executable, "-m", "ragtrail", "export", "--db",
                               f"sqlite:///{path}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as child:
            try:
                assert child.stdout is not None
                assert child.stdout.readline().startswith(b'{"time"')  # it is exporting;
                # the rest (5 MB) does not fit in the pipe: it now waits for this reader
                for n in range(ROWS, ROWS + 200):
                    app.record(_event(n))
                assert app.flush(timeout=60)
                with sqlite3.connect(path) as conn:
                    busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                assert (busy, copied) == (0, log), "the export's snapshot pins the WAL"
            finally:
                child.kill()
                child.communicate(timeout=60)
    finally:
        app.close()
