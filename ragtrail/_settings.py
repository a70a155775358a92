"""The one settings object: constructor arguments, then environment variables, then defaults.

Every setting is declared once below, with its environment variables and parser, so the
configuration reference (``docs/configuration.md``) and the code cannot drift apart: a test
checks that every field is documented there.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ragtrail._records import Severity

__all__ = ["ConfigurationError", "Settings"]


class ConfigurationError(ValueError):
    """A setting has a value ragtrail cannot use; the message names the setting and the choices."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("expected a whole number") from None


def _float(raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ValueError("expected a number") from None


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _key_values(raw: str) -> dict[str, str]:
    """Parse ``k1=v1,k2=v2`` as in OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS."""
    pairs: dict[str, str] = {}
    for item in _csv(raw):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected comma-separated key=value pairs")
        pairs[unquote(key.strip())] = unquote(value.strip())
    return pairs


def _optional_str(raw: str) -> str | None:
    return raw.strip() or None


def _unset_when_blank(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, except that an empty value means unset, as the OTel specification says."""
    return lambda raw: parse(raw) if raw.strip() else None


_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_PROTOCOLS = ("http/protobuf", "grpc")


def _setting(
    default: Any,
    *env: str,
    parse: Callable[[str], Any] = str,
    secret: bool = False,
) -> Any:
    """Declare a field: its default, its environment variables (first set wins), its parser."""
    metadata = {"env": env, "parse": parse}
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
        {}, "OTEL_RESOURCE_ATTRIBUTES", parse=_key_values)

    # Kill switches
    enabled: bool = _setting(True, "RAGTRAIL_ENABLED", parse=_bool)
    security_enabled: bool = _setting(True, "RAGTRAIL_SECURITY_ENABLED", parse=_bool)
    sdk_disabled: bool = _setting(False, "OTEL_SDK_DISABLED", parse=_bool)
    debug: bool = _setting(False, "RAGTRAIL_DEBUG", parse=_bool)

    # Audit store
    store_url: str = _setting("sqlite:///ragtrail.db", "RAGTRAIL_STORE_URL", secret=True)
    events_capacity: int = _setting(100_000, "RAGTRAIL_EVENTS_CAPACITY", parse=_int)
    spans_capacity: int = _setting(100_000, "RAGTRAIL_SPANS_CAPACITY", parse=_int)
    metrics_capacity: int = _setting(10_000, "RAGTRAIL_METRICS_CAPACITY", parse=_int)
    queue_size: int = _setting(10_000, "RAGTRAIL_QUEUE_SIZE", parse=_int)
    batch_size: int = _setting(500, "RAGTRAIL_BATCH_SIZE", parse=_int)
    event_coalesce_seconds: float = _setting(60.0, "RAGTRAIL_EVENT_COALESCE_SECONDS", parse=_float)
    batch_linger_seconds: float = _setting(
        0.05, "RAGTRAIL_BATCH_LINGER_SECONDS", parse=_float)
    store_close_timeout: float = _setting(10.0, "RAGTRAIL_STORE_CLOSE_TIMEOUT", parse=_float)
    # Argument only (pool classes, driver options): for PgBouncer, e.g. {"poolclass": NullPool,
    # "connect_args": {"prepare_threshold": None}}. Hidden from repr: connect_args may hold
    # a password.
    store_engine_options: dict[str, Any] = _setting({}, secret=True)

    # OpenTelemetry export
    otlp_endpoint: str | None = _setting(
        None, "RAGTRAIL_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", parse=_optional_str)
    otlp_traces_endpoint: str | None = _setting(
        None, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", parse=_optional_str)
    otlp_metrics_endpoint: str | None = _setting(
        None, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", parse=_optional_str)
    otlp_protocol: str = _setting(
        "http/protobuf", "RAGTRAIL_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    otlp_headers: dict[str, str] = _setting(
        {}, "OTEL_EXPORTER_OTLP_HEADERS", parse=_key_values, secret=True)
    otlp_timeout_ms: int = _setting(
        10_000, "RAGTRAIL_OTLP_TIMEOUT_MS", "OTEL_EXPORTER_OTLP_TIMEOUT", parse=_int)
    # Per signal, as the OTel exporter specification allows: unset means the shared value.
    otlp_traces_protocol: str | None = _setting(
        None, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", parse=_optional_str)
    otlp_metrics_protocol: str | None = _setting(
        None, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", parse=_optional_str)
    otlp_traces_headers: dict[str, str] | None = _setting(
        None, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", parse=_unset_when_blank(_key_values),
        secret=True)
    otlp_metrics_headers: dict[str, str] | None = _setting(
        None, "OTEL_EXPORTER_OTLP_METRICS_HEADERS", parse=_unset_when_blank(_key_values),
        secret=True)
    otlp_traces_timeout_ms: int | None = _setting(
        None, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", parse=_unset_when_blank(_int))
    otlp_metrics_timeout_ms: int | None = _setting(
        None, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", parse=_unset_when_blank(_int))
    traces_sampler: str = _setting("parentbased_always_on", "OTEL_TRACES_SAMPLER")
    traces_sampler_arg: float = _setting(1.0, "OTEL_TRACES_SAMPLER_ARG", parse=_float)

    # @monitored
    capture_max_bytes: int = _setting(2048, "RAGTRAIL_CAPTURE_MAX_BYTES", parse=_int)
    slow_ms: float | None = _setting(
        None, "RAGTRAIL_SLOW_MS", parse=_unset_when_blank(_float))
    function_error_severity: Severity = _setting(
        Severity.MEDIUM, "RAGTRAIL_FUNCTION_ERROR_SEVERITY", parse=Severity.parse)

    # Redaction
    redaction_enabled: bool = _setting(True, "RAGTRAIL_REDACTION_ENABLED", parse=_bool)
    redact_keys: tuple[str, ...] = _setting((), "RAGTRAIL_REDACT_KEYS", parse=_csv)

    # Alerts
    alert_min_severity: Severity = _setting(
        Severity.HIGH, "RAGTRAIL_ALERT_MIN_SEVERITY", parse=Severity.parse)
    alert_coalesce_seconds: float = _setting(300.0, "RAGTRAIL_ALERT_COALESCE_SECONDS", parse=_float)
    alert_webhook_url: str | None = _setting(
        None, "RAGTRAIL_ALERT_WEBHOOK_URL", parse=_optional_str, secret=True)

    # Middleware
    correlation_headers: tuple[str, ...] = _setting(
        ("X-Request-ID", "X-Correlation-ID"), "RAGTRAIL_CORRELATION_HEADERS", parse=_csv)
    trust_inbound: bool = _setting(True, "RAGTRAIL_TRUST_INBOUND", parse=_bool)
    trusted_proxies: tuple[str, ...] = _setting((), "RAGTRAIL_TRUSTED_PROXIES", parse=_csv)
    max_body_bytes: int = _setting(10 * 1024 * 1024, "RAGTRAIL_MAX_BODY_BYTES", parse=_int)
    reject_malicious: bool = _setting(False, "RAGTRAIL_REJECT_MALICIOUS", parse=_bool)

    # Health
    api_token: str | None = _setting(
        None, "RAGTRAIL_API_TOKEN", parse=_optional_str, secret=True)
    detailed_routes_open: bool = _setting(False, "RAGTRAIL_DETAILED_ROUTES_OPEN", parse=_bool)
    health_check_interval: float = _setting(15.0, "RAGTRAIL_HEALTH_CHECK_INTERVAL", parse=_float)
    health_check_timeout: float = _setting(5.0, "RAGTRAIL_HEALTH_CHECK_TIMEOUT", parse=_float)
    monitoring_interval: float = _setting(30.0, "RAGTRAIL_MONITORING_INTERVAL", parse=_float)
    cpu_warn_percent: float = _setting(85.0, "RAGTRAIL_CPU_WARN_PERCENT", parse=_float)
    cpu_fail_percent: float = _setting(98.0, "RAGTRAIL_CPU_FAIL_PERCENT", parse=_float)
    memory_warn_percent: float = _setting(85.0, "RAGTRAIL_MEMORY_WARN_PERCENT", parse=_float)
    memory_fail_percent: float = _setting(95.0, "RAGTRAIL_MEMORY_FAIL_PERCENT", parse=_float)
    disk_warn_percent: float = _setting(85.0, "RAGTRAIL_DISK_WARN_PERCENT", parse=_float)
    disk_fail_percent: float = _setting(95.0, "RAGTRAIL_DISK_FAIL_PERCENT", parse=_float)

    # Security posture
    quarantine_dir: str = _setting("quarantine", "RAGTRAIL_QUARANTINE_DIR")
    security_scan_on_startup: bool | None = _setting(
        None, "RAGTRAIL_SECURITY_SCAN_ON_STARTUP", parse=_bool)
    security_vulnerability_threshold: Severity = _setting(
        Severity.MEDIUM, "RAGTRAIL_SECURITY_VULNERABILITY_THRESHOLD", parse=Severity.parse)

    def __post_init__(self) -> None:
        self._check_types()
        named = self.resource_attributes.get("service.name", "").strip()
        if self.service_name == "unknown_service" and named:
            # As the OTel SDK reads it: OTEL_RESOURCE_ATTRIBUTES=service.name=... alone names
            # the service, for the store, the health routes and the export alike.
            object.__setattr__(self, "service_name", named)
        for name in ("events_capacity", "spans_capacity", "metrics_capacity", "queue_size",
                     "batch_size", "capture_max_bytes", "max_body_bytes"):
            _require(name, getattr(self, name), getattr(self, name) >= 1, "an integer >= 1")
        for name in ("health_check_interval", "health_check_timeout", "monitoring_interval",
                     "event_coalesce_seconds", "alert_coalesce_seconds"):
            _require(name, getattr(self, name), getattr(self, name) > 0, "a number > 0")
        _require("batch_linger_seconds", self.batch_linger_seconds,
                 0 <= self.batch_linger_seconds <= 5, "a number of seconds from 0 to 5")
        _require("store_close_timeout", self.store_close_timeout,
                 self.store_close_timeout > 0, "a number of seconds > 0")
        for name in ("otlp_protocol", "otlp_traces_protocol", "otlp_metrics_protocol"):
            protocol = getattr(self, name)
            _require(name, protocol, protocol in _PROTOCOLS or (
                protocol is None and name != "otlp_protocol"), " or ".join(_PROTOCOLS))
        # The OTel specification gives OTEL_EXPORTER_OTLP_TIMEOUT in milliseconds; the Python SDK
        # reads seconds (opentelemetry-python#4044). A value under 100 is almost surely meant as
        # seconds, and as milliseconds it would fail every export: refuse it at start-up.
        for name in ("otlp_timeout_ms", "otlp_traces_timeout_ms", "otlp_metrics_timeout_ms"):
            timeout = getattr(self, name)
            _require(name, timeout, (timeout is None and name != "otlp_timeout_ms") or (
                timeout is not None and timeout >= 100),
                "a whole number of milliseconds >= 100 (OTEL_EXPORTER_OTLP_TIMEOUT and its "
                "per-signal forms are in milliseconds, as the OpenTelemetry specification says)")
        _require("traces_sampler", self.traces_sampler, self.traces_sampler in _SAMPLERS,
                 ", ".join(_SAMPLERS))
        _require("traces_sampler_arg", self.traces_sampler_arg,
                 0.0 <= self.traces_sampler_arg <= 1.0, "a number from 0 to 1")
        _require("slow_ms", self.slow_ms, self.slow_ms is None or self.slow_ms >= 0,
                 "a number of milliseconds >= 0, or unset")
        for metric in ("cpu", "memory", "disk"):
            warn = getattr(self, f"{metric}_warn_percent")
            fail = getattr(self, f"{metric}_fail_percent")
            _require(f"{metric}_warn_percent", warn, 0 <= warn <= fail <= 100,
                     f"percentages with 0 <= warn <= {metric}_fail_percent <= 100")
        for name, protocol in (
                ("otlp_endpoint", self.otlp_protocol),
                ("otlp_traces_endpoint", self.otlp_traces_protocol or self.otlp_protocol),
                ("otlp_metrics_endpoint", self.otlp_metrics_protocol or self.otlp_protocol)):
            endpoint = getattr(self, name)
            _require(name, endpoint, endpoint is None or _is_endpoint(endpoint, protocol),
                     "an http:// or https:// URL with a host, e.g. http://127.0.0.1:4318"
                     + (", or host:port for gRPC" if protocol == "grpc" else ""))

    def _check_types(self) -> None:
        """Arguments skip the environment's parsers: check their types here, so that
        ``queue_size="100"`` or ``enabled="false"`` fails naming the setting, not later."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = str(f.type)
            optional = kind.endswith(" | None")
            if value is None and optional:
                continue
            kind = kind.removesuffix(" | None")
            if kind == "Severity":
                try:
                    value = Severity.parse(value)
                except ValueError as exc:
                    raise ConfigurationError(f"setting {f.name}={value!r} is not valid; "
                                             f"{exc}") from None
            else:
                accepts, accepted = _TYPES[kind]
                _require(f.name, value if f.repr else "[REDACTED]", accepts(value), accepted)
                if kind == "float":
                    value = float(value)
                elif kind.startswith("tuple"):
                    value = tuple(value)
                elif f.metadata["parse"] is _optional_str:
                    # As from the environment: a blank api_token="" or endpoint means unset,
                    # never an empty token that some checks read as set and others not.
                    value = _optional_str(value)
            object.__setattr__(self, f.name, value)

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
        setting, the variable and what it accepts.
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown setting(s) {', '.join(unknown)}; see docs/configuration.md")
        values: dict[str, Any] = {}
        variables: dict[str, str] = {}  # setting -> the variable its value came from
        for f in dataclasses.fields(cls):
            if overrides.get(f.name) is not None:  # None means "not given": fall through
                values[f.name] = overrides[f.name]
                continue
            for variable in f.metadata["env"]:
                raw = env.get(variable)
                if raw is None or (raw.strip() == "" and f.default is not None):
                    continue
                try:
                    values[f.name] = f.metadata["parse"](raw)
                except ValueError as exc:
                    raise ConfigurationError(
                        f"{variable}={_shown(f, raw)!r} is not valid for setting {f.name}: {exc}",
                        setting=f.name) from None
                variables[f.name] = variable
                break
        try:
            return cls(**values)
        except ConfigurationError as exc:  # a parsed value out of range: name its variable too
            variable = variables.get(exc.setting or "")
            if variable is None:
                raise
            raise ConfigurationError(f"{exc} (from {variable})", setting=exc.setting) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed, validated again."""
        return dataclasses.replace(self, **changes)


def _is_endpoint(endpoint: str, protocol: str) -> bool:
    """An OTLP endpoint: an http(s) URL with a host, as the OTel specification asks; gRPC
    exporters also take a bare ``host:port`` (TLS unless told otherwise)."""
    try:
        if "://" in endpoint:
            parts = urlsplit(endpoint)
            return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        parts = urlsplit(f"//{endpoint}")
        return protocol == "grpc" and bool(parts.hostname) and parts.port is not None
    except ValueError:  # a port out of range, a malformed IPv6 address
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {  # a field's type -> check, description
    "str": (lambda value: isinstance(value, str), "text"),
    "int": (_is_int, "a whole number"),
    "float": (lambda value: _is_int(value) or isinstance(value, float), "a number"),
    "bool": (lambda value: isinstance(value, bool), "True or False"),
    "tuple[str, ...]": (lambda value: isinstance(value, (tuple, list)) and all(
        isinstance(item, str) for item in value), "a list or tuple of strings"),
    "dict[str, str]": (lambda value: isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()),
        "a mapping of strings to strings"),
    "dict[str, Any]": (lambda value: isinstance(value, Mapping), "a mapping"),
}


def _shown(f: dataclasses.Field[Any], raw: str) -> str:
    return "[REDACTED]" if not f.repr else raw


def _require(name: str, value: Any, ok: bool, accepted: str) -> None:
    if not ok:
        raise ConfigurationError(f"setting {name}={value!r} is not valid; expected {accepted}",
                                 setting=name)
