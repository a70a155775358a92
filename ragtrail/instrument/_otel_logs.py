"""At most one line a minute per message from the OpenTelemetry parts ragtrail drives.

While a collector is down, the OTLP exporters log every retry of every batch: about 40
warnings a minute, 18 MB of application log a day (a soak run). ragtrail's own logger says
once that export fails, and ``health()`` and the ``export`` check count every failure, so the
exporters' repeats add nothing. The baggage propagator logs each malformed member of an
inbound ``baggage`` header, text a client chooses, on every request that sends it. The filter
sits on those module loggers (process-wide, so an app's own exporters and propagators are held
to the same pace) and says how many lines it held back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["limit_otel_logs"]

_INTERVAL_S = 60.0
# The loggers the OTLP exporters' retry and failure messages come from, across the
# opentelemetry-exporter-otlp releases ragtrail supports, and the baggage propagator's.
_NOISY_LOGGERS = (
    "opentelemetry.baggage.propagation",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
)


class _OncePerInterval(logging.Filter):
    """Passes a message (by logger and format string) once per interval, counting the rest."""

    def __init__(self, interval_s: float = _INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # finite: format strings
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = (record.name, str(record.msg)), self._clock()
        with self._lock:
            passed_at, held = self._seen.get(key, (-self._interval_s, 0))
            if now - passed_at < self._interval_s:
                self._seen[key] = (passed_at, held + 1)
                return False
            self._seen[key] = (now, 0)
        if held:
            record.msg = (f"{record.msg} [ragtrail held back {held} more like this in the last "
                          f"{self._interval_s:g} s; health() counts every failure]")
        return True


_FILTER = _OncePerInterval()


def limit_otel_logs() -> None:
    """Install the filter on those loggers (idempotent)."""
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
