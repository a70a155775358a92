"""Where converted spans go: ragtrail's own OTLP exporter, or the app's TracerProvider.

``choose_sink`` decides from the settings and the app's provider; the sinks are driven by the
export thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ragtrail._setting_values import timeout_seconds
from ragtrail._settings import Settings
from ragtrail.instrument._export_otlp import signal_target, span_exporter
from ragtrail.instrument._resource import build_resource

__all__ = ["ExporterSink", "ProviderSink", "Sink", "SinkChoice", "app_tracer_provider",
           "choose_sink"]

_logger = logging.getLogger("ragtrail.export")


class Sink(Protocol):
    mode: str
    resource: Resource
    span_limits: SpanLimits

    def export(self, spans: Sequence[ReadableSpan]) -> bool: ...
    def flush(self, timeout: float) -> bool: ...
    def shutdown(self, timeout: float) -> None: ...


def app_tracer_provider() -> TracerProvider | None:
    """The global TracerProvider if the app installed an SDK one (not the API's proxy)."""
    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


class ExporterSink:
    """ragtrail's own exporter, called synchronously: the export thread is the batcher."""

    mode = "otlp"

    def __init__(self, exporter: SpanExporter, resource: Resource) -> None:
        self._exporter = exporter
        self.resource = resource
        self.span_limits = SpanLimits()  # OTEL_SPAN_*_LIMIT, OTEL_ATTRIBUTE_*_LIMIT

    def export(self, spans: Sequence[ReadableSpan]) -> bool:
        return self._exporter.export(spans) is SpanExportResult.SUCCESS

    def flush(self, timeout: float) -> bool:
        return self._exporter.force_flush(int(max(timeout, 0.0) * 1000))

    def shutdown(self, timeout: float) -> None:
        self._exporter.shutdown()


class ProviderSink:
    """The app's SDK TracerProvider: its span processors, its resource; never shut down."""

    mode = "joined"

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self.resource = provider.resource
        # The limits the app's own spans get from this provider (no public accessor).
        limits = getattr(provider, "_span_limits", None)
        self.span_limits = limits if isinstance(limits, SpanLimits) else SpanLimits()

    def export(self, spans: Sequence[ReadableSpan]) -> bool:
        # The SDK has no public way to hand a finished span to a provider's processors; its
        # composite processor is what every SDK span reaches on end(), so the spans arrive
        # exactly as the app's own spans do (BatchSpanProcessor, SimpleSpanProcessor, ...).
        processor = self._provider._active_span_processor
        for span in spans:
            processor.on_end(span)
        return True

    def flush(self, timeout: float) -> bool:
        return self._provider.force_flush(int(max(timeout, 0.0) * 1000))

    def shutdown(self, timeout: float) -> None:
        # The provider belongs to the app, which shuts it down; only push what ragtrail gave it.
        self.flush(timeout)


@dataclass(frozen=True)
class SinkChoice:
    """Where spans go: how to build the sink (again in a forked child), under which resource,
    and the protocol and endpoint of ragtrail's own exporter (None when joining the app's)."""

    make_sink: Callable[[], Sink]
    resource: Resource
    protocol: str | None = None
    endpoint: str | None = None


def choose_sink(settings: Settings, export_timeout: float | None) -> SinkChoice | None:
    """The app's SDK TracerProvider if it installed one, else ragtrail's own OTLP exporter to
    the traces endpoint; None when there is neither. ``export_timeout`` (seconds) overrides
    the shorter of the traces' OTLP timeout and ``export_timeout_ms``."""
    provider = app_tracer_provider()
    traces = signal_target(settings, "traces")
    if provider is not None:
        return SinkChoice(partial(ProviderSink, provider), provider.resource)
    if traces.endpoint:
        resource = build_resource(settings)
        # OTEL_BSP_EXPORT_TIMEOUT bounds one batch's export, which here is one OTLP request.
        span_timeout = (min(traces.timeout, timeout_seconds(settings.export_timeout_ms))
                        if export_timeout is None else export_timeout)
        return SinkChoice(partial(_own_sink, settings, span_timeout, resource), resource,
                          traces.protocol, traces.endpoint)
    if signal_target(settings, "metrics").endpoint:
        _logger.warning("ragtrail exports metrics along with spans only, and no span "
                        "endpoint is set (or OTEL_TRACES_EXPORTER=none): nothing is "
                        "exported")
    return None


def _own_sink(settings: Settings, timeout: float | None, resource: Resource) -> Sink:
    return ExporterSink(span_exporter(settings, timeout), resource)
