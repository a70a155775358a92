"""``capture(ids="sequential", times="fixed")``: records that read the same on every run, for
an application's snapshot tests, while the code under test runs exactly as in production."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import ragtrail
from ragtrail import SecurityEvent, SpanRecord, monitored
from ragtrail.middleware import ASGIMiddleware
from ragtrail.testing import Trail, capture


@monitored(kind="retriever")
def retrieve(query: str) -> list[str]:
    # A source per query: repeats of one (type, source, severity) would be coalesced.
    ragtrail.security_event("prompt_injection", "high", f"retriever:{query}",
                            f"suspicious: {query}")
    return [f"doc about {query}"]


@monitored(kind="llm")
def stream(prompt: str) -> Iterator[str]:
    yield from prompt.split()


@monitored(kind="chain")
def answer(query: str) -> str:
    documents = retrieve(query)
    with contextlib.suppress(ValueError):
        failing(query)
    return " ".join(stream(documents[0]))


@monitored
def failing(query: str) -> None:
    raise ValueError(f"no answer for {query}")


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(answer(request.query_params["q"]))


def _run_app() -> None:
    """Two requests through the real ASGI middleware, plus a call outside any request."""
    app = ASGIMiddleware(Starlette(routes=[Route("/search", _hello)]))

    async def get() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for query in ("refunds", "returns"):
                (await client.get(f"/search?q={query}")).raise_for_status()

    asyncio.run(get())
    answer("offline")


def _recorded(**options: Any) -> tuple[list[SpanRecord], list[SecurityEvent]]:
    with capture(**options) as trail:
        _run_app()
    # Only the app's events (the middleware's resource sampler may report a busy machine),
    # without the row numbers such an event takes.
    return trail.spans(), [dataclasses.replace(event, id=None) for event in
                           trail.events(event_type="prompt_injection")]


def test_two_runs_read_back_identical_records() -> None:
    """The snapshot property: every span and event, field by field, the same on a rerun."""
    first = _recorded(ids="sequential", times="fixed")
    second = _recorded(ids="sequential", times="fixed")
    assert first == second
    assert len(first[0]) == 2 * 5 + 4  # two requests (a server span, four steps), one answer


def test_ids_are_numbered_in_the_order_they_were_stored() -> None:
    """A span is stored when it ends, so a child is numbered before its parent."""
    with capture(ids="sequential") as trail:
        answer("offline")
    by_name = {span.name: span for span in trail.spans()}
    trace = f"{1:032x}"
    assert (by_name["retrieve"].trace_id, by_name["retrieve"].span_id,
            by_name["retrieve"].parent_span_id) == (trace, f"{2:016x}", f"{3:016x}")
    assert (by_name["answer"].span_id, by_name["answer"].parent_span_id) == (f"{3:016x}", None)
    assert {span.trace_id for span in trail.spans()} == {trace}
    (event,) = trail.events()
    assert (event.trace_id, event.span_id) == (trace, by_name["retrieve"].span_id)


def test_stable_ids_are_valid_w3c_ids() -> None:
    """Lowercase hex of the W3C widths, never all zero (an invalid ID to every backend)."""
    spans, events = _recorded(ids="sequential")
    traces = [s.trace_id for s in spans] + [e.trace_id for e in events if e.trace_id]
    span_ids = [s.span_id for s in spans] + [s.parent_span_id for s in spans if s.parent_span_id]
    assert all(re.fullmatch("[0-9a-f]{32}", t) and int(t, 16) for t in traces)
    assert all(re.fullmatch("[0-9a-f]{16}", s) and int(s, 16) for s in span_ids)


def test_a_request_s_correlation_id_still_reads_as_its_trace_id() -> None:
    """Without an inbound ID the middleware correlates a request by its trace's ID; one
    numbering for every kind of ID keeps them equal."""
    spans, events = _recorded(ids="sequential")
    servers = [span for span in spans if span.kind == "server"]
    assert [s.correlation_id for s in servers] == [s.trace_id for s in servers]
    assert len({s.trace_id for s in servers}) == 2
    assert {e.correlation_id for e in events} == {servers[0].trace_id, servers[1].trace_id, None}


def test_filters_take_the_stable_ids() -> None:
    """An ID read off one record finds the others of its trace or request."""
    with capture(ids="sequential") as trail:
        _run_app()
    second_request = [span for span in trail.spans() if span.kind == "server"][1]
    trace = trail.spans(trace_id=second_request.trace_id)
    assert [span.name for span in trace] == [
        "retrieve", "failing", "stream", "answer", "GET /search"]
    events = trail.events(correlation_id=second_request.correlation_id)
    assert [event.description for event in events] == ["suspicious: returns"]
    assert trail.spans(trace_id=f"{999:032x}") == []


def test_fixed_times_pin_every_time_and_duration() -> None:
    spans, events = _recorded(times="fixed")
    midnight = datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert {(span.start_time, span.duration_us) for span in spans} == {(midnight, 0)}
    assert {event.time_us for span in spans for event in span.events} == {
        int(midnight.timestamp() * 1_000_000)}
    assert {event.timestamp for event in events} == {midnight}
    assert {span.attributes["ragtrail.time_to_first_item_ms"]
            for span in spans if span.name == "stream"} == {0.0}


def test_the_code_in_the_block_draws_real_ids_and_the_store_keeps_them() -> None:
    """Only what the trail reads back is stable: spans in flight carry random IDs (what
    propagates to other services) and the store holds what was recorded."""
    with capture(ids="sequential", times="fixed") as trail, \
            ragtrail.start_span("live", "function") as span:
        live_trace, live_span = span.trace_id_hex, span.span_id_hex
    assert trail.span("live").trace_id == f"{1:032x}"
    stored = trail.monitor.store.spans()[0]
    assert (stored.trace_id, stored.span_id) == (live_trace, live_span)
    assert int(live_trace, 16) > 1 << 80  # the time-ordered random ID, not a number


def test_stable_reading_stays_with_its_own_capture(tmp_path: Path) -> None:
    """A capture opened inside a stable one, and the app's monitor afterwards, record and
    read back real IDs and times."""
    app_monitor = ragtrail.configure(store_url=f"sqlite:///{tmp_path / 'app.db'}")
    with capture(ids="sequential", times="fixed") as outer:
        with capture() as inner:
            answer("inner")
        answer("outer")
    answer("app")
    assert app_monitor.flush(10)
    for plain in (inner.spans(), app_monitor.store.spans(name="answer")):
        assert [int(span.trace_id, 16) > 1 << 80 for span in plain] == [True] * len(plain)
        assert all(span.start_us > 1_700_000_000_000_000 for span in plain)
    assert [span.trace_id for span in outer.spans(name="answer")] == [f"{1:032x}"]


@pytest.mark.parametrize(("options", "message"), [
    ({"ids": "uuid"}, "ids must be 'random' or 'sequential'; got 'uuid'"),
    ({"times": "frozen"}, "times must be 'real' or 'fixed'; got 'frozen'"),
])
def test_an_unknown_mode_is_refused_before_anything_starts(
        options: dict[str, Any], message: str, tmp_path: Path) -> None:
    app_monitor = ragtrail.configure(store_url=f"sqlite:///{tmp_path / 'app.db'}")
    with pytest.raises(ValueError, match=re.escape(message)), capture(**options):
        pytest.fail("the block ran")
    assert ragtrail.get_monitor() is app_monitor


def test_a_fixture_of_your_own_gives_stable_records() -> None:
    """The documented way to get a ``captrail`` with stable records."""
    def stable_trail() -> Iterator[Trail]:
        with capture(ids="sequential", times="fixed") as trail:
            yield trail

    fixture = stable_trail()
    trail = next(fixture)
    retrieve("fixture")
    fixture.close()
    assert (trail.span("retrieve").span_id, trail.span("retrieve").start_us) == (
        f"{2:016x}", 946_684_800_000_000)
