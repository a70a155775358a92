"""A separate writer process for the store tests: ``python store_child.py URL WORKER N MODE``.

Records N events (type ``w<WORKER>``, description = sequence number) and N spans, then:
- ``close``: closes the store (flushes);
- ``exit``: returns without closing, so only the interpreter-exit flush can save the records;
- ``flush-then-hang``: flushes, prints ``flushed`` and sleeps until killed;
- ``ready-then-exit``: prints ``ready`` once the store is open, records after reading a line
  from stdin, then exits like ``exit``.
Options go as JSON in ``$STORE_CHILD_OPTIONS`` (AuditStore keyword arguments).
"""

from __future__ import annotations

import json
import os
import sys
import time

from ragtrail._records import SecurityEvent, Severity, SpanRecord
from ragtrail.store import AuditStore


def main(url: str, worker: int, n: int, mode: str) -> None:
    options = json.loads(os.environ.get("STORE_CHILD_OPTIONS", "{}"))
    store = AuditStore(url, **options)
    if mode == "ready-then-exit":
        print("ready", flush=True)
        sys.stdin.readline()
    for seq in range(n):
        now = time.time_ns() // 1000
        store.record(SecurityEvent(event_type=f"w{worker}", severity=Severity.LOW,
                                   source=f"seq{seq}", description=str(seq), time_us=now))
        store.record(SpanRecord(trace_id=f"{worker:016x}{seq:016x}", span_id=f"{seq:016x}",
                                name=f"w{worker}", kind="internal", start_us=now,
                                duration_us=seq))
    if mode == "close":
        store.close(timeout=60)
    elif mode == "flush-then-hang":
        if not store.flush(timeout=60):
            sys.exit("flush timed out")
        print("flushed", flush=True)
        while True:  # records more until killed: none of these may be needed by the parent
            store.record(SecurityEvent(event_type="after-flush", severity=Severity.LOW,
                                       source="x", description="", time_us=0))
            time.sleep(0.001)
    elif mode not in ("exit", "ready-then-exit"):
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
