"""OTLP span and metric exporters built from ragtrail's settings, for either protocol.

Endpoint, protocol and headers are passed explicitly so ragtrail's precedence (argument, then
environment, then default) decides them, not the exporters' own environment lookups. The
exporter modules are imported only when chosen: grpcio alone takes ~100 ms to import.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter

from ragtrail._settings import Settings

__all__ = ["metric_exporter", "safe_endpoint", "signal_endpoint", "span_exporter"]


def span_exporter(settings: Settings, timeout: float) -> SpanExporter:
    """An OTLP span exporter whose every export gives up after ``timeout`` seconds."""
    if settings.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )
        return GrpcSpanExporter(**_grpc_options(settings, "traces", timeout))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )
    return HttpSpanExporter(**_http_options(settings, "traces", timeout))


def metric_exporter(settings: Settings, timeout: float) -> MetricExporter:
    """An OTLP metric exporter with the same protocol and headers as the spans."""
    if settings.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )
        return GrpcMetricExporter(**_grpc_options(settings, "metrics", timeout))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )
    return HttpMetricExporter(**_http_options(settings, "metrics", timeout))


def safe_endpoint(endpoint: str | None) -> str | None:
    """The endpoint without user info, path or query: fit for health output and logs."""
    if not endpoint:
        return None
    parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    scheme = f"{parts.scheme}://" if parts.scheme else ""
    return f"{scheme}{host}{port}"


def signal_endpoint(settings: Settings, signal: str) -> str | None:
    """Where ``signal`` ("traces" or "metrics") is sent, or None when nowhere.

    OTel exporter spec: a signal's own endpoint (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is
    used as given and wins over the shared one; the shared ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
    a base URL to which OTLP/HTTP appends the signal's path (v1/traces, v1/metrics).
    """
    own = settings.otlp_traces_endpoint if signal == "traces" else settings.otlp_metrics_endpoint
    if own:
        return own
    shared = settings.otlp_endpoint
    if not shared or settings.otlp_protocol == "grpc":
        return shared
    return f"{shared.rstrip('/')}/v1/{signal}"


def _grpc_options(settings: Settings, signal: str, timeout: float) -> dict[str, Any]:
    endpoint = _endpoint(settings, signal)
    return {"endpoint": endpoint, "insecure": _insecure(endpoint),
            "headers": dict(settings.otlp_headers), "timeout": timeout}


def _http_options(settings: Settings, signal: str, timeout: float) -> dict[str, Any]:
    return {"endpoint": _endpoint(settings, signal), "headers": dict(settings.otlp_headers),
            "timeout": timeout}


def _endpoint(settings: Settings, signal: str) -> str:
    endpoint = signal_endpoint(settings, signal)
    if not endpoint:
        raise ValueError(f"no OTLP endpoint for {signal} is set")
    return endpoint


def _insecure(endpoint: str) -> bool | None:
    # OTel exporter spec: for gRPC an http:// scheme means no TLS, https:// TLS; with no
    # scheme the exporter's own default (OTEL_EXPORTER_OTLP_INSECURE, else TLS) applies.
    scheme = urlsplit(endpoint).scheme if "://" in endpoint else ""
    return {"http": True, "https": False}.get(scheme)
