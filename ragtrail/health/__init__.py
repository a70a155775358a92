"""Health checks, the health routes' responder, and the psutil metrics sampler."""

from ragtrail.health._check import (
    CheckResult,
    FunctionCheck,
    HealthCheck,
    Status,
    health_check,
    registered_checks,
    unregister_check,
)
from ragtrail.health._database import DatabaseCheck
from ragtrail.health._filesystem import FilesystemCheck
from ragtrail.health._http import HTTPCheck
from ragtrail.health._own_checks import ExportCheck, StoreCheck
from ragtrail.health._render import HealthResponse
from ragtrail.health._routes import DEFAULT_PATHS
from ragtrail.health._sampler import MetricsSampler
from ragtrail.health._service import HealthService
from ragtrail.health._signals import install_sigterm_handler
from ragtrail.health._thresholds import ThresholdCheck

__all__ = [
    "DEFAULT_PATHS",
    "CheckResult",
    "DatabaseCheck",
    "ExportCheck",
    "FilesystemCheck",
    "FunctionCheck",
    "HTTPCheck",
    "HealthCheck",
    "HealthResponse",
    "HealthService",
    "MetricsSampler",
    "Status",
    "StoreCheck",
    "ThresholdCheck",
    "health_check",
    "install_sigterm_handler",
    "registered_checks",
    "unregister_check",
]

