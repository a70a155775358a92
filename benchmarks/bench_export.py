"""What OTLP export costs the caller, and how fast the export thread drains, in one run.

    python benchmarks/bench_export.py [--rounds 7] [--spans 20000]

Caller side, per record (median over rounds of the mean over ``--spans`` records):
``deque.append`` (the floor), ``ExportPipeline.submit`` with a live pipeline, and the SDK's
``BatchSpanProcessor.on_end`` for the same span already built (what an SDK span pays at end).
Export side: spans per second from the first ``submit`` to ``force_flush`` returning, into a
real rotel collector on 127.0.0.1, over OTLP/HTTP and OTLP/gRPC.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from ragtrail import Settings, SpanRecord
from ragtrail.instrument._export import ExportPipeline
from ragtrail.instrument._export_convert import SpanConverter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "instrument"))
from otlp_receivers import RotelReceiver


class _NoOpExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _records(count: int) -> list[SpanRecord]:
    trace_id = secrets.token_hex(16)
    now_us = time.time_ns() // 1000
    return [SpanRecord(trace_id, secrets.token_hex(8), "retrieve", "retriever", now_us, 1200,
                       parent_span_id="00f067aa0ba902b7", correlation_id="c0ffee",
                       attributes={"openinference.span.kind": "RETRIEVER",
                                   "retrieval.documents.count": 5, "ragtrail.sampled": True})
            for _ in range(count)]


def _per_item_ns(action: Callable[[Any], object], items: list[Any]) -> float:
    started = time.perf_counter_ns()
    for item in items:
        action(item)
    return (time.perf_counter_ns() - started) / len(items)


def caller_costs(rounds: int, spans: int, endpoint: str) -> dict[str, float]:
    records = _records(spans)
    converted = [SpanConverter(Resource({}), "bench").convert(r) for r in records]
    results: dict[str, list[float]] = {"deque.append": [], "ExportPipeline.submit": [],
                                       "BatchSpanProcessor.on_end": []}
    pipeline = ExportPipeline.create(Settings(otlp_endpoint=endpoint, export_queue_size=spans + 1))
    processor = BatchSpanProcessor(_NoOpExporter(), max_queue_size=spans + 1)
    if pipeline is None:
        raise SystemExit("no pipeline")
    try:
        for _ in range(rounds):
            floor: deque[SpanRecord] = deque()
            results["deque.append"].append(_per_item_ns(floor.append, records))
            results["ExportPipeline.submit"].append(_per_item_ns(pipeline.submit, records))
            pipeline.force_flush(60)
            results["BatchSpanProcessor.on_end"].append(_per_item_ns(processor.on_end, converted))
            processor.force_flush()
    finally:
        pipeline.shutdown(10)
        processor.shutdown()
    return {name: statistics.median(values) for name, values in results.items()}


def throughput(rounds: int, spans: int, settings: dict[str, Any]) -> float:
    pipeline = ExportPipeline.create(Settings(export_queue_size=spans + 1, **settings))
    if pipeline is None:
        raise SystemExit("no pipeline")
    rates = []
    try:
        for _ in range(rounds):
            records = _records(spans)
            started = time.perf_counter()
            for record in records:
                pipeline.submit(record)
            if not pipeline.force_flush(120):
                raise SystemExit("flush timed out")
            rates.append(spans / (time.perf_counter() - started))
        health = pipeline.health()
        if health["dropped"] or health["failed"]:
            raise SystemExit(f"lost spans: {health}")
    finally:
        pipeline.shutdown(10)
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--spans", type=int, default=20_000)
    args = parser.parse_args()
    with RotelReceiver() as rotel:
        costs = caller_costs(args.rounds, args.spans, rotel.http_endpoint)
        floor = costs["deque.append"]
        print(f"caller cost per span ({args.spans} spans, median of {args.rounds} rounds)")
        print(f"{'':28}{'ns':>10}{'x deque.append':>16}")
        for name, value in costs.items():
            print(f"{name:28}{value:10.0f}{value / floor:16.1f}")
        print()
        print(f"export throughput into rotel ({args.spans} spans per round)")
        for label, settings in (
                ("OTLP/HTTP protobuf", {"otlp_endpoint": rotel.http_endpoint}),
                ("OTLP/gRPC", {"otlp_endpoint": rotel.grpc_endpoint, "otlp_protocol": "grpc"})):
            rate = throughput(args.rounds, args.spans, settings)
            print(f"{label:28}{rate:10.0f} spans/s")


if __name__ == "__main__":
    main()
