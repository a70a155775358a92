"""What the demo prints at the end, read back from the audit store.

Tables come from the CLI's renderer (``ragtrail.cli._table``), so the report looks like
``ragtrail stats`` and escapes stored text the same way: the probes put hostile strings there.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING

from ragtrail._records import Severity, SpanRecord
from ragtrail.cli._table import COUNT, Column, printable, titled_table
from ragtrail.cli._views import counted
from ragtrail.demo._scenario import ProbeView

if TYPE_CHECKING:
    from ragtrail.store import AuditStore

__all__ = ["STORE_URL_VARIABLE", "render_explore", "render_report"]

_SLOWEST = 10
_section = partial(titled_table, indent="  ")  # the report's tables sit under their titles
_HIGH_EVENTS = 8


def render_report(store: AuditStore, *, since_us: int, question_id: str, question: str,
                  probes: Sequence[ProbeView]) -> Iterator[str]:
    """The audit store's view of this run (records since ``since_us``), as lines."""
    events = store.events(since=since_us, limit=None)
    stats = store.stats(since=since_us)
    occurrences = sum(event.count for event in events)
    yield (f"The audit store holds, for this run: {counted(len(events), 'event row')} "
           f"({counted(occurrences, 'occurrence')}; repeats from one source coalesce into one "
           f"row), spans: {stats.spans}, "
           f"metrics samples: {stats.metrics}.")
    by_severity: Counter[Severity] = Counter()
    by_type: dict[str, Counter[Severity]] = defaultdict(Counter)
    for event in events:
        by_severity[event.severity] += event.count
        by_type[event.event_type][event.severity] += event.count
    yield from _section("Events by severity", [Column("SEVERITY"), COUNT],
                        [[str(level), str(by_severity[level])]
                         for level in sorted(Severity, reverse=True)])
    yield from _section(
        "Events by type", [Column("TYPE", max_width=40), Column("SEVERITIES"), COUNT],
        [[name, " ".join(f"{level}:{n}" for level, n in sorted(counts.items(), reverse=True)),
          str(sum(counts.values()))]
         for name, counts in sorted(by_type.items(), key=lambda i: -sum(i[1].values()))])
    high = [e for e in events if e.severity >= Severity.HIGH][:_HIGH_EVENTS]
    if high:
        yield from _section(
            "Latest high and critical events",
            [Column("SEVERITY"), Column("TYPE", max_width=28), COUNT,
             Column("DESCRIPTION", max_width=72)],
            [[str(e.severity), e.event_type, str(e.count), e.description] for e in high])
    slowest = sorted(stats.span_latency.items(), key=lambda i: (-i[1].p95_ms, i[0]))
    yield from _section(
        "Slowest spans by name (ms)",
        [Column("NAME", max_width=40), COUNT, Column("P50", right=True),
         Column("P95", right=True), Column("P99", right=True)],
        [[name, str(s.count), f"{s.p50_ms:.1f}", f"{s.p95_ms:.1f}", f"{s.p99_ms:.1f}"]
         for name, s in slowest[:_SLOWEST]])
    yield from _trace_section(store, question_id, question)
    yield from _section(
        "Health and readiness, as a probe saw them",
        [Column("WHEN"), Column("/health", right=True), Column("/ready", right=True),
         Column("READINESS"), Column("CHECKS")],
        [[p.phase, str(p.live_status), str(p.ready_status), p.ready,
          " ".join(f"{name}={status}" for name, status in p.checks.items())] for p in probes])


def _trace_section(store: AuditStore, question_id: str, question: str) -> Iterator[str]:
    tagged = store.spans(correlation_id=question_id, limit=1000)
    if not tagged:
        return
    trace_id = min(tagged, key=lambda s: s.start_us).trace_id
    tree = list(span_tree(store.spans(trace_id=trace_id, limit=1000)))
    yield from _section(
        f"The trace of one question (X-Request-ID {question_id}, trace {trace_id})",
        [Column("SPAN"), Column("KIND"), Column("MS", right=True), Column("STATUS")],
        [[f"{'  ' * depth}{span.name}", span.kind, f"{span.duration_ms:.2f}",
          span.status if span.status == "ok" else f"{span.status}: {span.error_type}"]
         for depth, span in tree])
    for _, span in tree:
        captured = span.attributes.get("input.value")
        if isinstance(captured, dict) and "question" in captured:
            yield ""
            yield (f"  Its question as the client sent it, and as {span.name}'s span keeps it "
                   "(capture_args, redacted):")
            yield f"    sent    {printable(question)}"
            yield f"    stored  {printable(str(captured['question']))}"
            return


def span_tree(spans: Iterable[SpanRecord]) -> Iterator[tuple[int, SpanRecord]]:
    """(depth, span) in tree order: each span after its parent, siblings by start time.

    A span whose parent is not among ``spans`` is a root (its parent lives in another service
    or was not stored).
    """
    spans = sorted(spans, key=lambda s: (s.start_us, s.span_id))
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        children[span.parent_span_id if span.parent_span_id in ids else None].append(span)
    stack = [(0, span) for span in reversed(children[None])]
    while stack:
        depth, span = stack.pop()
        yield depth, span
        stack.extend((depth + 1, child) for child in reversed(children[span.span_id]))


STORE_URL_VARIABLE = '"$RAGTRAIL_STORE_URL"'
"""What the explore commands read the store from when its URL holds a password."""


def render_explore(*, db: str, question_id: str, quarantine_dir: str, data_dir: str,
                   base_url: str, api_token: str, serving: bool) -> Iterator[str]:
    """The commands (and, while serving, the URLs) to look further; ``db``,
    ``quarantine_dir`` and ``data_dir`` are shell-quoted."""
    yield ""
    yield "Explore further"
    if db == STORE_URL_VARIABLE:  # a password is never printed: the user sets it
        yield "  (first: export RAGTRAIL_STORE_URL='the URL you gave --db, password included')"
    commands = [
        (f"ragtrail stats --db {db}", "totals, ring usage, latency percentiles"),
        (f"ragtrail events --db {db} --min-severity high", "what would have paged someone"),
        (f"ragtrail events --db {db} --type authn_login_fail", "the login burst, coalesced"),
        (f"ragtrail spans --db {db} --correlation-id {question_id}", "one request's steps"),
        (f"ragtrail spans --db {db} --errors-only", "what failed while Ollama was down"),
        (f"ragtrail tail --db {db}", "follow new events (Ctrl-C stops)"),
        (f"ragtrail export --db {db} --kind spans -o spans.jsonl", "everything, for jq"),
        (f"ragtrail quarantine list --dir {quarantine_dir}", "the rejected upload"),
    ]
    if not serving:
        # Where this run recorded, so the commands above also show what the served run adds.
        commands.append((f"ragtrail demo --serve --db {db} --data-dir {data_dir}",
                         "keep the service running to try it"))
    width = max(len(command) for command, _ in commands)
    for command, why in commands:
        yield f"  {command.ljust(width)}  # {why}"
    if not serving:
        return
    yield ""
    yield f"The service keeps running at {base_url} until Ctrl-C:"
    yield f"  curl -s {base_url}/"
    yield (f"  curl -s {base_url}/ask -H 'Content-Type: application/json' "
           "-d '{\"question\": \"What is a startup probe?\"}'")
    yield f"  curl -sN '{base_url}/ask/stream?q=What+is+a+trace'"
    yield f"  curl -s {base_url}/ready?verbose"
    yield f"  curl -s {base_url}/api/health/detailed -H 'Authorization: Bearer {api_token}'"
    yield f"  curl -s {base_url}/admin/status -H 'Authorization: Bearer {api_token}'"
    # The body from stdin: a file named in the line may not exist where the demo runs (curl
    # then sends an empty body, which is rejected and quarantined).
    yield (f"  printf '# Notes\\nProbes run every 10 s.\\n' | curl -s {base_url}/documents "
           "-H 'Content-Disposition: attachment; filename=\"notes.md\"' --data-binary @-")
