"""OTLP span and metric exporters built from ragtrail's settings, for either protocol.

Endpoint, protocol, headers, timeout and compression are resolved here per signal, as the OTel
exporter specification says (a signal's own variable wins over the shared one), and passed to
the exporters explicitly, so ragtrail's precedence (argument, then environment, then default)
decides them. The exporters also read those variables themselves, whatever they are given (no
option of theirs says not to), and merge or reject what they find: the OTLP/HTTP exporter
added headers ragtrail had refused (a CR/LF value, which then failed every export) and logged
header values it could not parse; the gRPC one raised on a timeout or compression ragtrail
had ignored with a warning. A variable that would be read so is taken out of ``os.environ``
while the exporter is built, and only then: when the variables hold what ragtrail uses (the
usual case), reading them changes nothing and ``os.environ`` is left alone, so other threads
never see it change. The exporter modules are imported only when chosen: grpcio alone takes
~100 ms to import.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter

from ragtrail._setting_values import timeout_seconds
from ragtrail._settings import Settings
from ragtrail._threads import gevent_threads
from ragtrail.instrument._otel_logs import limit_otel_logs

__all__ = ["SignalTarget", "metric_exporter", "safe_endpoint", "signal_target",
           "span_exporter"]

Signal = Literal["traces", "metrics"]

_logger = logging.getLogger("ragtrail.export")

# A header item the exporters' own parser takes without a word (printable ASCII values, but
# for '"', ',', ';' and backslash, as in OTEL_EXPORTER_OTLP_HEADERS' W3C baggage-like format); it
# logs any other, value and all.
_PLAIN_HEADER = re.compile(r"[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*=[ \t]*"
                           r"[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_COMPRESSIONS_READ = ("gzip", "deflate", "none")  # what every supported exporter version takes
_environment_lock = threading.Lock()
if hasattr(os, "register_at_fork"):
    # A fork waits for a build in progress, so the child neither inherits the variables hidden
    # nor a lock held by a thread it does not have (a pipeline rebuilds its exporter there).
    os.register_at_fork(before=_environment_lock.acquire,
                        after_in_parent=_environment_lock.release,
                        after_in_child=_environment_lock.release)


@dataclass(frozen=True)
class SignalTarget:
    """Where and how one signal is exported."""

    endpoint: str | None  # None: nowhere
    protocol: str
    headers: Mapping[str, str]
    timeout: float  # seconds, for one export, retries included
    compression: str  # "gzip" or "none"


def signal_target(settings: Settings, signal: Signal) -> SignalTarget:
    """The signal's own endpoint, protocol, headers and timeout where set, else the shared ones.

    A signal's own endpoint (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is used as given; the
    shared ``OTEL_EXPORTER_OTLP_ENDPOINT`` is a base URL to which OTLP/HTTP appends the
    signal's path (v1/traces, v1/metrics). No endpoint when the signal's exporter setting
    (``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``) is "none".
    """
    if signal == "traces":
        own_endpoint, protocol = settings.otlp_traces_endpoint, settings.otlp_traces_protocol
        headers, timeout_ms = settings.otlp_traces_headers, settings.otlp_traces_timeout_ms
        compression, exporter = settings.otlp_traces_compression, settings.traces_exporter
    else:
        own_endpoint, protocol = settings.otlp_metrics_endpoint, settings.otlp_metrics_protocol
        headers, timeout_ms = settings.otlp_metrics_headers, settings.otlp_metrics_timeout_ms
        compression, exporter = settings.otlp_metrics_compression, settings.metrics_exporter
    protocol = protocol or settings.otlp_protocol
    endpoint = own_endpoint or settings.otlp_endpoint
    if endpoint and not own_endpoint and protocol != "grpc":
        # Onto the path, before any query (?tenant=a) a gateway in front may want.
        parts = urlsplit(endpoint)
        endpoint = urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/v1/{signal}"))
    return SignalTarget(
        endpoint if exporter != "none" else None, protocol,
        settings.otlp_headers if headers is None else headers,
        timeout_seconds(settings.otlp_timeout_ms if timeout_ms is None else timeout_ms),
        compression or settings.otlp_compression)


def span_exporter(settings: Settings, timeout: float | None = None) -> SpanExporter:
    """An OTLP span exporter; ``timeout`` (seconds) overrides the traces timeout setting."""
    target = signal_target(settings, "traces")
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )
        if _grpc_blocks_gevent():  # once per exporter of spans; metrics go with them
            _logger.warning(
                "ragtrail exports over OTLP/gRPC under gevent, and grpc was not set up for "
                "gevent: every export blocks all greenlets (a collector that hangs stalls every "
                "request for the export timeout). Call grpc.experimental.gevent.init_gevent() "
                "after monkey-patching and before ragtrail.configure(), or use "
                "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
        with _variables_hidden(_read_otherwise(target, "traces")):
            return GrpcSpanExporter(**_options(target, timeout, grpc=True))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )
    with _variables_hidden(_read_otherwise(target, "traces")):
        return HttpSpanExporter(**_options(target, timeout, grpc=False))


def metric_exporter(settings: Settings, timeout: float | None = None) -> MetricExporter:
    """An OTLP metric exporter; ``timeout`` (seconds) overrides the metrics timeout setting."""
    target = signal_target(settings, "metrics")
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )
        with _variables_hidden(_read_otherwise(target, "metrics")):
            return GrpcMetricExporter(**_options(target, timeout, grpc=True))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )
    with _variables_hidden(_read_otherwise(target, "metrics")):
        return HttpMetricExporter(**_options(target, timeout, grpc=False))


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


def _options(target: SignalTarget, timeout: float | None, *, grpc: bool) -> dict[str, Any]:
    endpoint = target.endpoint
    if not endpoint:
        raise ValueError("no OTLP endpoint is set for this signal")
    limit_otel_logs()  # ragtrail builds an exporter: its retries log once a minute
    # gRPC metadata keys must be lowercase ("Invalid metadata" otherwise, for every export);
    # HTTP header names are case-insensitive.
    options = {"endpoint": endpoint, "headers": {k.lower(): v for k, v in target.headers.items()},
               "timeout": target.timeout if timeout is None else timeout}
    gzip = target.compression == "gzip"
    if grpc:
        from grpc import Compression as GrpcCompression  # type: ignore[import-untyped]

        options["insecure"] = _insecure(endpoint)
        options["compression"] = GrpcCompression.Gzip if gzip else GrpcCompression.NoCompression
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression

        options["compression"] = Compression.Gzip if gzip else Compression.NoCompression
    return options


def _read_otherwise(target: SignalTarget, signal: Signal) -> tuple[str, ...]:
    """The variables an exporter of ``signal`` would read to another effect than ragtrail's
    resolution (``target``): headers it would add or log, a timeout or compression it would
    refuse. Empty when they agree, as when ragtrail read them itself and used them all."""
    environ = os.environ
    prefixes = (f"OTEL_EXPORTER_OTLP_{signal.upper()}_", "OTEL_EXPORTER_OTLP_")
    read_otherwise: list[str] = []
    headers = [f"{prefix}HEADERS" for prefix in prefixes]
    # Each exporter reads its signal's headers, else the shared ones, under those it is given.
    raw = environ.get(headers[0]) or environ.get(headers[1])
    if raw and not _headers_within(raw, target.headers):
        read_otherwise += headers
    for prefix in prefixes:
        timeout, compression = environ.get(f"{prefix}TIMEOUT"), environ.get(f"{prefix}COMPRESSION")
        if timeout is not None and not _is_float(timeout):  # the gRPC exporter's float() raises
            read_otherwise.append(f"{prefix}TIMEOUT")
        if compression is not None and compression.strip().lower() not in _COMPRESSIONS_READ:
            read_otherwise.append(f"{prefix}COMPRESSION")
    return tuple(name for name in read_otherwise if name in environ)


def _grpc_blocks_gevent() -> bool:
    """gevent patched the standard library but grpc's C core still waits in C, holding the
    hub's thread (measured under gunicorn -k gevent with a collector that never answers:
    requests of 0.5 s took 10-20 s)."""
    cygrpc = sys.modules.get("grpc._cython.cygrpc")
    return gevent_threads() and getattr(cygrpc, "g_gevent_activated", True) is False


def _headers_within(raw: str, headers: Mapping[str, str]) -> bool:
    """Whether the exporters parse ``raw`` without a warning into names all among
    ``headers`` (whose values win over theirs), so that reading it changes nothing."""
    names = {name.lower() for name in headers}
    items = [item for item in raw.split(",") if item.strip()]
    return all(_PLAIN_HEADER.fullmatch(item) is not None
               and unquote(item.partition("=")[0]).strip().lower() in names for item in items)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@contextmanager
def _variables_hidden(names: tuple[str, ...]) -> Iterator[None]:
    """``names`` out of os.environ while an exporter is built; nothing done for none.

    Only needed when a variable holds something ragtrail set aside (see ``_read_otherwise``):
    meanwhile another thread reading the environment, or a subprocess started then, does not
    see it. The lock keeps two builds from restoring each other's view.
    """
    if not names:
        yield
        return
    with _environment_lock:
        hidden = {name: os.environ.pop(name) for name in names if name in os.environ}
        try:
            yield
        finally:
            os.environ.update(hidden)


def _insecure(endpoint: str) -> bool | None:
    # OTel exporter spec: for gRPC an http:// scheme means no TLS, https:// TLS; with no
    # scheme the exporter's own default (OTEL_EXPORTER_OTLP_INSECURE, else TLS) applies.
    scheme = urlsplit(endpoint).scheme if "://" in endpoint else ""
    return {"http": True, "https": False}.get(scheme)
