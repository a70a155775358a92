"""Where converted spans go: ragtrail's own OTLP exporter, or the app's TracerProvider.

Both are driven by the export thread only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["ExporterSink", "ProviderSink", "Sink", "app_tracer_provider"]


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
