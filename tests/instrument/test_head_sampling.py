"""Head sampling from OTEL_TRACES_SAMPLER: the W3C sampled flag, decided at the root."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from instrument_support import only_span, stored_spans
from opentelemetry.propagate import extract

from ragtrail import Settings
from ragtrail.instrument import monitored, start_span
from ragtrail.instrument._export_convert import SAMPLED_KEY
from ragtrail.instrument._sampling import HeadSampler

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(("sampler", "ratio", "low_bits", "expected"), [
    ("always_on", 1.0, 0, True),
    ("always_off", 1.0, 0, False),
    ("traceidratio", 0.5, (1 << 63) - 1, True),
    ("traceidratio", 0.5, 1 << 63, False),
    ("traceidratio", 0.0, 0, False),
    ("parentbased_traceidratio", 1.0, (1 << 64) - 1, True),
])
def test_root_decision(sampler: str, ratio: float, low_bits: int, expected: bool) -> None:
    """Roots follow the sampler; ratio compares the trace ID's low 64 bits (OTel spec)."""
    trace_id = (0xABCDEF << 64) | low_bits
    assert HeadSampler(sampler, ratio).root(trace_id) is expected


@pytest.mark.parametrize("sampler", ["traceidratio", "parentbased_traceidratio",
                                     "ParentBased_TraceIdRatio"])
@pytest.mark.parametrize("raw", ["2", "half", "nan", "inf", "-0.1"])
def test_an_unusable_ratio_is_warned_about_for_a_ratio_sampler(
        sampler: str, raw: str, caplog: pytest.LogCaptureFixture) -> None:
    """OTEL_TRACES_SAMPLER_ARG is the ratio samplers' argument: an unusable one is named in a
    warning and the ratio stays 1.0."""
    with caplog.at_level(logging.WARNING, logger="ragtrail"):
        settings = Settings.from_env({"OTEL_TRACES_SAMPLER": sampler,
                                      "OTEL_TRACES_SAMPLER_ARG": raw})
    assert settings.traces_sampler_arg == 1.0
    [warning] = [r.getMessage() for r in caplog.records if r.name == "ragtrail"]
    assert f"OTEL_TRACES_SAMPLER_ARG={raw!r}" in warning


@pytest.mark.parametrize("sampler", [None, "always_on", "always_off", "parentbased_always_on",
                                     "parentbased_always_off", "jaeger_remote"])
@pytest.mark.parametrize("raw", ["0.1", "half", "endpoint=http://jaeger:14250,pollingIntervalMs=5000"])
def test_the_sampler_argument_is_not_read_for_a_sampler_that_takes_none(
        sampler: str | None, raw: str, caplog: pytest.LogCaptureFixture) -> None:
    """A cluster-wide OTEL_TRACES_SAMPLER_ARG beside a sampler without an argument (or none
    set, or one ragtrail does not run) is ignored without a warning about it: the
    specification has each sampler define its own argument."""
    env = {"OTEL_TRACES_SAMPLER_ARG": raw}
    if sampler is not None:
        env["OTEL_TRACES_SAMPLER"] = sampler
    with caplog.at_level(logging.WARNING, logger="ragtrail"):
        settings = Settings.from_env(env)
    assert settings.traces_sampler_arg == 1.0
    assert "OTEL_TRACES_SAMPLER_ARG" not in caplog.text


def test_a_ratio_argument_beside_an_environment_ratio_sampler_is_used() -> None:
    settings = Settings.from_env({"OTEL_TRACES_SAMPLER_ARG": "0.25"},
                                 traces_sampler="traceidratio")
    assert settings.traces_sampler_arg == 0.25


@pytest.mark.parametrize(("sampler", "parent_sampled", "expected"), [
    ("parentbased_always_on", False, False),
    ("parentbased_always_off", True, True),
    ("always_on", False, True),
    ("always_off", True, False),
])
def test_child_decision(sampler: str, parent_sampled: bool, expected: bool) -> None:
    """``parentbased_*`` follows the parent; the others decide again from the trace ID."""
    assert HeadSampler(sampler).child(1, parent_sampled) is expected


def test_unknown_sampler_is_refused() -> None:
    """An unknown sampler name raises ValueError listing the known ones."""
    with pytest.raises(ValueError, match="always_on, always_off, traceidratio"):
        HeadSampler("sometimes")


def test_unsampled_root_marks_every_span_of_its_trace(monitor_factory: Any) -> None:
    """Ratio 0: the trace flag is off on the root and its children; all are still stored."""
    monitor = monitor_factory(traces_sampler="parentbased_traceidratio", traces_sampler_arg=0.0)

    @monitored(name="child")
    def child() -> None:
        pass

    @monitored(name="root")
    def root() -> None:
        child()

    root()
    spans = stored_spans(monitor)
    assert sorted(s.name for s in spans) == ["child", "root"]
    assert {s.attributes[SAMPLED_KEY] for s in spans} == {False}


def test_parent_based_respects_a_remote_parents_flag(monitor_factory: Any) -> None:
    """An unsampled remote parent (flags 00) makes the server span unsampled, and back."""
    monitor = monitor_factory()  # default: parentbased_always_on
    for flags, name in (("00", "unsampled"), ("01", "sampled")):
        parent = extract({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-{flags}"})
        span = start_span(name, "server", parent=parent)
        assert span.get_span_context().trace_flags.sampled is (flags == "01")
        span.end()
    assert only_span(monitor, "unsampled").attributes[SAMPLED_KEY] is False
    assert only_span(monitor, "sampled").attributes[SAMPLED_KEY] is True
