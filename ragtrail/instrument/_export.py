"""The export pipeline: finished SpanRecords to OpenTelemetry, off the caller's thread.

The caller's thread only appends to a bounded deque (``submit``, ``count_event``); one daemon
thread drains it, decides sampling, records the OTel metrics, converts records to SDK
``ReadableSpan``s and hands batches to ragtrail's own OTLP exporter or to the app's
TracerProvider. A hanging or failing collector therefore costs the app nothing but the records
that no longer fit in the queue, and those are counted in ``health()``.

ragtrail never sets the global TracerProvider: if the app set an SDK one before
``ExportPipeline.create()``, ragtrail joins it; otherwise ragtrail exports on its own, and the
app stays free to install a provider later.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from ragtrail._records import SecurityEvent, SpanRecord
from ragtrail._settings import Settings
from ragtrail._threads import start_quietly
from ragtrail.instrument._attributes import SAMPLED
from ragtrail.instrument._export_convert import SpanConverter
from ragtrail.instrument._export_otlp import safe_endpoint
from ragtrail.instrument._export_sinks import Sink, choose_sink
from ragtrail.instrument._otel_metrics import OtelMetrics
from ragtrail.instrument._sampling import HeadSampler, head_sampler
from ragtrail.instrument._sampling_buffer import TraceRescue

__all__ = ["ExportPipeline"]

_logger = logging.getLogger("ragtrail.export")


class _FlushMarker(threading.Event):
    """Queued by ``force_flush()``; set by the export thread once everything before it was
    tried, with the failure count as it stood then (later spans' failures are not its)."""

    failed_by_then = 0


_Item = SpanRecord | SecurityEvent | _FlushMarker
_DEGRADED_FILL = 0.8  # queue fill ratio from which health() says "degraded"
_RECENT_DROP_SECONDS = 60.0
_UNBOUNDED_WAIT = 30.0  # what a timeout of None means: export requests have their own limit


def _ragtrail_version() -> str:
    try:
        return version("ragtrail")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


class ExportPipeline:
    """Batches span records to OpenTelemetry on a background thread; see the module docstring.

    Build it with ``ExportPipeline.create(settings)``.
    """

    def __init__(
        self,
        make_sink: Callable[[], Sink],
        *,
        sampler: HeadSampler,
        metrics: OtelMetrics | None = None,
        queue_size: int = 2048,
        batch_size: int = 512,
        schedule_delay: float = 5.0,
        rescue_max_spans: int = 10_000,
        rescue_max_age: float = 60.0,
        redact: Callable[[str], str] | None = None,
        protocol: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or schedule_delay <= 0:
            raise ValueError("queue_size and batch_size must be >= 1 and schedule_delay > 0")
        self._make_sink = make_sink
        self._sampler = sampler
        self._metrics = metrics
        self._rescue_bounds = (rescue_max_spans, rescue_max_age)
        self._redact = redact
        self._protocol = protocol
        self._endpoint = safe_endpoint(endpoint)
        self._capacity = self._queue_size = queue_size
        self._batch_size = batch_size
        self._delay = schedule_delay
        self._stopping = self._closed = False
        self._start()
        if hasattr(os, "register_at_fork"):
            # A worker forked from a configured parent (gunicorn --preload, uWSGI) inherits no
            # export thread, and the parent's HTTP connections must not be shared: start anew.
            this = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _restart(this))

    def _start(self) -> None:
        self._sink = self._make_sink()
        self._converter = SpanConverter(self._sink.resource, _ragtrail_version(),
                                        self._sink.span_limits)
        max_spans, max_age = self._rescue_bounds
        self._rescue = TraceRescue(max_spans=max_spans, max_age=max_age)
        self._queue: deque[_Item] = deque()
        self._wake = threading.Event()
        self._exported = self._failed = self._dropped = 0
        self._unfinished = 0  # spans still queued when shutdown's time ran out
        self._last_drop = float("-inf")
        self._last_ok = True
        self._last_error: str | None = None
        self._last_error_time_us: int | None = None
        self._thread = threading.Thread(target=self._run, name="ragtrail-export", daemon=True)
        start_quietly(self._thread)

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        redact: Callable[[str], str] | None = None,
        export_timeout: float | None = None,
        schedule_delay: float | None = None,
        metrics_interval: float | None = None,
        rescue_max_spans: int = 10_000,
        rescue_max_age: float = 60.0,
        sampler: HeadSampler | None = None,
    ) -> ExportPipeline | None:
        """The pipeline for ``settings``, or None when there is nowhere to export.

        None when ``sdk_disabled`` is set, or when no endpoint for traces is configured and
        the app did not install an SDK TracerProvider. ``redact`` cleans error messages shown by
        ``health()`` (without it only the error's type is shown); ``sampler`` is the monitor's,
        so both decide alike (default: from the settings). ``export_timeout`` (seconds; default:
        the shorter of each signal's OTLP timeout and ``export_timeout_ms`` for spans,
        ``metric_export_timeout_ms`` for metrics) bounds every OTLP request, retries included.
        ``schedule_delay`` and ``metrics_interval`` (seconds) override ``export_schedule_delay_ms``
        and ``metric_export_interval_ms``.
        """
        if settings.sdk_disabled:
            return None
        choice = choose_sink(settings, export_timeout)
        if choice is None:
            return None
        metrics = OtelMetrics.create(
            settings, choice.resource, _ragtrail_version(),
            interval=(settings.metric_export_interval_ms / 1000 if metrics_interval is None
                      else metrics_interval),
            timeout=export_timeout)
        return cls(
            choice.make_sink,
            sampler=sampler or head_sampler(settings),
            metrics=metrics,
            queue_size=settings.export_queue_size,
            batch_size=settings.export_batch_size,
            schedule_delay=(settings.export_schedule_delay_ms / 1000 if schedule_delay is None
                            else schedule_delay),
            rescue_max_spans=rescue_max_spans,
            rescue_max_age=rescue_max_age,
            redact=redact,
            protocol=choice.protocol,
            endpoint=choice.endpoint,
        )

    # -- caller's thread: O(1), never blocks, never raises ------------------------------------

    def submit(self, record: SpanRecord) -> None:
        """Queue a finished span for export; drop and count it when the queue is full."""
        queue = self._queue
        if len(queue) >= self._capacity:
            self._drop()
            return
        queue.append(record)
        if len(queue) == self._batch_size:
            self._wake.set()

    def count_event(self, event: SecurityEvent) -> None:
        """Queue a security event for the metrics counter and for keeping its trace."""
        queue = self._queue
        if len(queue) >= self._capacity:
            self._drop()
            return
        queue.append(event)

    def _drop(self) -> None:
        self._dropped += 1
        self._last_drop = time.monotonic()

    # -- control -------------------------------------------------------------------------------

    def force_flush(self, timeout: float | None = 10.0) -> bool:
        """Export everything queued before this call; False if that took over ``timeout`` or
        any of it failed to export (callers and ``shutdown()`` can tell the data is lost)."""
        if self._closed:
            return False
        timeout = _UNBOUNDED_WAIT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        failed_before = self._failed
        marker = _FlushMarker()
        self._queue.append(marker)  # past the capacity check: a flush is never dropped
        self._wake.set()
        if not marker.wait(timeout):
            return False
        try:
            flushed = self._sink.flush(deadline - time.monotonic())
            if self._metrics is not None:
                flushed = self._metrics.force_flush(deadline - time.monotonic()) and flushed
        except Exception:
            _logger.warning("ragtrail could not flush its OpenTelemetry export", exc_info=True)
            return False
        return flushed and marker.failed_by_then == failed_before

    def shutdown(self, timeout: float | None = 10.0) -> None:
        """Export what is queued, then stop; later records are dropped and counted.

        Returns within about ``timeout`` (None: 30 s) even if the collector hangs: the export
        thread is a daemon and is left to finish or to die with the process.
        """
        if self._closed:
            return
        self._closed = True
        timeout = _UNBOUNDED_WAIT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._capacity = 0
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._report_unfinished(timeout)
        try:
            self._sink.shutdown(max(deadline - time.monotonic(), 0.0))
            if self._metrics is not None:
                self._metrics.shutdown(max(deadline - time.monotonic(), 0.0))
        except Exception:
            _logger.warning("ragtrail could not shut its OpenTelemetry export down cleanly",
                            exc_info=True)

    def _report_unfinished(self, timeout: float) -> None:
        """Shutdown ran out of time (a slow or hanging collector): say how many spans are
        still queued. The export thread goes on with them and counts each exported or failed
        (an exporter already shut down fails them); a process that exits first loses them."""
        left = sum(isinstance(item, SpanRecord) for item in self._queue.copy())
        self._unfinished = left
        if left:
            _logger.warning("ragtrail's export had not finished within %.1f s of shutdown: "
                            "%d span(s) still queued, lost if the process exits now",
                            timeout, left)

    def health(self) -> dict[str, Any]:
        """Counters and state for the health routes; ``last_error`` is already redacted."""
        depth = len(self._queue)
        if not self._last_ok or not (self._closed or self._thread.is_alive()):
            status = "failing"
        elif (depth >= self._queue_size * _DEGRADED_FILL
              or time.monotonic() - self._last_drop < _RECENT_DROP_SECONDS):
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "mode": self._sink.mode,
            "protocol": self._protocol,
            "endpoint": self._endpoint,
            "exported": self._exported,
            "failed": self._failed,
            "dropped": self._dropped,
            "rescued": self._rescue.rescued,
            "unsampled_held": self._rescue.held,
            "unsampled_discarded": self._rescue.discarded,
            "queue_depth": depth,
            "queue_capacity": self._queue_size,
            "unfinished_at_shutdown": self._unfinished,
            "metrics": self._metrics is not None,
            "last_error": self._last_error,
            "last_error_time_us": self._last_error_time_us,
        }

    # -- export thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self._delay)
            self._wake.clear()
            stopping = self._stopping
            try:
                self._drain()
                if stopping:
                    self._drain()  # anything appended while the flag was being read
                    self._rescue.clear()
            except Exception:  # keep exporting whatever went wrong with one batch
                _logger.exception("ragtrail's export thread hit an unexpected error")
            if stopping:
                return

    def _drain(self) -> None:
        queue = self._queue
        batch: list[ReadableSpan] = []
        while queue:
            item = queue.popleft()
            if isinstance(item, SpanRecord):
                self._on_span(item, batch)
            elif isinstance(item, SecurityEvent):
                self._on_event(item, batch)
            else:
                self._export(batch)
                batch = []
                item.failed_by_then = self._failed
                item.set()
            if len(batch) >= self._batch_size:
                self._export(batch)
                batch = []
                self._rescue.expire()  # also under a load that never empties the queue
        self._export(batch)
        self._rescue.expire()

    def _on_span(self, record: SpanRecord, batch: list[ReadableSpan]) -> None:
        try:
            if self._metrics is not None:
                self._metrics.record_span(record)
            sampled = record.attributes.get(SAMPLED)
            if sampled is None:
                sampled = self._sampler.root(int(record.trace_id, 16))
            for ready in self._rescue.route(record, bool(sampled)):
                batch.append(self._converter.convert(ready))
        except Exception as exc:  # a malformed record must not stop the thread
            self._fail(1, self._describe(exc))

    def _on_event(self, event: SecurityEvent, batch: list[ReadableSpan]) -> None:
        try:
            if self._metrics is not None:
                self._metrics.count_event(event)
            batch.extend(self._converter.convert(ready) for ready in self._rescue.on_event(event))
        except Exception as exc:
            self._fail(1, self._describe(exc))

    def _export(self, batch: list[ReadableSpan]) -> None:
        if not batch:
            return
        try:
            ok = self._sink.export(batch)
            error = None if ok else f"{self._sink.mode} export of {len(batch)} spans failed"
        except Exception as exc:  # an app span processor, or an exporter that raises
            # (older OTel HTTP exporters, 1.38 say, raise on a read timeout instead of failing)
            ok = False
            error = (f"{self._sink.mode} export of {len(batch)} spans failed: "
                     f"{self._describe(exc)}")
        if ok:
            self._exported += len(batch)
            self._last_ok = True
        else:
            self._fail(len(batch), error or "export failed")

    def _fail(self, count: int, error: str) -> None:
        if self._last_ok:
            _logger.warning("ragtrail could not export %d span(s): %s", count, error)
        self._failed += count
        self._last_ok = False
        self._last_error = error
        self._last_error_time_us = time.time_ns() // 1000

    def _describe(self, exc: BaseException) -> str:
        name = type(exc).__name__
        if self._redact is None:
            return name
        try:
            return f"{name}: {self._redact(str(exc))}"
        except Exception:
            return name


def _restart(pipeline: weakref.ref[ExportPipeline]) -> None:
    """In a forked child: fresh queue, counters, exporter and thread (the parent keeps its own)."""
    alive = pipeline()
    if alive is not None and not alive._closed:
        alive._start()
