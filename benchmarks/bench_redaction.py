"""Cost of the redactor on what ``@monitored(capture_args=True)`` captures, in one run.

    python benchmarks/bench_redaction.py [--rounds 9] [--calls 2000]

Baseline: ``json.dumps`` of the same value, the least any capture must pay to serialise it.
ragtrail: ``Redactor.redact`` (redaction on, default 2 KB budget), which walks, bounds and
redacts the value and leaves it JSON-able (the caller still serialises it). The shapes match
``bench_decorator.py``: a 140-character query and five retrieved documents of about 200
characters. Each row is the median over rounds of the mean per-call time of ``--calls`` calls.
The redactor remembers strings it found clean, so repeated rows mostly measure that cache;
"new text" rows give every call text never seen before (the cost of a first sighting). The
last rows are hostile inputs, where the point is the absolute time, not the ratio.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from ragtrail import Settings
from ragtrail.instrument._redaction import Redactor

QUERY = ("What is the refund policy for orders shipped to the EU, and how long does it take to "
         "get my money back after I return the item?")  # 140 characters
DOCUMENTS = [
    {"id": f"doc-{i}", "score": 0.9 - i / 10,
     "content": "Refunds are issued within 14 days of receiving the returned item. " * 3}
    for i in range(5)
]
ERROR = ("ValueError: upstream retriever answered 502 Bad Gateway for collection 'support-eu' "
         "after 3 attempts (timeout 2.5 s); see request 4bf92f3577b34da6a3ce929d0e0e4736")
WITH_SECRETS = ("login failed for ana@example.org with password=hunter2 using Bearer "
                "c4n4ryB34r3rT0k3nXYZ123 and card 4111 1111 1111 1111")
MEGABYTE = "x-1_2:3=4@5 " * 83_000


def _cases(redactor: Redactor) -> list[tuple[str, Any, Callable[[Any], object]]]:
    """(name, value, ragtrail call); the baseline is json.dumps(value) for every row."""
    redact, redact_text = redactor.redact, redactor.redact_text
    return [
        ("query (140 chars)", QUERY, redact),
        ("arguments {query, top_k}", {"query": QUERY, "top_k": 5}, redact),
        ("5 documents (result)", DOCUMENTS, redact),
        ("query + 5 documents", {"query": QUERY, "top_k": 5, "result": DOCUMENTS}, redact),
        ("exception message", ERROR, redact_text),
        ("text with 4 secrets", WITH_SECRETS, redact_text),
        ("1 MB string, redact()", MEGABYTE, redact),
        ("1 MB string, redact_text()", MEGABYTE, redact_text),
        ("1 MB, redact_text(limit=None)", MEGABYTE, lambda v: redact_text(v, limit=None)),
    ]


def _fresh(n: int) -> dict[str, Any]:
    """The "query + 5 documents" value with text that no earlier call had."""
    return {"query": f"{n:08d} {QUERY[9:]}", "top_k": 5,
            "result": [{**doc, "content": f"{n:08d} {doc['content']}"} for doc in DOCUMENTS]}


def _new_text_row(redactor: Redactor, rounds: int, calls: int) -> tuple[float, float]:
    """(json.dumps us, redact us) per call over values each seen once, interleaved."""
    baseline, ours = [], []
    for round_number in range(rounds):
        values = [_fresh(round_number * calls + i) for i in range(calls)]
        started = time.perf_counter()
        for value in values:
            json.dumps(value)
        baseline.append((time.perf_counter() - started) / calls)
        started = time.perf_counter()
        for value in values:
            redactor.redact(value)
        ours.append((time.perf_counter() - started) / calls)
    return statistics.median(baseline) * 1e6, statistics.median(ours) * 1e6


def _per_call(func: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=2000)
    options = parser.parse_args()
    redactor = Redactor(Settings())
    print(f"{'case':<30} {'json.dumps us':>14} {'redact us':>11} {'ratio':>7}")
    for name, value, call in _cases(redactor):
        calls = options.calls if len(str(value)) < 100_000 else max(1, options.calls // 200)
        baseline, ours = [], []
        for _ in range(options.rounds):  # interleaved, so drift hits both alike
            baseline.append(_per_call(functools.partial(json.dumps, value), calls))
            ours.append(_per_call(functools.partial(call, value), calls))
        base_us, ours_us = statistics.median(baseline) * 1e6, statistics.median(ours) * 1e6
        print(f"{name:<30} {base_us:>14.2f} {ours_us:>11.2f} {ours_us / base_us:>6.1f}x")
        if name == "query + 5 documents":
            base_us, ours_us = _new_text_row(redactor, options.rounds, options.calls)
            print(f"{name + ', new text':<30} {base_us:>14.2f} {ours_us:>11.2f} "
                  f"{ours_us / base_us:>6.1f}x")


if __name__ == "__main__":
    main()
