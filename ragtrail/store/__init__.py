"""The audit store: a SQLAlchemy Core ring buffer of security events, spans and metrics."""

from ragtrail.store._audit import AuditStore
from ragtrail.store._errors import StoreError, UnreadableRowError
from ragtrail.store._process import EXIT_FLUSH_TIMEOUT_S
from ragtrail.store._reports import HealthStatus, RingUsage, SpanLatency, StoreHealth, StoreStats
from ragtrail.store._ring import RESERVED_SHARE
from ragtrail.store._schema import SCHEMA_VERSION

__all__ = [
    "EXIT_FLUSH_TIMEOUT_S",
    "RESERVED_SHARE",
    "SCHEMA_VERSION",
    "AuditStore",
    "HealthStatus",
    "RingUsage",
    "SpanLatency",
    "StoreError",
    "StoreHealth",
    "StoreStats",
    "UnreadableRowError",
]
