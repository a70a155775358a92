"""Trace headers out through the app's propagators, without a bad OTEL_PROPAGATORS breaking
``import ragtrail``.

``opentelemetry.propagate`` resolves OTEL_PROPAGATORS when it is first imported and raises
ValueError on a name it cannot load (``b3`` without its package, a capitalised ``Baggage``), so
importing it eagerly made ragtrail itself fail to import. It is imported at first use; when it
cannot be, W3C trace context and baggage, the specification's default, are sent instead.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import MutableMapping
from types import ModuleType

from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["inject"]

log = logging.getLogger("ragtrail")
_W3C = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


def inject(carrier: MutableMapping[str, str], context: Context) -> None:
    """Write ``context``'s trace headers into ``carrier`` with the global propagator."""
    propagate = _propagate_module()
    if propagate is None:
        _W3C.inject(carrier, context=context)
    else:
        propagate.inject(carrier, context=context)  # the global one, as the app last set it


@functools.cache
def _propagate_module() -> ModuleType | None:
    try:
        from opentelemetry import propagate
    except ValueError as exc:  # OTEL_PROPAGATORS names one that cannot be loaded
        log.warning("ragtrail: OTEL_PROPAGATORS is not usable (%s); sending W3C trace context "
                    "and baggage headers instead", exc)
        return None
    return propagate
