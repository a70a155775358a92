"""The one settings object: constructor arguments, then environment variables, then defaults.

Every setting is declared once below, with its environment variables, its parser and what it
accepts, so the configuration reference (``docs/configuration.md``) and the code cannot drift
apart: a test checks that every field is documented there. ``_settings_env`` reads the
variables for ``from_env``; ``_setting_checks`` checks one value against its declaration.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ragtrail._records import Severity
from ragtrail._setting_checks import ConfigurationError, require, shown, validated
from ragtrail._setting_values import (
    AT_LEAST_ONE,
    BEARER_TOKEN,
    COMPRESSIONS,
    EXPORTERS,
    HEADERS,
    LIMIT,
    NOT_BLANK,
    POSITIVE,
    PROTOCOLS,
    SAMPLERS,
    TIMEOUT,
    TIMEOUT_MS,
    WEBHOOK_URL,
    Check,
    is_endpoint,
    one_of,
    parse_bool,
    parse_csv,
    parse_enum,
    parse_float,
    parse_headers,
    parse_int,
    parse_key_values,
    parse_optional_str,
    parse_otel_bool,
    store_url_or_path,
    unset_when_blank,
)
from ragtrail._settings_env import read_environment

__all__ = ["ConfigurationError", "Settings"]

_EXPORT_BATCH_SIZE = 512  # OTEL_BSP_MAX_EXPORT_BATCH_SIZE's default (OTel specification)


def _setting(
    default: Any,
    *env: str,
    parse: Callable[[str], Any] = str,
    check: Check | None = None,
    secret: bool = False,
) -> Any:
    """Declare a field: its default, its environment variables (first set wins), its parser,
    and what it accepts."""
    metadata = {"env": env, "parse": parse, "check": check}
    if isinstance(default, (dict, list, set)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata,
                     repr=not secret)
    return field(default=default, metadata=metadata, repr=not secret)


@dataclass(frozen=True)
class Settings:
    """Everything ragtrail can be told, validated at start-up.

    Build it with ``Settings.from_env(**overrides)``: an argument wins over the environment,
    which wins over the default. ``Settings(...)`` alone ignores the environment (for tests).

    >>> Settings(service_name="rag-api").service_name
    'rag-api'
    """

    # Identity (OpenTelemetry resource)
    service_name: str = _setting("unknown_service", "RAGTRAIL_SERVICE_NAME", "OTEL_SERVICE_NAME")
    service_version: str = _setting("0.0.0", "RAGTRAIL_SERVICE_VERSION")
    environment: str = _setting("development", "RAGTRAIL_ENVIRONMENT")
    resource_attributes: dict[str, str] = _setting(
        {}, "OTEL_RESOURCE_ATTRIBUTES", parse=parse_key_values)

    # Kill switches
    enabled: bool = _setting(True, "RAGTRAIL_ENABLED", parse=parse_bool)
    security_enabled: bool = _setting(True, "RAGTRAIL_SECURITY_ENABLED", parse=parse_bool)
    sdk_disabled: bool = _setting(False, "OTEL_SDK_DISABLED", parse=parse_otel_bool)
    debug: bool = _setting(False, "RAGTRAIL_DEBUG", parse=parse_bool)

    # Audit store
    # A SQLAlchemy URL, or a SQLite file path (which becomes sqlite:///PATH).
    store_url: str = _setting(
        "sqlite:///ragtrail.db", "RAGTRAIL_STORE_URL", check=NOT_BLANK, secret=True)
    events_capacity: int = _setting(
        100_000, "RAGTRAIL_EVENTS_CAPACITY", parse=parse_int, check=AT_LEAST_ONE)
    spans_capacity: int = _setting(
        100_000, "RAGTRAIL_SPANS_CAPACITY", parse=parse_int, check=AT_LEAST_ONE)
    metrics_capacity: int = _setting(
        10_000, "RAGTRAIL_METRICS_CAPACITY", parse=parse_int, check=AT_LEAST_ONE)
    queue_size: int = _setting(10_000, "RAGTRAIL_QUEUE_SIZE", parse=parse_int, check=AT_LEAST_ONE)
    batch_size: int = _setting(500, "RAGTRAIL_BATCH_SIZE", parse=parse_int, check=AT_LEAST_ONE)
    event_coalesce_seconds: float = _setting(
        60.0, "RAGTRAIL_EVENT_COALESCE_SECONDS", parse=parse_float, check=POSITIVE)
    batch_linger_seconds: float = _setting(
        0.05, "RAGTRAIL_BATCH_LINGER_SECONDS", parse=parse_float,
        check=(lambda seconds: 0 <= seconds <= 5, "a number of seconds from 0 to 5"))
    store_close_timeout: float = _setting(
        10.0, "RAGTRAIL_STORE_CLOSE_TIMEOUT", parse=parse_float,
        check=(lambda seconds: seconds > 0, "a number of seconds > 0"))
    # Argument only (pool classes, driver options): for PgBouncer, e.g. {"poolclass": NullPool,
    # "connect_args": {"prepare_threshold": None}}. Hidden from repr: connect_args may hold
    # a password.
    store_engine_options: dict[str, Any] = _setting({}, secret=True)

    # OpenTelemetry export
    otlp_endpoint: str | None = _setting(
        None, "RAGTRAIL_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", parse=parse_optional_str)
    otlp_traces_endpoint: str | None = _setting(
        None, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", parse=parse_optional_str)
    otlp_metrics_endpoint: str | None = _setting(
        None, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", parse=parse_optional_str)
    otlp_protocol: str = _setting(
        "http/protobuf", "RAGTRAIL_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL", parse=parse_enum,
        check=one_of(PROTOCOLS))
    otlp_headers: dict[str, str] = _setting(
        {}, "OTEL_EXPORTER_OTLP_HEADERS", parse=parse_headers, check=HEADERS, secret=True)
    otlp_timeout_ms: int = _setting(
        10_000, "RAGTRAIL_OTLP_TIMEOUT_MS", "OTEL_EXPORTER_OTLP_TIMEOUT", parse=parse_int,
        check=TIMEOUT_MS)
    otlp_compression: str = _setting(
        "none", "OTEL_EXPORTER_OTLP_COMPRESSION", parse=parse_enum, check=one_of(COMPRESSIONS))
    # OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER: "none" turns that signal's export off.
    traces_exporter: str = _setting(
        "otlp", "OTEL_TRACES_EXPORTER", parse=parse_enum, check=one_of(EXPORTERS))
    metrics_exporter: str = _setting(
        "otlp", "OTEL_METRICS_EXPORTER", parse=parse_enum, check=one_of(EXPORTERS))
    # Per signal, as the OTel exporter specification allows: unset means the shared value.
    otlp_traces_protocol: str | None = _setting(
        None, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", parse=unset_when_blank(parse_enum),
        check=one_of(PROTOCOLS))
    otlp_metrics_protocol: str | None = _setting(
        None, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", parse=unset_when_blank(parse_enum),
        check=one_of(PROTOCOLS))
    otlp_traces_headers: dict[str, str] | None = _setting(
        None, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", parse=unset_when_blank(parse_headers),
        check=HEADERS, secret=True)
    otlp_metrics_headers: dict[str, str] | None = _setting(
        None, "OTEL_EXPORTER_OTLP_METRICS_HEADERS", parse=unset_when_blank(parse_headers),
        check=HEADERS, secret=True)
    otlp_traces_timeout_ms: int | None = _setting(
        None, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", parse=unset_when_blank(parse_int),
        check=TIMEOUT_MS)
    otlp_metrics_timeout_ms: int | None = _setting(
        None, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", parse=unset_when_blank(parse_int),
        check=TIMEOUT_MS)
    otlp_traces_compression: str | None = _setting(
        None, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", parse=unset_when_blank(parse_enum),
        check=one_of(COMPRESSIONS))
    otlp_metrics_compression: str | None = _setting(
        None, "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", parse=unset_when_blank(parse_enum),
        check=one_of(COMPRESSIONS))
    # The span export's own queue and batches (the OTel batch span processor's variables) and
    # the metrics' export schedule; the specification's defaults.
    export_queue_size: int = _setting(
        2048, "OTEL_BSP_MAX_QUEUE_SIZE", parse=parse_int, check=AT_LEAST_ONE)
    export_batch_size: int = _setting(
        _EXPORT_BATCH_SIZE, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", parse=parse_int, check=AT_LEAST_ONE)
    export_schedule_delay_ms: int = _setting(
        5000, "OTEL_BSP_SCHEDULE_DELAY", parse=parse_int, check=AT_LEAST_ONE)
    export_timeout_ms: int = _setting(
        30_000, "OTEL_BSP_EXPORT_TIMEOUT", parse=parse_int, check=TIMEOUT)
    metric_export_interval_ms: int = _setting(
        60_000, "OTEL_METRIC_EXPORT_INTERVAL", parse=parse_int, check=AT_LEAST_ONE)
    metric_export_timeout_ms: int = _setting(
        30_000, "OTEL_METRIC_EXPORT_TIMEOUT", parse=parse_int, check=TIMEOUT)
    traces_sampler: str = _setting(
        "parentbased_always_on", "OTEL_TRACES_SAMPLER", parse=parse_enum, check=one_of(SAMPLERS))
    traces_sampler_arg: float = _setting(
        1.0, "OTEL_TRACES_SAMPLER_ARG", parse=parse_float,
        check=(lambda ratio: 0 <= ratio <= 1, "a number from 0 to 1"))

    # @monitored
    capture_max_bytes: int = _setting(
        2048, "RAGTRAIL_CAPTURE_MAX_BYTES", parse=parse_int, check=AT_LEAST_ONE)
    slow_ms: float | None = _setting(
        None, "RAGTRAIL_SLOW_MS", parse=unset_when_blank(parse_float),
        check=(lambda ms: ms >= 0, "a number of milliseconds >= 0, or unset"))
    function_error_severity: Severity = _setting(
        Severity.MEDIUM, "RAGTRAIL_FUNCTION_ERROR_SEVERITY", parse=Severity.parse)

    # Redaction
    redaction_enabled: bool = _setting(True, "RAGTRAIL_REDACTION_ENABLED", parse=parse_bool)
    redact_keys: tuple[str, ...] = _setting((), "RAGTRAIL_REDACT_KEYS", parse=parse_csv)

    # Alerts
    alert_min_severity: Severity = _setting(
        Severity.HIGH, "RAGTRAIL_ALERT_MIN_SEVERITY", parse=Severity.parse)
    alert_coalesce_seconds: float = _setting(
        300.0, "RAGTRAIL_ALERT_COALESCE_SECONDS", parse=parse_float, check=POSITIVE)
    alert_webhook_url: str | None = _setting(
        None, "RAGTRAIL_ALERT_WEBHOOK_URL", parse=parse_optional_str, check=WEBHOOK_URL,
        secret=True)

    # Middleware
    correlation_headers: tuple[str, ...] = _setting(
        ("X-Request-ID", "X-Correlation-ID"), "RAGTRAIL_CORRELATION_HEADERS", parse=parse_csv)
    trust_inbound: bool = _setting(True, "RAGTRAIL_TRUST_INBOUND", parse=parse_bool)
    trusted_proxies: tuple[str, ...] = _setting((), "RAGTRAIL_TRUSTED_PROXIES", parse=parse_csv)
    max_body_bytes: int = _setting(
        10 * 1024 * 1024, "RAGTRAIL_MAX_BODY_BYTES", parse=parse_int, check=AT_LEAST_ONE)
    reject_malicious: bool = _setting(False, "RAGTRAIL_REJECT_MALICIOUS", parse=parse_bool)

    # Health
    api_token: str | None = _setting(
        None, "RAGTRAIL_API_TOKEN", parse=parse_optional_str, check=BEARER_TOKEN, secret=True)
    detailed_routes_open: bool = _setting(False, "RAGTRAIL_DETAILED_ROUTES_OPEN", parse=parse_bool)
    health_check_interval: float = _setting(
        15.0, "RAGTRAIL_HEALTH_CHECK_INTERVAL", parse=parse_float, check=POSITIVE)
    health_check_timeout: float = _setting(
        5.0, "RAGTRAIL_HEALTH_CHECK_TIMEOUT", parse=parse_float, check=POSITIVE)
    monitoring_interval: float = _setting(
        30.0, "RAGTRAIL_MONITORING_INTERVAL", parse=parse_float, check=POSITIVE)
    cpu_warn_percent: float = _setting(85.0, "RAGTRAIL_CPU_WARN_PERCENT", parse=parse_float)
    cpu_fail_percent: float = _setting(98.0, "RAGTRAIL_CPU_FAIL_PERCENT", parse=parse_float)
    memory_warn_percent: float = _setting(85.0, "RAGTRAIL_MEMORY_WARN_PERCENT", parse=parse_float)
    memory_fail_percent: float = _setting(95.0, "RAGTRAIL_MEMORY_FAIL_PERCENT", parse=parse_float)
    disk_warn_percent: float = _setting(85.0, "RAGTRAIL_DISK_WARN_PERCENT", parse=parse_float)
    disk_fail_percent: float = _setting(95.0, "RAGTRAIL_DISK_FAIL_PERCENT", parse=parse_float)

    # Security posture
    quarantine_dir: str = _setting("quarantine", "RAGTRAIL_QUARANTINE_DIR")
    # Bounds on what rejected uploads may take (docs/security.md#bounds): the least recently
    # rejected files are evicted past either maximum; nothing is kept below the free floor.
    quarantine_max_bytes: int = _setting(
        1024**3, "RAGTRAIL_QUARANTINE_MAX_BYTES", parse=parse_int, check=LIMIT)
    quarantine_max_files: int = _setting(
        10_000, "RAGTRAIL_QUARANTINE_MAX_FILES", parse=parse_int, check=LIMIT)
    quarantine_min_free_bytes: int = _setting(
        1024**3, "RAGTRAIL_QUARANTINE_MIN_FREE_BYTES", parse=parse_int, check=LIMIT)
    security_scan_on_startup: bool | None = _setting(
        None, "RAGTRAIL_SECURITY_SCAN_ON_STARTUP", parse=parse_bool)
    security_vulnerability_threshold: Severity = _setting(
        Severity.MEDIUM, "RAGTRAIL_SECURITY_VULNERABILITY_THRESHOLD", parse=Severity.parse)

    def __post_init__(self) -> None:
        self._check_each()
        object.__setattr__(self, "store_url", store_url_or_path(self.store_url))
        named = self.resource_attributes.get("service.name", "").strip()
        if self.service_name == "unknown_service" and named:
            # As the OTel SDK reads it: OTEL_RESOURCE_ATTRIBUTES=service.name=... alone names
            # the service, for the store, the health routes and the export alike.
            object.__setattr__(self, "service_name", named)
        for metric in ("cpu", "memory", "disk"):
            warn = getattr(self, f"{metric}_warn_percent")
            fail = getattr(self, f"{metric}_fail_percent")
            require(f"{metric}_warn_percent", warn, 0 <= warn <= fail <= 100,
                     f"percentages with 0 <= warn <= {metric}_fail_percent <= 100")
        if self.export_batch_size == _EXPORT_BATCH_SIZE > self.export_queue_size:
            # The default batch under a smaller queue: the queue's size, without a word.
            object.__setattr__(self, "export_batch_size", self.export_queue_size)
        require("export_batch_size", self.export_batch_size,
                 self.export_batch_size <= self.export_queue_size,
                 f"an integer from 1 to export_queue_size ({self.export_queue_size})")
        for name, protocol in (
                ("otlp_endpoint", self.otlp_protocol),
                ("otlp_traces_endpoint", self.otlp_traces_protocol or self.otlp_protocol),
                ("otlp_metrics_endpoint", self.otlp_metrics_protocol or self.otlp_protocol)):
            endpoint = getattr(self, name)
            require(name, endpoint, endpoint is None or is_endpoint(endpoint, protocol),
                     "an http:// or https:// URL with a host, e.g. http://127.0.0.1:4318"
                     + (", or host:port for gRPC" if protocol == "grpc" else ""))

    def _check_each(self) -> None:
        """Arguments skip the environment's parsers: check each setting alone here, so that
        ``queue_size="100"`` or ``enabled="false"`` fails naming the setting, not later."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                object.__setattr__(self, f.name, validated(f, value))
            except ValueError as exc:
                raise ConfigurationError(
                    f"setting {f.name}={shown(f, value)!r} is not valid; {exc}",
                    setting=f.name) from None

    @property
    def is_production(self) -> bool:
        return self.environment.strip().lower() in {"production", "prod"}

    @property
    def scan_on_startup(self) -> bool:
        """The start-up security scan runs when asked to, and by default in production."""
        if self.security_scan_on_startup is None:
            return self.is_production
        return self.security_scan_on_startup

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Arguments first, then ``RAGTRAIL_*``/``OTEL_*`` variables, then defaults.

        An override of None counts as not given. Raises ConfigurationError naming the
        setting, the variable and what it accepts; an unusable ``OTEL_*`` value is only logged
        as a warning, and the default applies (see ``_settings_env``).
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown setting(s) {', '.join(unknown)}; see docs/configuration.md")
        values, variables = read_environment(dataclasses.fields(cls), env, overrides)
        try:
            return cls(**values)
        except ConfigurationError as exc:  # a value that does not fit another: name its variable
            variable = variables.get(exc.setting or "")
            if variable is None:
                raise
            raise ConfigurationError(f"{exc} (from {variable})", setting=exc.setting) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed, validated again."""
        return dataclasses.replace(self, **changes)
