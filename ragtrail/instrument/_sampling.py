"""Head sampling, decided once when a span starts, as the standard OTEL_TRACES_SAMPLER says.

The decision only sets the W3C ``sampled`` trace flag (so downstream services and other OTel
instrumentations follow it); every span still goes to the audit store, and the export pipeline
keeps unsampled traces that turn out to carry an error or a high/critical event.
"""

from __future__ import annotations

import logging

from opentelemetry.sdk.trace import sampling

from ragtrail._settings import Settings
from ragtrail.instrument._export_sinks import app_tracer_provider

__all__ = ["HeadSampler", "head_sampler"]

log = logging.getLogger("ragtrail")

_LOW_64_BITS = (1 << 64) - 1


class HeadSampler:
    """``always_on``, ``always_off``, ``traceidratio`` and their ``parentbased_`` forms.

    ``traceidratio`` compares the trace ID's low 64 bits with ``ratio * 2**64``, the rule of
    the OpenTelemetry specification's TraceIdRatioBased sampler, so every service sampling at
    the same ratio makes the same decision for a trace.
    """

    __slots__ = ("_bound", "parent_based")

    def __init__(self, sampler: str, ratio: float = 1.0) -> None:
        self.parent_based = sampler.startswith("parentbased_")
        root = sampler.removeprefix("parentbased_")
        if root == "always_on":
            self._bound = 1 << 64
        elif root == "always_off":
            self._bound = 0
        elif root == "traceidratio":
            self._bound = round(ratio * (1 << 64))
        else:
            raise ValueError(
                f"unknown sampler {sampler!r}; expected always_on, always_off, traceidratio "
                "or their parentbased_ forms")

    def root(self, trace_id: int) -> bool:
        """Whether a trace that starts here is sampled."""
        return (trace_id & _LOW_64_BITS) < self._bound

    def child(self, trace_id: int, parent_sampled: bool) -> bool:
        """Whether a span under a parent with ``parent_sampled`` is sampled."""
        if self.parent_based:
            return parent_sampled
        return (trace_id & _LOW_64_BITS) < self._bound


def head_sampler(settings: Settings) -> HeadSampler:
    """``OTEL_TRACES_SAMPLER``'s sampler; in an app with its own SDK TracerProvider, that
    provider's sampler when it is a standard one.

    Joined to the app's provider, ragtrail decides for the traces it starts (every request,
    with the middleware), and the app's spans under them follow that decision: a provider
    sampling 10% in code would otherwise export everything.
    """
    provider = app_tracer_provider()
    if provider is not None:
        standard = _standard_form(provider.sampler)
        if standard is not None:
            return HeadSampler(*standard)
        log.warning("ragtrail cannot follow the app's TracerProvider sampler %s; the traces it "
                    "starts are sampled by OTEL_TRACES_SAMPLER (%s)",
                    type(provider.sampler).__name__, settings.traces_sampler)
    return HeadSampler(settings.traces_sampler, settings.traces_sampler_arg)


def _standard_form(sampler: object) -> tuple[str, float] | None:
    """(OTEL_TRACES_SAMPLER name, ratio) of an SDK sampler, or None for any other."""
    if isinstance(sampler, sampling.ParentBased):
        delegates = (getattr(sampler, f"_{which}", None) for which in (
            "remote_parent_sampled", "remote_parent_not_sampled", "local_parent_sampled",
            "local_parent_not_sampled"))
        root = _standard_form(getattr(sampler, "_root", None))
        if root is None or root[0].startswith("parentbased_") or list(delegates) != [
                sampling.ALWAYS_ON, sampling.ALWAYS_OFF, sampling.ALWAYS_ON, sampling.ALWAYS_OFF]:
            return None
        return f"parentbased_{root[0]}", root[1]
    if isinstance(sampler, sampling.TraceIdRatioBased):
        return "traceidratio", sampler.rate
    if isinstance(sampler, sampling.StaticSampler):
        decision = getattr(sampler, "_decision", None)
        if decision is sampling.Decision.RECORD_AND_SAMPLE:
            return "always_on", 1.0
        if decision is sampling.Decision.DROP:
            return "always_off", 1.0
    return None
