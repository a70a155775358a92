"""ragtrail: spans, correlation IDs, security events, health probes and an audit store for RAG.

Everything a service needs is importable from here; the subpackages ``ragtrail.store``,
``ragtrail.middleware``, ``ragtrail.health`` and ``ragtrail.security`` hold the rest.
"""

from ragtrail._records import MetricsSample, SecurityEvent, Severity, SpanEvent, SpanRecord
from ragtrail._settings import ConfigurationError, Settings
from ragtrail.health import (
    CheckResult,
    DatabaseCheck,
    FilesystemCheck,
    HealthCheck,
    HTTPCheck,
    StoreCheck,
    ThresholdCheck,
    health_check,
)
from ragtrail.instrument import (
    CorrelationFilter,
    JsonFormatter,
    LiveSpan,
    Monitor,
    WebhookAlert,
    configure,
    correlation_id,
    correlation_scope,
    get_monitor,
    monitored,
    new_correlation_id,
    on_alert,
    propagate,
    reset_correlation_id,
    security_event,
    set_correlation_id,
    shutdown,
    start_span,
)
from ragtrail.middleware import ASGIMiddleware, WSGIMiddleware, create_health_endpoints
from ragtrail.security import FileValidator, ValidationResult
from ragtrail.store import AuditStore, StoreError, StoreHealth, StoreStats

__version__ = "0.1.0"

__all__ = [
    "ASGIMiddleware",
    "AuditStore",
    "CheckResult",
    "ConfigurationError",
    "CorrelationFilter",
    "DatabaseCheck",
    "FileValidator",
    "FilesystemCheck",
    "HTTPCheck",
    "HealthCheck",
    "JsonFormatter",
    "LiveSpan",
    "MetricsSample",
    "Monitor",
    "SecurityEvent",
    "Settings",
    "Severity",
    "SpanEvent",
    "SpanRecord",
    "StoreCheck",
    "StoreError",
    "StoreHealth",
    "StoreStats",
    "ThresholdCheck",
    "ValidationResult",
    "WSGIMiddleware",
    "WebhookAlert",
    "__version__",
    "configure",
    "correlation_id",
    "correlation_scope",
    "create_health_endpoints",
    "get_monitor",
    "health_check",
    "monitored",
    "new_correlation_id",
    "on_alert",
    "propagate",
    "reset_correlation_id",
    "security_event",
    "set_correlation_id",
    "shutdown",
    "start_span",
]
