"""OpenTelemetry metrics: security events by type and severity, ``@monitored`` durations.

Recorded by the export thread from the records it already receives, so the caller's thread
never touches an instrument. The app's global SDK MeterProvider is used when it set one (so
the metrics share its readers and resource); otherwise ragtrail runs a private one that pushes
to the configured OTLP endpoint and never becomes the global provider.
"""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from ragtrail._records import SecurityEvent, SpanRecord
from ragtrail._setting_values import timeout_seconds
from ragtrail._settings import Settings
from ragtrail._threads import control_signals_blocked
from ragtrail.instrument._attributes import CALL_KIND, CALL_NAME, EVENT_SEVERITY, EVENT_TYPE
from ragtrail.instrument._export_otlp import metric_exporter, signal_target

__all__ = ["CALL_DURATION", "SECURITY_EVENTS", "OtelMetrics"]

SECURITY_EVENTS = "ragtrail.security_events"
CALL_DURATION = "ragtrail.call.duration"

# Not @monitored calls: requests served and outgoing HTTP calls have their own OTel metrics.
_NOT_CALLS = frozenset({"server", "client"})
# The OTel semantic conventions' advice for duration histograms in seconds.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                     7.5, 10.0, 30.0, 60.0)
_SHUTDOWN_FLOOR_S = 0.05


class OtelMetrics:
    """The two instruments, and the private MeterProvider behind them if ragtrail owns one."""

    def __init__(self, meter: metrics.Meter, owned: MeterProvider | None) -> None:
        self._owned = owned
        self._events = meter.create_counter(
            SECURITY_EVENTS, unit="{event}",
            description="Security events recorded by ragtrail, by type and severity.")
        self._durations = meter.create_histogram(
            CALL_DURATION, unit="s",
            description="Duration of @monitored calls, by name and RAG step kind.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS)

    @classmethod
    def create(cls, settings: Settings, resource: Resource, version: str, *,
               interval: float, timeout: float | None = None) -> OtelMetrics | None:
        """Join the app's SDK MeterProvider, else push to the metrics endpoint, else None.

        ``timeout`` (seconds) overrides both the metrics' OTLP timeout and
        ``metric_export_timeout_ms`` (OTEL_METRIC_EXPORT_TIMEOUT, the reader's bound)."""
        app_provider = metrics.get_meter_provider()
        if isinstance(app_provider, MeterProvider):
            return cls(app_provider.get_meter("ragtrail", version), None)
        target = signal_target(settings, "metrics")
        if not target.endpoint:
            return None
        if timeout is None:
            # The exporters bound a request by their own timeout only (the reader's is not
            # passed on over gRPC): OTEL_METRIC_EXPORT_TIMEOUT is applied to both.
            timeout = min(target.timeout, timeout_seconds(settings.metric_export_timeout_ms))
        with control_signals_blocked():  # the reader starts its export thread at once
            reader = PeriodicExportingMetricReader(
                metric_exporter(settings, timeout),
                export_interval_millis=interval * 1000, export_timeout_millis=timeout * 1000)
        owned = MeterProvider(resource=resource, metric_readers=[reader])
        return cls(owned.get_meter("ragtrail", version), owned)

    @property
    def owned(self) -> bool:
        return self._owned is not None

    def record_span(self, record: SpanRecord) -> None:
        """Add a ``@monitored`` call's duration to the histogram (other kinds are ignored)."""
        if record.kind in _NOT_CALLS:
            return
        attributes = {CALL_NAME: record.name, CALL_KIND: record.kind}
        if record.status == "error":
            # OTel semantic conventions: duration metrics carry error.type for failed calls.
            attributes["error.type"] = record.error_type or "_OTHER"
        self._durations.record(record.duration_us / 1e6, attributes)

    def count_event(self, event: SecurityEvent) -> None:
        """Count a security event (``count`` of them when it stands for coalesced repeats)."""
        self._events.add(max(event.count, 1), {
            EVENT_TYPE: event.event_type,
            EVENT_SEVERITY: str(event.severity),
        })

    def force_flush(self, timeout: float) -> bool:
        """Push now (an app-owned provider exports on its own schedule)."""
        if self._owned is None:
            return True
        return self._owned.force_flush(timeout_millis=max(timeout, 0.0) * 1000)

    def shutdown(self, timeout: float) -> None:
        """Push and stop the private provider; never touch the app's.

        Never with less than ``_SHUTDOWN_FLOOR_S``: the SDK's provider, given no time left
        (a hanging collector took it for the spans), skips telling its reader to stop and
        refuses a second shutdown, so the reader's thread would export every minute for good.
        """
        if self._owned is not None:
            self._owned.shutdown(timeout_millis=max(timeout, _SHUTDOWN_FLOOR_S) * 1000)
