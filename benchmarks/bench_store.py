"""Audit store benchmarks: ingest vs raw sqlite3, a full spans ring, record() cost, queries and
trimming at scale.

    python benchmarks/bench_store.py            # full run (builds a 1,000,000-row store)
    python benchmarks/bench_store.py --quick    # smaller sizes, fewer repeats

Every number is a median over repeats measured in this run; ratios compare against a baseline
measured in the same run, interleaved with the measured side so machine noise hits both.
Not part of the test suite: nothing here fails on a slow machine, it prints a table.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import os
import queue
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from ragtrail._records import Record, SecurityEvent, Severity, SpanRecord
from ragtrail.instrument._spans import new_trace_id
from ragtrail.store import AuditStore
from ragtrail.store._ring import evictions
from ragtrail.store._rows import RowBuilder
from ragtrail.store._schema import EVENTS, RING

BATCH = 500
# Ingest: mostly low/medium noise, some high and critical events.
MIX = [Severity.LOW] * 70 + [Severity.MEDIUM] * 20 + [Severity.HIGH] * 8 + [Severity.CRITICAL] * 2
# The big store: high and critical events are rare (0.5%), where an index matters most.
RARE = [Severity.LOW] * 900 + [Severity.MEDIUM] * 95 + [Severity.HIGH] * 4 + [Severity.CRITICAL]


@dataclass
class Row:
    what: str
    value: float
    unit: str
    baseline: float | None = None  # measured in the same run, same unit
    goal: str = ""
    higher_is_better: bool = True

    def ratio(self) -> str:
        if self.baseline is None:
            return ""
        ratio = self.value / self.baseline if self.higher_is_better else \
            self.baseline / self.value
        return f"{ratio:.2f}x"


def events(n: int, start: int = 0, mix: list[Severity] = MIX) -> list[SecurityEvent]:
    """Distinct events (no coalescing), fields as the monitor fills them."""
    now = time.time_ns() // 1000
    return [SecurityEvent(
        event_type=f"type{i % 40}", severity=mix[i % len(mix)], source=f"src-{i}",
        description="request rejected by input validation", time_us=now + i,
        correlation_id=f"{i:032x}", trace_id=f"{i:032x}", span_id=f"{i:016x}",
        metadata={"path": "/api/chat", "bytes": i} if i % 2 else {}, service="rag-api",
        host="bench", pid=4242) for i in range(start, start + n)]


def rows_for(batch: list[SecurityEvent], first_id: int) -> list[tuple[object, ...]]:
    """The row tuples the store's writer inserts for ``batch`` (the baseline's input)."""
    builder = RowBuilder(strict=False, limited_text=False)
    return [builder.event(e, first_id + i, 1) for i, e in enumerate(batch)]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def bulk_load(path: Path, n: int, capacity: int, mix: list[Severity] = MIX) -> None:
    """A store holding ``n`` events, loaded with raw executemany (indexes built afterwards)."""
    AuditStore(sqlite_url(path), events_capacity=capacity).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    for index in EVENTS.indexes:
        conn.execute(f"DROP INDEX {index.name}")
    insert = f"INSERT INTO {EVENTS.name} VALUES ({', '.join('?' * len(EVENTS.columns))})"
    counts: collections.Counter[int] = collections.Counter()
    conn.execute("BEGIN")
    for start in range(0, n, 50_000):
        chunk = events(min(50_000, n - start), start, mix)
        counts.update(int(e.severity) for e in chunk)
        conn.executemany(insert, rows_for(chunk, start + 1))
    conn.execute("COMMIT")
    conn.close()
    engine = create_engine(sqlite_url(path))
    with engine.begin() as db:
        for index in EVENTS.indexes:
            index.create(db)
        db.execute(RING.update().where(RING.c.ring == "events", RING.c.bucket == 0)
                   .values(row_count=n, capacity=capacity))
        for level, count in counts.items():
            db.execute(RING.update().where(RING.c.ring == "events", RING.c.bucket == level)
                       .values(row_count=count))
    engine.dispose()


def median_time(fn: Callable[[], object], repeats: int, *, collect_first: bool = True,
                ) -> float:
    """Median seconds of ``repeats`` calls.

    ``collect_first`` (runs of many batches): a full collection before each call, so no
    earlier garbage is timed. Without it (sub-millisecond calls), as ``timeit`` does: the
    collector paused during the call, not forced before it; a full collection empties the
    interpreter's free lists, so the call after it pays for fresh allocations (about 2x for
    the query below).
    """
    times = []
    for _ in range(repeats):
        if collect_first:
            gc.collect()
        else:
            gc.disable()
        try:
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
        finally:
            gc.enable()
    return statistics.median(times)


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ragtrail-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- 1. sustained ingest ------------------------------------------------------------------

CPU_SECONDS: dict[str, list[float]] = collections.defaultdict(list)
"""Process CPU time of the last ingest runs, by side: steadier than wall time on a shared
machine (other processes' load does not count), and it includes the writer thread."""


def record_and_flush(store: AuditStore, records: Sequence[Record]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every thread) to ``record()`` each one and ``flush()``."""
    began, cpu = time.perf_counter(), time.process_time()
    for record in records:
        store.record(record)
    store.flush()
    return time.perf_counter() - began, time.process_time() - cpu


def ingest_ours(path: Path, batch: list[SecurityEvent], capacity: int) -> float:
    store = AuditStore(sqlite_url(path), events_capacity=capacity,
                       queue_size=len(batch) + 1, batch_size=BATCH)
    elapsed, used = record_and_flush(store, batch)
    CPU_SECONDS["ours"].append(used)
    store.close()
    return elapsed


def ingest_raw(path: Path, rows: list[tuple[object, ...]]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    insert = f"INSERT INTO {EVENTS.name} VALUES ({', '.join('?' * len(EVENTS.columns))})"
    began, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(rows), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, rows[start:start + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    CPU_SECONDS["raw"].append(time.process_time() - cpu)
    conn.close()
    return elapsed


def ingest_raw_trimming(path: Path, rows: list[tuple[object, ...]], capacity: int) -> float:
    """Raw sqlite3 doing the store's own ring work: per-severity trimming and ring counts."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    insert = f"INSERT INTO {EVENTS.name} VALUES ({', '.join('?' * len(EVENTS.columns))})"
    began = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        part = rows[start:start + BATCH]
        conn.execute("BEGIN IMMEDIATE")
        counts = dict(conn.execute(
            "SELECT bucket, row_count FROM ragtrail_ring WHERE ring = 'events'").fetchall())
        conn.execute("SELECT max(id) FROM ragtrail_events").fetchone()
        conn.executemany(insert, part)
        levels = [int(row[3]) for row in part]  # type: ignore[call-overload]
        removed = collections.Counter[int]()
        for level, take in evictions(counts, levels, capacity):
            (cutoff,) = conn.execute(
                "SELECT id FROM ragtrail_events WHERE severity = ? ORDER BY id LIMIT 1 "
                "OFFSET ?", (level, take - 1)).fetchone()
            conn.execute("DELETE FROM ragtrail_events WHERE severity = ? AND id <= ?",
                         (level, cutoff))
            removed[level] += take
        deltas = collections.Counter(levels)
        deltas.subtract(removed)
        conn.executemany("UPDATE ragtrail_ring SET row_count = row_count + ? "
                         "WHERE ring = 'events' AND bucket = ?",
                         [(n, level) for level, n in deltas.items() if n])
        conn.execute("UPDATE ragtrail_ring SET row_count = row_count + ?, written = written + ? "
                     "WHERE ring = 'events' AND bucket = 0",
                     (len(part) - sum(removed.values()), len(part)))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return elapsed


def bench_ingest(root: Path, prefill: int, n: int, repeats: int) -> list[Row]:
    """Into a ring already full (every batch trims) and into an empty one, vs raw inserts of
    the same rows into the same schema (indexes included) with nothing trimmed."""
    template = root / "prefilled.db"
    bulk_load(template, prefill, prefill)
    batch = events(n, prefill)
    raw_rows = rows_for(batch, prefill + 1)
    results: dict[str, list[float]] = collections.defaultdict(list)
    for attempt in range(repeats):
        for name, full in (("full", True), ("empty", False)):
            ours_db, raw_db = root / f"ours-{name}-{attempt}.db", root / f"raw-{name}-{attempt}.db"
            for target in (ours_db, raw_db):
                if full:
                    shutil.copyfile(template, target)
                else:
                    AuditStore(sqlite_url(target)).close()
            rows = raw_rows if full else rows_for(batch, 1)
            results[f"raw-{name}"].append(n / ingest_raw(raw_db, rows))
            capacity = prefill if full else n + 1
            results[f"ours-{name}"].append(n / ingest_ours(ours_db, batch, capacity))
            results[f"cpu-ours-{name}"].append(n / CPU_SECONDS["ours"][-1])
            results[f"cpu-raw-{name}"].append(n / CPU_SECONDS["raw"][-1])
            if full:
                shutil.copyfile(template, raw_db)
                results["raw-trim"].append(n / ingest_raw_trimming(raw_db, rows, prefill))
            for target in (ours_db, raw_db):
                target.unlink()
    med = {key: statistics.median(values) for key, values in results.items()}
    return [
        Row(f"ingest, ring full ({prefill:,} rows): record()+flush(), trimming every batch",
            med["ours-full"], "rows/s", med["raw-full"], ">= 0.7x"),
        Row("  baseline: raw sqlite3 executemany, batches of 500, WAL, same schema, no trim",
            med["raw-full"], "rows/s"),
        Row("  raw sqlite3 doing the same trimming (the floor for any delete-based ring)",
            med["raw-trim"], "rows/s", med["raw-full"]),
        Row("  record()+flush() vs that floor", med["ours-full"], "rows/s", med["raw-trim"]),
        Row("ingest, empty ring (no trimming): record()+flush()", med["ours-empty"], "rows/s",
            med["raw-empty"], ">= 0.7x"),
        Row("  baseline: raw sqlite3 executemany into the empty schema", med["raw-empty"],
            "rows/s"),
        Row("ingest, ring full, per CPU second (both threads; steadier on a busy machine)",
            med["cpu-ours-full"], "rows/cpu-s", med["cpu-raw-full"]),
        Row("ingest, empty ring, per CPU second", med["cpu-ours-empty"], "rows/cpu-s",
            med["cpu-raw-empty"]),
    ]


def request_spans(n: int, *, upstream_ids: bool = False) -> list[SpanRecord]:
    """Server spans as the middleware stores them. Without inbound IDs the new trace's
    (time-ordered) ID is also the correlation ID; IDs from upstream (an ingress's
    X-Request-ID, a caller's traceparent) are random."""
    now = time.time_ns() // 1000
    spans = []
    for i in range(n):
        if upstream_ids:
            trace_id, correlation_id = os.urandom(16).hex(), os.urandom(16).hex()
        else:
            trace_id = correlation_id = new_trace_id().to_bytes(16, "big").hex()
        spans.append(SpanRecord(
            trace_id, os.urandom(8).hex(), "GET /items/{id}", "server", now + i, 1234, None,
            "ok", None, None, correlation_id,
            {"http.request.method": "GET", "url.path": f"/items/{i}", "url.scheme": "http",
             "http.response.status_code": 200, "client.address": "10.0.0.7",
             "user_agent.original": "curl/8.5.0"}))
    return spans


def ingest_spans(path: Path, batch: list[SpanRecord], capacity: int) -> tuple[float, float]:
    """(rows per second, CPU microseconds per row) of ``record()`` + ``flush()``."""
    store = AuditStore(sqlite_url(path), spans_capacity=capacity,
                       queue_size=len(batch) + 1, batch_size=BATCH)
    gc.collect()
    elapsed, used = record_and_flush(store, batch)
    store.close()
    return len(batch) / elapsed, used / len(batch) * 1e6


def bench_span_ring(root: Path, capacity: int, n: int, repeats: int) -> list[Row]:
    """Request spans into a full ring (a busy service's steady state: every batch trims, and
    the trace and correlation indexes are at their largest) and into an empty one,
    alternating; with ragtrail's own IDs and with random IDs from upstream."""
    templates = {}
    for ids in ("own", "upstream"):
        templates[ids] = root / f"spans-full-{ids}.db"
        filler = AuditStore(sqlite_url(templates[ids]), spans_capacity=capacity,
                            queue_size=capacity + 1, batch_size=5_000)
        for span in request_spans(capacity, upstream_ids=ids == "upstream"):
            filler.record(span)
        filler.flush()
        filler.close()
    batches = {ids: request_spans(n, upstream_ids=ids == "upstream") for ids in templates}
    results: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for attempt in range(repeats):
        for case, ids in (("full", "own"), ("full-upstream", "upstream"), ("empty", "own")):
            path = root / f"spans-{case}-{attempt}.db"
            if case != "empty":
                shutil.copyfile(templates[ids], path)
            results[case].append(ingest_spans(path, batches[ids], capacity))
            path.unlink()
    med = {case: (statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs))
           for case, runs in results.items()}
    return [
        Row(f"request spans into a full ring ({capacity:,} rows), record()+flush()",
            med["full"][0], "rows/s", med["empty"][0], "(report)"),
        Row("  the same with random IDs from upstream (X-Request-ID, traceparent)",
            med["full-upstream"][0], "rows/s", med["empty"][0], "(report)"),
        Row("  the same into an empty ring", med["empty"][0], "rows/s"),
        Row("  CPU per span row: full ring, own IDs (both threads)", med["full"][1], "us",
            med["empty"][1], "(report)", higher_is_better=False),
        Row("  CPU per span row: full ring, IDs from upstream", med["full-upstream"][1], "us",
            med["empty"][1], "(report)", higher_is_better=False),
        Row("  CPU per span row: empty ring", med["empty"][1], "us"),
    ]


# -- 2. record() on the caller's thread -----------------------------------------------------

def per_call_us(call: Callable[[Any], object], items: list[Any], chunk: int) -> float:
    """Median over chunks of the mean cost of one call (timer overhead amortised)."""
    costs = []
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        began = time.perf_counter_ns()
        for item in part:
            call(item)
        costs.append((time.perf_counter_ns() - began) / len(part) / 1000)
    return statistics.median(costs)


def bench_record(root: Path, n: int) -> list[Row]:
    store = AuditStore(sqlite_url(root / "record.db"), queue_size=n + 1)
    now = time.time_ns() // 1000
    spans: list[object] = [SpanRecord(f"{i:032x}", f"{i:016x}", "retrieve", "retriever",
                                      now, 1000) for i in range(n)]
    fresh: list[object] = list(events(n))
    repeats: list[object] = [SecurityEvent("flood", Severity.LOW, "bot", "same", now + i)
                             for i in range(n)]
    results = []
    for label, items in (("span", spans), ("event, new key", fresh),
                         ("event, coalesced repeat", repeats)):
        store.flush()
        results.append(Row(f"record() caller cost: {label}", per_call_us(store.record, items,
                                                                          1000),
                           "us/call", goal="<= 2 us", higher_is_better=False))
    store.close()
    deque: collections.deque[object] = collections.deque()
    q: queue.Queue[object] = queue.Queue(maxsize=n + 1)
    results.append(Row("  for reference: deque.append + Event.is_set (ragtrail's queue)",
                       per_call_us(functools.partial(_append_and_check, deque), spans, 1000),
                       "us/call", higher_is_better=False))
    results.append(Row("  for reference: queue.Queue.put_nowait",
                       per_call_us(q.put_nowait, spans, 1000), "us/call",
                       higher_is_better=False))
    return results


_EVENT = threading.Event()


def _append_and_check(deque: collections.deque[object], item: object) -> None:
    deque.append(item)
    _EVENT.is_set()


# -- 2b. the store's cost to the application's thread ---------------------------------------

def request_work(rounds: int) -> int:
    """Pure-Python stand-in for a request handler's own work (parsing, routing, a template)."""
    total = 0
    fields = {"path": "/api/chat", "method": "POST", "status": "200"}
    for i in range(rounds):
        total += len(fields) + (i % 7) * len(fields["status"])
    return total


def calibrate(target_us: float) -> int:
    """The ``request_work`` rounds that take about ``target_us`` on this machine."""
    rounds = 100
    while True:
        began = time.perf_counter_ns()
        for _ in range(200):
            request_work(rounds)
        cost = (time.perf_counter_ns() - began) / 200 / 1000
        if cost >= target_us / 2:
            return max(1, round(rounds * target_us / cost))
        rounds *= 2


def app_loop_us(store: AuditStore | None, rounds: int, spans: list[SpanRecord],
                pause_s: float) -> tuple[float, float]:
    """Per request (work + 2 records, ``len(spans) // 2`` requests): the mean wall time of the
    request itself (the idle ``pause_s`` between requests excluded), and the process CPU time
    (the writer thread's included: what the store costs the machine)."""
    busy = 0
    record = store.record if store is not None else None
    cpu = time.process_time()
    for i in range(0, len(spans), 2):
        began = time.perf_counter_ns()
        request_work(rounds)
        if record is not None:
            record(spans[i])
            record(spans[i + 1])
        busy += time.perf_counter_ns() - began
        if pause_s:
            time.sleep(pause_s)
    requests = len(spans) // 2
    return busy / requests / 1000, (time.process_time() - cpu) / requests * 1e6


def bench_app_cost(root: Path, chunks: int, per_chunk: int) -> list[Row]:
    """Requests of ~20 us of Python work recording 2 spans each, with the store vs without
    records, in interleaved chunks: the difference is what the store costs the app's thread
    (record() itself plus the writer competing for the GIL). A store whose writer does not
    linger (``batch_linger_seconds=0``: a transaction whenever records are queued) shows what
    batching saves. Back to back is a stress case (100,000 records/s from one thread)."""
    rounds = calibrate(20.0)
    rows = []
    for label, pause in (("back to back", 0.0), ("paced, 0.5 ms idle between", 0.0005)):
        stores = {linger: AuditStore(sqlite_url(root / f"app-{pause}-{linger}.db"),
                                     spans_capacity=100_000, batch_linger_seconds=linger)
                  for linger in (0.05, 0.0)}
        now = time.time_ns() // 1000
        times: dict[float | None, list[tuple[float, float]]] = collections.defaultdict(list)
        for chunk in range(chunks):
            spans = [SpanRecord(f"{chunk:08x}{i:024x}", f"{i:016x}", "handler", "server",
                                now + i, 1000) for i in range(2 * per_chunk)]
            sides: list[float | None] = [None, *stores]
            for side in sides if chunk % 2 else reversed(sides):
                store = None if side is None else stores[side]
                times[side].append(app_loop_us(store, rounds, spans, pause))
        base = statistics.median(wall for wall, _ in times[None])
        base_cpu = statistics.median(cpu for _, cpu in times[None])
        rows.append(Row(f"request ({label}): ~20 us Python work, no records", base, "us/req"))
        for linger, store in stores.items():
            store.flush()
            dropped = store.health().dropped
            store.close()
            ours = statistics.median(wall for wall, _ in times[linger])
            cpu = statistics.median(cpu for _, cpu in times[linger])
            note = f", {dropped} dropped" if dropped else ""
            rows.append(Row(f"  + 2 record(), writer linger {linger * 1000:.0f} ms{note}", ours,
                            "us/req", base, higher_is_better=False))
            rows.append(Row("    store's cost per request, wall (difference of medians)",
                            ours - base, "us/req"))
            rows.append(Row("    store's cost per request, CPU incl. the writer", cpu - base_cpu,
                            "us/req"))
    return rows


# -- 3. latest 100 high+ events on a big store ------------------------------------------------

def bench_query(big: Path, rows: int, repeats: int) -> list[Row]:
    store = AuditStore(sqlite_url(big), read_only=True)
    results = []
    for label, level in (("high", "high"), ("critical", "critical")):
        if len(store.events(min_severity=level, limit=100)) != 100:
            raise RuntimeError(f"the big store has fewer than 100 events >= {level}")
        seconds = median_time(functools.partial(store.events, min_severity=level, limit=100),
                              repeats, collect_first=False)
        results.append(Row(f"latest 100 events >= {label} of {rows:,} (0.5% high+)",
                           seconds * 1000, "ms", goal="<= 1 ms" if label == "high" else "",
                           higher_is_better=False))
    store.close()
    copy = big.with_name("no-partial.db")
    shutil.copyfile(big, copy)
    conn = sqlite3.connect(copy)
    conn.execute("DROP INDEX ix_ragtrail_events_high_id")
    conn.close()
    store = AuditStore(sqlite_url(copy), read_only=True)
    seconds = median_time(lambda: store.events(min_severity="high", limit=100),
                          max(3, repeats // 10), collect_first=False)
    results.append(Row("  same query >= high without the partial index", seconds * 1000, "ms",
                       higher_is_better=False))
    store.close()
    copy.unlink()
    return results


# -- 4. trimming cost per batch as the ring grows -------------------------------------------

def bench_trim(root: Path, sizes: list[int], big: Path | None, batches: int) -> list[Row]:
    """Full rings of each size take turns writing a batch of 500 (which trims 500), so
    machine noise spreads over all sizes alike."""
    stores = {}
    for size in sizes:
        path = big if big is not None and size == sizes[-1] else root / f"ring-{size}.db"
        if path != big:
            bulk_load(path, size, size, RARE)
        stores[size] = AuditStore(sqlite_url(path), events_capacity=size,
                                  queue_size=BATCH + 1, batch_size=BATCH)
    times: dict[int, list[float]] = collections.defaultdict(list)
    for turn in range(batches):
        for size, store in stores.items():
            batch = events(BATCH, size + turn * BATCH, RARE)
            began = time.perf_counter()
            for event in batch:
                store.record(event)
            store.flush()
            times[size].append(time.perf_counter() - began)
    results = []
    for size, store in stores.items():
        usage = store.health().ring_usage["events"]
        store.close()
        if usage.rows != size:
            raise RuntimeError(f"ring not full: {usage}")
        results.append(Row(f"batch of 500 incl. trimming 500, ring full at {size:,} rows",
                           statistics.median(times[size]) * 1000, "ms", goal="flat",
                           higher_is_better=False))
    return results


def print_table(rows: list[Row]) -> None:
    width = max(len(r.what) for r in rows)
    print(f"{'measurement':<{width}}  {'median':>12}  {'unit':<8}  {'vs base':>7}  goal")
    print("-" * (width + 45))
    for r in rows:
        value = f"{r.value:,.0f}" if r.value >= 100 else f"{r.value:.3f}"
        print(f"{r.what:<{width}}  {value:>12}  {r.unit:<8}  {r.ratio():>7}  {r.goal}")


SECTIONS = ["ingest", "spans", "record", "app", "query", "trim"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--repeats", type=int, default=None, help="ingest repeats")
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="run only these sections (repeatable; default: all)")
    args = parser.parse_args(argv)
    quick = args.quick
    sections = args.only or SECTIONS
    big_rows = 100_000 if quick else 1_000_000
    repeats = args.repeats or (3 if quick else 5)
    print(f"ragtrail store benchmark: Python {sys.version.split()[0]}, SQLite "
          f"{sqlite3.sqlite_version}, {os.cpu_count()} CPUs, {'quick' if quick else 'full'}")
    rows: list[Row] = []
    with workdir() as root:
        if "ingest" in sections:
            rows += bench_ingest(root, prefill=20_000 if quick else 100_000,
                                 n=20_000 if quick else 50_000, repeats=repeats)
        if "spans" in sections:
            rows += bench_span_ring(root, capacity=20_000 if quick else 100_000,
                                    n=10_000 if quick else 20_000, repeats=repeats)
        if "record" in sections:
            rows += bench_record(root, 20_000 if quick else 200_000)
        if "app" in sections:
            rows += bench_app_cost(root, chunks=9 if quick else 21,
                                   per_chunk=1_000 if quick else 2_000)
        big = root / "big.db"
        if "query" in sections or "trim" in sections:
            began = time.perf_counter()
            bulk_load(big, big_rows, big_rows, RARE)
            print(f"(built a {big_rows:,}-row store in {time.perf_counter() - began:.1f} s)")
        if "query" in sections:
            rows += bench_query(big, big_rows, 50 if quick else 200)
        if "trim" in sections:
            sizes = [10_000, 100_000] + ([] if quick else [1_000_000])
            rows += bench_trim(root, sizes, None if quick else big, 15 if quick else 40)
    print_table(rows)


if __name__ == "__main__":
    main()
