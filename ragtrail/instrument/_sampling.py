"""Head sampling, decided once when a span starts, as the standard OTEL_TRACES_SAMPLER says.

The decision only sets the W3C ``sampled`` trace flag (so downstream services and other OTel
instrumentations follow it); every span still goes to the audit store, and the export pipeline
keeps unsampled traces that turn out to carry an error or a high/critical event.
"""

from __future__ import annotations

__all__ = ["HeadSampler"]

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
