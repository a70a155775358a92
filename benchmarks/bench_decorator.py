"""Per-call cost of ``@monitored`` against the OpenTelemetry SDK decorator, in one run.

    python benchmarks/bench_decorator.py [--rounds 15] [--calls 5000]

Baseline: ``tracer.start_as_current_span`` used as a decorator, with the SDK TracerProvider
and a BatchSpanProcessor whose exporter does nothing (so the SDK's own span cost is measured,
not a network). ragtrail: ``@monitored`` with its SQLite audit store attached (a temporary
file; the background writer really writes; the "no store" rows swap it for a no-op
afterwards, to show the caller's share). The "capture args" rows are issue 3's goal: a
retriever decorated with ``capture_args=True``, called with a 140-character query, returning
5 documents (their ids and scores become span attributes). The "capture all" rows capture
and redact the 5 documents too (``capture_result=True``). Both pass the same query and
documents on every call, as a popular query or a corpus's recurring chunks do (the redactor
remembers text it found clean); the "capture all, new text" rows pass text never seen before
on every call, so the redactor scans everything. Each row is the median over rounds of the mean
per-call time of ``--calls`` calls; the store is flushed between rounds so its queue never
fills (a full queue drops records, which would flatter the numbers), and outside the timing.
The "sustained" rows time the flush too: what the burst left the writer to do.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import ragtrail.instrument as rt

QUERY = ("What is the refund policy for orders shipped to the EU, and how long does it take "
         "to get my money back after I return a damaged item by mail")
DOCUMENTS = [
    {"id": f"doc-{i}", "score": 0.9 - i / 10,
     "content": "Refunds are issued within 14 days of receiving the returned item. " * 3}
    for i in range(5)
]
ITEMS = 3  # per generator run
_CAPTURE_ROWS = ("capture args: otel", "capture args: monitored", "capture all: otel",
                 "capture all: monitored")  # rerun without a store, and with the flush timed


def _fresh_calls() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Queries and documents never seen before, call after call: the redactor's cache of
    clean text never hits (building them costs every variant of the row alike)."""
    for n in itertools.count():
        yield (f"{n:08d} {QUERY[9:]}",
               [{**doc, "content": f"{n:08d} {i} {doc['content']}"}
                for i, doc in enumerate(DOCUMENTS)])
if len(QUERY) != 140:  # the benchmark: a 140-character query and 5 documents
    raise SystemExit(f"QUERY must have 140 characters, not {len(QUERY)}")


class _NoOpExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _sync_suite(tracer: Any) -> dict[str, Callable[[], object]]:
    def plain() -> None:
        return None

    @tracer.start_as_current_span("noop")
    def otel() -> None:
        return None

    @rt.monitored
    def monitored() -> None:
        return None

    def search(query: str, top_k: int = 5) -> list[dict[str, Any]]:
        return DOCUMENTS

    otel_search = tracer.start_as_current_span("search")(search)
    # Issue 3's goal row: capture_args=True; the "capture all" rows capture the result too.
    monitored_args = rt.monitored(kind="retriever", capture_args=True)(search)
    monitored_search = rt.monitored(kind="retriever", capture_args=True,
                                    capture_result=True)(search)

    def numbers() -> Iterator[int]:
        yield from range(ITEMS)

    def otel_numbers() -> Iterator[int]:
        with tracer.start_as_current_span("numbers"):
            yield from range(ITEMS)

    monitored_numbers = rt.monitored(numbers)
    fresh = _fresh_calls()
    retrieved: list[list[dict[str, Any]]] = [DOCUMENTS]

    def search_fresh(query: str, top_k: int = 5) -> list[dict[str, Any]]:
        return retrieved[0]  # the same shape as search(), with this call's new documents

    def fresh_call(fn: Callable[[str], object]) -> Callable[[], object]:
        def call() -> object:
            query, retrieved[0] = next(fresh)
            return fn(query)
        return call

    otel_fresh = tracer.start_as_current_span("search")(search_fresh)
    monitored_fresh = rt.monitored(kind="retriever", capture_args=True,
                                   capture_result=True)(search_fresh)
    return {
        "plain": plain,
        "otel": otel,
        "monitored": monitored,
        "capture args: plain": lambda: search(QUERY),
        "capture args: otel": lambda: otel_search(QUERY),
        "capture args: monitored": lambda: monitored_args(QUERY),
        "capture all: plain": lambda: search(QUERY),
        "capture all: otel": lambda: otel_search(QUERY),
        "capture all: monitored": lambda: monitored_search(QUERY),
        "capture all, new text: plain": fresh_call(search_fresh),
        "capture all, new text: otel": fresh_call(otel_fresh),
        "capture all, new text: monitored": fresh_call(monitored_fresh),
        "generator: plain": lambda: sum(numbers()),
        "generator: otel": lambda: sum(otel_numbers()),
        "generator: monitored": lambda: sum(monitored_numbers()),
    }


def _async_suite(tracer: Any) -> dict[str, Callable[[], Any]]:
    async def plain() -> None:
        return None

    @tracer.start_as_current_span("noop")
    async def otel() -> None:
        return None

    @rt.monitored
    async def monitored() -> None:
        return None

    async def numbers() -> Any:
        for i in range(ITEMS):
            yield i

    async def otel_numbers() -> Any:
        with tracer.start_as_current_span("numbers"):
            for i in range(ITEMS):
                yield i

    monitored_numbers = rt.monitored(numbers)

    async def drain(gen: Any) -> None:
        async for _ in gen:
            pass

    return {
        "async: plain": plain,
        "async: otel": otel,
        "async: monitored": monitored,
        "async generator: plain": lambda: drain(numbers()),
        "async generator: otel": lambda: drain(otel_numbers()),
        "async generator: monitored": lambda: drain(monitored_numbers()),
    }


def _time_sync(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls / 1000


def _time_async(fn: Callable[[], Any], calls: int) -> float:
    async def run() -> float:
        start = time.perf_counter_ns()
        for _ in range(calls):
            await fn()
        return (time.perf_counter_ns() - start) / calls / 1000

    return asyncio.run(run())


class _NoStore:
    """Stands in for the audit store in the "no store" rows: what the caller's thread pays,
    without the writer thread that shares the interpreter lock with it."""

    def record(self, record: Any) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True


def _without_store(monitor: rt.Monitor, suite: dict[str, Callable[[], object]], calls: int,
                   rounds: int, flush: Callable[[], None]) -> dict[str, list[float]]:
    """The OTel and ragtrail rows of ``suite`` again, with the store swapped for a no-op."""
    store, monitor.store = monitor.store, _NoStore()  # type: ignore[assignment]
    try:
        chosen = {name: fn for name, fn in suite.items()
                  if name in ("otel", "monitored", *_CAPTURE_ROWS)}
        results: dict[str, list[float]] = {f"no store, {name}": [] for name in chosen}
        for _ in range(rounds):
            for name, fn in chosen.items():
                flush()
                results[f"no store, {name}"].append(_time_sync(fn, calls))
        return results
    finally:
        monitor.store = store


def _sustained(suite: dict[str, Callable[[], object]], calls: int, rounds: int,
               flush: Callable[[], None]) -> dict[str, list[float]]:
    """The capture rows again with the flush inside the timing: the writer's (or the
    BatchSpanProcessor's) work on the burst's records counts too. A burst of a few thousand
    calls ends before a GIL-starved writer has done most of it, so the burst rows leave it out.
    """
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name in _CAPTURE_ROWS:
            flush()
            fn = suite[name]
            start = time.perf_counter_ns()
            for _ in range(calls):
                fn()
            flush()
            per_call = (time.perf_counter_ns() - start) / calls / 1000
            results.setdefault(f"sustained, {name}", []).append(per_call)
    return results


def _kill_switch(calls: int, rounds: int, flush: Callable[[], None]) -> dict[str, list[float]]:
    """Decorated while enabled, then switched off: the per-call check; and off at decoration."""
    @rt.monitored
    def switched() -> None:
        return None

    rt.configure(store_url=rt.get_monitor().settings.store_url, enabled=False)

    @rt.monitored
    def off_at_decoration() -> None:
        return None

    results: dict[str, list[float]] = {"kill switch: per-call check": [],
                                       "kill switch: at decoration": []}
    for _ in range(rounds):
        results["kill switch: per-call check"].append(_time_sync(switched, calls))
        results["kill switch: at decoration"].append(_time_sync(off_at_decoration, calls))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=5000)
    options = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as directory:
        store_url = f"sqlite:///{Path(directory) / 'bench.db'}"
        monitor = rt.configure(store_url=store_url, queue_size=100_000,
                               service_name="bench-decorator")
        provider = TracerProvider()  # not global: ragtrail must not join it here
        provider.add_span_processor(BatchSpanProcessor(_NoOpExporter()))
        tracer = provider.get_tracer("bench")

        def flush() -> None:
            rt.get_monitor().store.flush(timeout=60)
            provider.force_flush()

        sync_suite, async_suite = _sync_suite(tracer), _async_suite(tracer)
        samples: dict[str, list[float]] = {name: [] for name in [*sync_suite, *async_suite]}
        for fn in sync_suite.values():  # warm-up: imports, caches, first table creation
            _time_sync(fn, 200)
        for fn in async_suite.values():
            _time_async(fn, 200)
        order = random.Random(7)  # a fixed seed: the same sequence of orders every run
        for _ in range(options.rounds):
            # A new order each round: whatever a variant leaves behind (a writer's backlog,
            # garbage) lands on a different successor each time.
            for name, fn in order.sample(list(sync_suite.items()), len(sync_suite)):
                flush()
                samples[name].append(_time_sync(fn, options.calls))
            for name, fn in order.sample(list(async_suite.items()), len(async_suite)):
                flush()
                samples[name].append(_time_async(fn, options.calls))
        written = monitor.store.health()
        samples.update(_without_store(monitor, sync_suite, options.calls, options.rounds, flush))
        samples.update(_sustained(sync_suite, options.calls, options.rounds, flush))
        samples.update(_kill_switch(options.calls, options.rounds, flush))
        rt.shutdown()
        provider.shutdown()

    _print_table(samples, options)
    print(f"\nstore after the run: {written}")
    return 0


def _print_table(samples: dict[str, list[float]], options: argparse.Namespace) -> None:
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"median of {options.rounds} rounds x {options.calls} calls; "
          f"Python {sys.version.split()[0]}\n")
    print(f"{'case':42} {'us/call':>9} {'min':>9} {'max':>9} {'x OTel':>8}")
    for name, median in medians.items():
        group = name.rsplit(": ", 1)[0] if ": " in name else ""
        if name.startswith("no store, "):
            group = group.removeprefix("no store, ")
            baseline = medians.get(f"no store, {group}: otel" if ": " in name
                                   else "no store, otel")
        else:
            baseline = medians.get(f"{group}: otel" if group else "otel")
        if name.startswith("kill switch"):
            baseline = medians["otel"]
        ratio = f"{median / baseline:.2f}" if baseline else ""
        values = samples[name]
        print(f"{name:42} {median:9.2f} {min(values):9.2f} {max(values):9.2f} {ratio:>8}")
    print("\nratios compare each row with the OTel row of its group (same function shape)")


if __name__ == "__main__":
    sys.exit(main())
