"""The known store's records, writing a store, and running ``python -m ragtrail``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ragtrail._records import MetricsSample, SecurityEvent, Severity, SpanEvent, SpanRecord
from ragtrail.store import AuditStore

T0 = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z
SECOND = 1_000_000
TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"
LONG_TEXT = "rate limit hit for tenant acme: " + "x" * 90

KNOWN_EVENTS = (
    SecurityEvent("login_failure", Severity.LOW, "auth", "bad password for alice", T0,
                  correlation_id="req-1", service="rag-api", host="web-1", pid=4242),
    SecurityEvent("prompt_injection", Severity.HIGH, "retriever",
                  "ignore previous instructions", T0 + 1 * SECOND, correlation_id="req-2",
                  trace_id=TRACE_B, span_id="00f067aa0ba902b7", metadata={"score": 0.97},
                  service="rag-api", host="web-1", pid=4242),
    SecurityEvent("pii_detected", Severity.CRITICAL, "ingest", "SSN in chunk 3",
                  T0 + 2 * SECOND, metadata={"chunk": 3, "kinds": ["ssn"]},
                  service="rag-api", host="web-2", pid=7),
    SecurityEvent("rate_limited", Severity.MEDIUM, "gateway", LONG_TEXT, T0 + 3 * SECOND,
                  correlation_id="req-2", service="rag-api", host="web-1", pid=4242),
)
KNOWN_SPANS = (
    SpanRecord(TRACE_A, "a000000000000001", "search", "retriever", T0, 12_345,
               parent_span_id="a000000000000000", correlation_id="req-1",
               attributes={"k": 5}),
    SpanRecord(TRACE_A, "a000000000000002", "answer", "llm", T0 + SECOND, 2_345_678,
               parent_span_id="a000000000000000", status="error", error_type="TimeoutError",
               error_message="upstream took too long", correlation_id="req-1",
               events=(SpanEvent("exception", T0 + 2 * SECOND,
                                 {"exception.type": "TimeoutError"}),)),
    SpanRecord(TRACE_B, "b000000000000001", "POST /query", "server", T0 + 2 * SECOND,
               2_500_000, correlation_id="req-2"),
)
KNOWN_METRICS = (
    MetricsSample(T0, 12.5, 40.0, 70.25, 2048.0, 1024.0, 5, 0, 80 * 1024**2),
    MetricsSample(T0 + 30 * SECOND, 97.0, 41.5, 70.25, 0.0, 3.5 * 1024**2, 12, 3,
                  81 * 1024**2),
)


def write_store(url: str, *records: SecurityEvent | SpanRecord | MetricsSample) -> None:
    """Record ``records`` through a writing AuditStore and wait until they are committed."""
    store = AuditStore(url, event_coalesce_seconds=0)
    try:
        for record in records:
            store.record(record)
        assert store.flush(timeout=30)
    finally:
        store.close(timeout=30)


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str


Runner = Callable[..., Result]


@dataclass(frozen=True)
class Reader:
    """A known store and a way to run the CLI on it."""

    url: str
    run: Runner


def run_process(*argv: str, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> Result:
    """``python -m ragtrail ARGV`` as a real child process."""
    done = subprocess.run([sys.executable, "-m", "ragtrail", *argv], capture_output=True,
                          text=True, timeout=60, check=False, cwd=cwd,
                          env={**os.environ, **(env or {})})
    return Result(done.returncode, done.stdout, done.stderr)


_PEAK_RSS = """\
import re, sys
from ragtrail.cli import main
status = main(sys.argv[1:])
# VmHWM: this process image's peak (ru_maxrss would start from the forking parent's).
with open("/proc/self/status") as proc:
    print(re.search(r"VmHWM:\\s*(\\d+) kB", proc.read()).group(1), file=sys.stderr)
raise SystemExit(status)
"""


def peak_rss_kib(*argv: str) -> int:
    """``ragtrail ARGV`` in a real process, output thrown away: its peak resident memory."""
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=300, check=True)
    return int(done.stderr.split()[-1])
