"""ragtrail: spans, correlation IDs, security events, health probes and an audit store for RAG services."""

from ragtrail._records import MetricsSample, SecurityEvent, Severity, SpanEvent, SpanRecord
from ragtrail._settings import ConfigurationError, Settings

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "MetricsSample",
    "SecurityEvent",
    "Settings",
    "Severity",
    "SpanEvent",
    "SpanRecord",
    "__version__",
]
