"""New trace IDs: time-ordered in their top 48 bits (for the store's indexes), random in the
low 64 (for ratio sampling and W3C Trace Context), and what ``@monitored`` roots get."""

from __future__ import annotations

import os
import random
import time

import pytest
from instrument_support import drawn_in_forked_child, only_span
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

from ragtrail import Settings
from ragtrail.instrument import Monitor, monitored
from ragtrail.instrument._correlation import unpredictable_bits
from ragtrail.instrument._redaction import Redactor
from ragtrail.instrument._sampling import HeadSampler
from ragtrail.instrument._trace_ids import new_trace_id
from ragtrail.middleware._core import is_valid_id

_LOW_64 = (1 << 64) - 1


def test_the_top_48_bits_are_the_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    trace_id = new_trace_id()
    after = time.time_ns() // 1_000_000
    assert before <= trace_id >> 80 <= after
    assert 0 < trace_id < 1 << 128


def test_ids_made_later_sort_later() -> None:
    """What keeps index inserts at one end: IDs a millisecond apart are in creation order."""
    made = []
    for _ in range(5):
        made.append(new_trace_id())
        deadline = time.monotonic() + 0.002
        while time.monotonic() < deadline:  # the clock must move past a millisecond
            pass
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ratio_sampling_sees_random_low_bits() -> None:
    """A quarter of new traces are sampled at ratio 0.25, ragtrail's and the OTel SDK's
    TraceIdRatioBased agreeing on each (both read the low 64 bits)."""
    ours, sdk = HeadSampler("traceidratio", 0.25), TraceIdRatioBased(0.25)
    ids = [new_trace_id() for _ in range(20_000)]
    decisions = [ours.root(trace_id) for trace_id in ids]
    assert 0.23 < sum(decisions) / len(ids) < 0.27  # 6 standard deviations each way
    for trace_id, sampled in zip(ids[:500], decisions, strict=False):
        decision = sdk.should_sample(None, trace_id, "x").decision
        assert sampled == (decision == Decision.RECORD_AND_SAMPLE)
    assert len({trace_id & _LOW_64 for trace_id in ids}) == len(ids)


def test_a_monitored_root_span_gets_a_time_ordered_trace_id(monitor: Monitor) -> None:
    @monitored(name="retrieve")
    def retrieve() -> None:
        return None

    before = time.time_ns() // 1_000_000
    retrieve()
    span = only_span(monitor, "retrieve")
    assert before <= int(span.trace_id, 16) >> 80 <= time.time_ns() // 1_000_000


def test_a_forwarded_id_is_accepted_downstream() -> None:
    """A service behind this one gets the ID in X-Request-ID: it must pass the inbound check
    (format, and nothing the redactor would take for a secret) so both log the same ID."""
    redactor = Redactor(Settings())
    for _ in range(2_000):
        forwarded = new_trace_id(unpredictable_bits()).to_bytes(16, "big").hex()
        assert is_valid_id(forwarded)
        assert redactor.redact_text(forwarded) == forwarded


def test_the_apps_seeded_random_sequence_is_untouched(monitor: Monitor) -> None:
    """Spans draw their IDs from ragtrail's own generator: an app that seeds ``random`` for a
    reproducible run gets the same numbers with ragtrail installed."""
    @monitored(name="step")
    def step() -> None:
        pass

    random.seed(1234)
    expected = [random.random() for _ in range(3)]
    random.seed(1234)
    drawn = [random.random()]
    for _ in range(50):
        step()
    new_trace_id()
    drawn += [random.random() for _ in range(2)]
    assert drawn == expected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_workers_do_not_repeat_the_parents_span_ids() -> None:
    """ragtrail's generator is reseeded in a forked child (gunicorn ``--preload``), as the
    ``random`` module's own is: parent and child draw different IDs."""
    child = drawn_in_forked_child(lambda: str(new_trace_id() & _LOW_64))
    parent = {new_trace_id() & _LOW_64 for _ in range(5)}
    assert len(child) == 5
    assert not {int(text) for text in child} & parent
