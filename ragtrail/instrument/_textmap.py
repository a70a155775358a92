"""Trace headers in and out through the app's propagators (OTEL_PROPAGATORS: W3C trace context
and baggage by default, B3, Jaeger...), without a bad OTEL_PROPAGATORS breaking
``import ragtrail``.

``opentelemetry.propagate`` resolves OTEL_PROPAGATORS when it is first imported and raises
ValueError on a name it cannot load (``b3`` without its package, a capitalised ``Baggage``), so
importing it eagerly made ragtrail itself fail to import. It is imported at first use; when it
cannot be, W3C trace context and baggage, the specification's default, are sent instead.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, MutableMapping
from types import ModuleType

from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["extract", "fields", "global_textmap", "inject"]

log = logging.getLogger("ragtrail")
_W3C = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


def inject(carrier: MutableMapping[str, str], context: Context) -> None:
    """Write ``context``'s trace headers into ``carrier`` with the global propagator."""
    propagate = _propagate_module()
    if propagate is None:
        _W3C.inject(carrier, context=context)
    else:
        propagate.inject(carrier, context=context)  # the global one, as the app last set it


def extract(carrier: Mapping[str, str]) -> Context:
    """The context (remote span, baggage) ``carrier``'s headers hold, by the global propagator."""
    propagate = _propagate_module()
    return _W3C.extract(carrier) if propagate is None else propagate.extract(carrier)


def global_textmap() -> Callable[[], TextMapPropagator]:
    """A function returning the global propagator as the app last set it (W3C when
    OTEL_PROPAGATORS is unusable), at the cost of one plain call.

    Apps may set another at any time (``set_global_textmap``, auto-instrumentation that runs
    after the middleware was added): callers that precompute from it compare it by identity.
    """
    propagate = _propagate_module()
    return _w3c if propagate is None else propagate.get_global_textmap


def _w3c() -> TextMapPropagator:
    return _W3C


def fields(textmap: TextMapPropagator) -> frozenset[str]:
    """The header names ``textmap`` reads, lowercase (none for "none", or for a propagator
    that fails to say: the middleware asks on a request when the app set a new one)."""
    try:
        return frozenset(name.lower() for name in textmap.fields)
    except Exception:
        log.warning("ragtrail: the propagator %s did not say which headers it reads; no inbound "
                    "trace headers are read", type(textmap).__name__, exc_info=True)
        return frozenset()


@functools.cache
def _propagate_module() -> ModuleType | None:
    try:
        from opentelemetry import propagate
    except ValueError as exc:  # OTEL_PROPAGATORS names one that cannot be loaded
        log.warning("ragtrail: OTEL_PROPAGATORS is not usable (%s); sending W3C trace context "
                    "and baggage headers instead", exc)
        return None
    return propagate
