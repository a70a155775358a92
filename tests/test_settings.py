"""Settings: precedence, validation messages, secrets, and the configuration reference."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from ragtrail import ConfigurationError, Settings, Severity

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_argument_beats_environment_beats_default() -> None:
    """An argument wins over its environment variable, which wins over the default."""
    env = {"RAGTRAIL_SERVICE_NAME": "from-env", "RAGTRAIL_ENVIRONMENT": "staging"}
    settings = Settings.from_env(env, service_name="from-arg")
    assert (settings.service_name, settings.environment, settings.queue_size) == (
        "from-arg", "staging", 10_000)


def test_none_argument_counts_as_not_given() -> None:
    """configure(otlp_endpoint=None) must not hide OTEL_EXPORTER_OTLP_ENDPOINT."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert Settings.from_env(env, otlp_endpoint=None).otlp_endpoint == "http://127.0.0.1:4318"


def test_ragtrail_variable_wins_over_standard_otel_variable() -> None:
    """RAGTRAIL_SERVICE_NAME is listed first, so it beats OTEL_SERVICE_NAME."""
    env = {"OTEL_SERVICE_NAME": "otel", "RAGTRAIL_SERVICE_NAME": "ragtrail"}
    assert Settings.from_env(env).service_name == "ragtrail"


def test_standard_otel_variables_are_honoured() -> None:
    """OTEL_* variables fill the export settings."""
    env = {
        "OTEL_SERVICE_NAME": "rag-api",
        "OTEL_RESOURCE_ATTRIBUTES": "team=search,region=eu%2Dwest",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_SDK_DISABLED": "true",
    }
    s = Settings.from_env(env)
    assert (s.service_name, s.resource_attributes, s.otlp_protocol, s.otlp_headers,
            s.traces_sampler, s.traces_sampler_arg, s.sdk_disabled) == (
        "rag-api", {"team": "search", "region": "eu-west"}, "grpc", {"api-key": "abc"},
        "parentbased_traceidratio", 0.25, True)


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        ({"RAGTRAIL_QUEUE_SIZE": "lots"}, ["RAGTRAIL_QUEUE_SIZE", "queue_size", "lots"]),
        ({"RAGTRAIL_ENABLED": "maybe"}, ["RAGTRAIL_ENABLED", "true/false"]),
        ({"RAGTRAIL_OTLP_PROTOCOL": "http/json"},
         ["RAGTRAIL_OTLP_PROTOCOL", "otlp_protocol", "http/json", "grpc"]),
        ({"RAGTRAIL_ALERT_MIN_SEVERITY": "urgent"}, ["RAGTRAIL_ALERT_MIN_SEVERITY", "critical"]),
        ({"RAGTRAIL_EVENTS_CAPACITY": "0"},
         ["RAGTRAIL_EVENTS_CAPACITY", "events_capacity", ">= 1"]),
        ({"RAGTRAIL_CPU_WARN_PERCENT": "99"}, ["cpu_warn_percent", "warn"]),
        ({"RAGTRAIL_HEALTH_CHECK_TIMEOUT": "soon"},
         ["RAGTRAIL_HEALTH_CHECK_TIMEOUT", "health_check_timeout", "soon", "expected a number"]),
        ({"RAGTRAIL_OTLP_TIMEOUT_MS": "5s"},
         ["RAGTRAIL_OTLP_TIMEOUT_MS", "otlp_timeout_ms", "5s", "expected a whole number"]),
        ({"RAGTRAIL_OTLP_TIMEOUT_MS": "10"},
         ["RAGTRAIL_OTLP_TIMEOUT_MS", "otlp_timeout_ms", "10", "milliseconds >= 100"]),
        ({"RAGTRAIL_STORE_CLOSE_TIMEOUT": "inf"},
         ["RAGTRAIL_STORE_CLOSE_TIMEOUT", "store_close_timeout", "inf", "finite"]),
    ],
)
def test_invalid_values_name_setting_value_and_choices(
    env: dict[str, str], fragments: list[str]
) -> None:
    """A bad RAGTRAIL_* value fails at start-up with a message a user can act on."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        ({"queue_size": "100"}, ["queue_size", "'100'", "a whole number"]),
        ({"capture_max_bytes": "2k"}, ["capture_max_bytes", "a whole number"]),
        ({"enabled": "false"}, ["enabled", "'false'", "True or False"]),
        ({"redact_keys": "ssn"}, ["redact_keys", "list or tuple of strings"]),
        ({"alert_min_severity": "urgent"}, ["alert_min_severity", "urgent", "critical"]),
        ({"otlp_endpoint": "127.0.0.1:4318"}, ["otlp_endpoint", "127.0.0.1:4318", "http://"]),
        ({"otlp_traces_endpoint": "ftp://collector"}, ["otlp_traces_endpoint", "https://"]),
        ({"otlp_endpoint": "collector:99999", "otlp_protocol": "grpc"},
         ["otlp_endpoint", "host:port for gRPC"]),
        ({"api_token": 12345}, ["api_token", "[REDACTED]", "text"]),
        ({"api_token": "t\u00f6ken-12345"}, ["api_token", "[REDACTED]", "printable ASCII"]),
        ({"api_token": "tok\x00en-12345"}, ["api_token", "[REDACTED]", "printable ASCII"]),
        ({"traces_sampler": "xray"}, ["traces_sampler", "xray", "always_on"]),
        ({"traces_sampler_arg": 2}, ["traces_sampler_arg", "0 to 1"]),
        ({"otlp_timeout_ms": 10}, ["otlp_timeout_ms", "milliseconds >= 100"]),
    ],
)
def test_invalid_arguments_name_setting_value_and_choices(
    arguments: dict[str, Any], fragments: list[str]
) -> None:
    """Arguments skip the environment's parsers; a wrong type still fails at configure()."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({}, **arguments)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "12345" not in str(info.value)


def test_a_non_ascii_api_token_variable_fails_at_start_up_without_showing_it() -> None:
    """Headers arrive as latin-1 and the token is compared as UTF-8: a non-ASCII token would
    refuse every request to the detailed routes, so it is refused where it is set."""
    with pytest.raises(ConfigurationError, match="RAGTRAIL_API_TOKEN") as info:
        Settings.from_env({"RAGTRAIL_API_TOKEN": "s\u00e9same-12345"})
    assert "s\u00e9same" not in str(info.value)
    assert Settings.from_env({"RAGTRAIL_API_TOKEN": "a.b_c~d+e/f=="}).api_token == "a.b_c~d+e/f=="


def test_invalid_endpoint_variable_fails_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="otlp_endpoint"):
        Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    grpc = Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
                              "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert grpc.otlp_endpoint == "collector:4317"  # gRPC exporters take host:port


def test_arguments_of_close_enough_types_are_normalised() -> None:
    """A list where a tuple is kept, an int where a float is: converted, not refused."""
    s = Settings.from_env({}, redact_keys=["ssn"], slow_ms=5, batch_linger_seconds=0)
    assert (s.redact_keys, s.slow_ms, s.batch_linger_seconds) == (("ssn",), 5.0, 0.0)
    assert type(s.slow_ms) is float


def test_blank_optional_arguments_mean_unset_as_in_the_environment() -> None:
    """api_token="" (a missing variable read with a default of "") is no token, as
    RAGTRAIL_API_TOKEN="" is; the same for the endpoints and the webhook."""
    s = Settings.from_env({}, api_token="", otlp_endpoint=" ", alert_webhook_url="\t")
    assert (s.api_token, s.otlp_endpoint, s.alert_webhook_url) == (None, None, None)
    assert Settings.from_env({}, api_token=" t0ken ").api_token == "t0ken"


def test_a_store_path_is_a_sqlite_file_as_on_the_command_line(tmp_path: Path) -> None:
    """RAGTRAIL_STORE_URL=/data/audit.db (which ``ragtrail --db`` reads as a SQLite file) is
    the same file for the app, not an unparsable URL; URLs are kept as given."""
    path = tmp_path / "audit.db"
    assert Settings.from_env({"RAGTRAIL_STORE_URL": str(path)}).store_url == f"sqlite:///{path}"
    assert Settings(store_url="~/audit.db").store_url == f"sqlite:///{Path.home()}/audit.db"
    url = "postgresql+psycopg://u@db/audit"
    assert Settings(store_url=url).store_url == url
    with pytest.raises(ConfigurationError, match=r"store_url.*not blank"):
        Settings(store_url=" ")


def test_service_name_in_resource_attributes_names_the_service() -> None:
    """OTEL_RESOURCE_ATTRIBUTES=service.name=... alone names the service everywhere (the
    store's events, the health routes' serviceId), as for the export; a setting wins."""
    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=rag-api,team=search"}
    assert Settings.from_env(env).service_name == "rag-api"
    assert Settings.from_env({**env, "OTEL_SERVICE_NAME": "svc"}).service_name == "svc"
    assert Settings.from_env(env, service_name="mine").service_name == "mine"


def test_one_bad_resource_attribute_does_not_drop_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    """As the OTel SDK reads it: the item that is not key=value is skipped and named, the
    service name beside it still names the service."""
    settings = Settings.from_env({"OTEL_RESOURCE_ATTRIBUTES": "service.name=rag-api,typo,k=v"})
    assert (settings.service_name, settings.resource_attributes) == (
        "rag-api", {"service.name": "rag-api", "k": "v"})
    [warning] = _warnings(caplog)
    assert "skipped 'typo'" in warning


def test_unknown_argument_is_refused() -> None:
    """A typo in a setting name fails loudly instead of being ignored."""
    with pytest.raises(ConfigurationError, match="servce_name"):
        Settings.from_env({}, servce_name="x")


def test_secrets_are_hidden_from_repr_and_errors() -> None:
    """Tokens, headers and the store URL (it may hold a password) never show in repr or errors."""
    s = Settings.from_env({}, api_token="tok-canary-123",
                          store_url="postgresql+psycopg://u:pw-canary@127.0.0.1/db")
    assert "canary" not in repr(s)
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({}, otlp_headers={"Bad Key": "canary"})
    assert "canary" not in str(info.value)


@pytest.mark.parametrize("url", ["hooks.slack.com/services/T0/B0/canary", "ftp://h/canary",
                                 "https:///canary"])
def test_an_unusable_webhook_url_names_its_setting_and_hides_the_url(url: str) -> None:
    """A webhook URL missing its scheme or host fails at start naming the setting (it was a
    plain ValueError from deep inside Monitor, after the store's writer had started, which
    then leaked), never showing the URL: it is a credential."""
    for make in (lambda: Settings.from_env({}, alert_webhook_url=url),
                 lambda: Settings.from_env({"RAGTRAIL_ALERT_WEBHOOK_URL": url})):
        with pytest.raises(ConfigurationError, match="alert_webhook_url") as info:
            make()
        assert "canary" not in str(info.value)
        assert "http:// or https:// URL with a host" in str(info.value)


def test_severity_settings_accept_any_case() -> None:
    """Severity names are case-insensitive and stored as the enum."""
    s = Settings.from_env({"RAGTRAIL_ALERT_MIN_SEVERITY": "CRITICAL"},
                          function_error_severity="High")
    assert (s.alert_min_severity, s.function_error_severity) == (
        Severity.CRITICAL, Severity.HIGH)


def test_scan_on_startup_defaults_on_in_production_only() -> None:
    """The posture scan runs by default in production, and whenever asked."""
    assert Settings(environment="production").scan_on_startup is True
    assert Settings(environment="development").scan_on_startup is False
    assert Settings(environment="development", security_scan_on_startup=True).scan_on_startup


def test_every_setting_is_documented_with_its_variables() -> None:
    """docs/configuration.md has a row for each setting naming all its variables."""
    text = DOCS.read_text(encoding="utf-8")
    for f in dataclasses.fields(Settings):
        row = re.search(rf"^\| `{f.name}` \|(.*)$", text, flags=re.MULTILINE)
        assert row is not None, f"{f.name} is not in docs/configuration.md"
        for variable in f.metadata["env"]:
            assert f"`{variable}`" in row.group(1), f"{variable} missing from {f.name}'s row"


def test_otlp_timeout_is_read_in_milliseconds() -> None:
    """OTEL_EXPORTER_OTLP_TIMEOUT is milliseconds (OTel specification); RAGTRAIL_ wins."""
    assert Settings().otlp_timeout_ms == 10_000
    assert Settings.from_env({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}).otlp_timeout_ms == 2500
    assert Settings.from_env({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
                              "RAGTRAIL_OTLP_TIMEOUT_MS": "400"}).otlp_timeout_ms == 400


# The seed's unprefixed variables (issue #3) and the documented ragtrail variable that replaces
# each: (seed name, ragtrail variable, a value, the setting, the value it must give).
SEED_NAMES = [
    ("ENVIRONMENT", "RAGTRAIL_ENVIRONMENT", "production", "environment", "production"),
    ("OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318", "otlp_endpoint",
     "http://127.0.0.1:4318"),
    ("MONITORING_INTERVAL", "RAGTRAIL_MONITORING_INTERVAL", "45", "monitoring_interval", 45.0),
    ("HEALTH_CHECK_TIMEOUT", "RAGTRAIL_HEALTH_CHECK_TIMEOUT", "2.5", "health_check_timeout", 2.5),
    ("SECURITY_ENABLED", "RAGTRAIL_SECURITY_ENABLED", "false", "security_enabled", False),
    ("SECURITY_SCAN_ON_STARTUP", "RAGTRAIL_SECURITY_SCAN_ON_STARTUP", "true",
     "security_scan_on_startup", True),
    ("SECURITY_VULNERABILITY_THRESHOLD", "RAGTRAIL_SECURITY_VULNERABILITY_THRESHOLD", "high",
     "security_vulnerability_threshold", Severity.HIGH),
    ("API_TOKEN", "RAGTRAIL_API_TOKEN", "tok-seed", "api_token", "tok-seed"),
    ("DEBUG", "RAGTRAIL_DEBUG", "true", "debug", True),
]


def _seed_table() -> dict[str, str]:
    section = DOCS.read_text(encoding="utf-8").split("## Names from the seed system", 1)[1]
    return dict(re.findall(r"^\| `([A-Z_]+)` \| (.*) \|$", section, flags=re.MULTILINE))


def test_seed_names_table_documents_each_seed_variable() -> None:
    """docs/configuration.md maps every seed variable to its ragtrail variable, and only those."""
    table = _seed_table()
    assert sorted(table) == sorted(seed for seed, *_ in SEED_NAMES)
    for seed, variable, *_ in SEED_NAMES:
        assert f"`{variable}`" in table[seed], f"{seed} should map to {variable}"


@pytest.mark.parametrize(("seed", "variable", "raw", "name", "expected"), SEED_NAMES,
                         ids=[row[0] for row in SEED_NAMES])
def test_seed_variable_maps_to_its_ragtrail_variable(
        seed: str, variable: str, raw: str, name: str, expected: object) -> None:
    """The documented variable sets the setting; the bare seed name is never read (another
    program's ENVIRONMENT or DEBUG must not change ragtrail)."""
    assert getattr(Settings.from_env({variable: raw}), name) == expected
    assert getattr(Settings.from_env({seed: raw}), name) == getattr(Settings(), name)


# Unusable OTEL_* values: the OpenTelemetry SDK environment variables specification says an
# unrecognised enum value MUST be warned about and ignored, an invalid number SHOULD be; these
# variables are often set for every service of a cluster.

def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "ragtrail" and r.levelno == logging.WARNING]


@pytest.mark.parametrize(("variable", "raw", "name", "expected"), [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC", "otlp_protocol", "grpc"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/Protobuf", "otlp_protocol", "http/protobuf"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "Grpc", "otlp_traces_protocol", "grpc"),
    ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", " GRPC ", "otlp_metrics_protocol", "grpc"),
    ("OTEL_TRACES_SAMPLER", "ALWAYS_OFF", "traces_sampler", "always_off"),
    ("OTEL_TRACES_SAMPLER", "ParentBased_TraceIdRatio", "traces_sampler",
     "parentbased_traceidratio"),
    ("OTEL_SDK_DISABLED", "TRUE", "sdk_disabled", True),
])
def test_otel_enum_values_are_read_in_any_case(
        variable: str, raw: str, name: str, expected: object,
        caplog: pytest.LogCaptureFixture) -> None:
    """OTEL_* enum values are case-insensitive, as the specification says: no warning."""
    assert getattr(Settings.from_env({variable: raw}), name) == expected
    assert _warnings(caplog) == []


@pytest.mark.parametrize(("variable", "raw", "name"), [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "otlp_protocol"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json", "otlp_traces_protocol"),
    ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "udp", "otlp_metrics_protocol"),
    ("OTEL_TRACES_SAMPLER", "parentbased_jaeger_remote", "traces_sampler"),
    ("OTEL_TRACES_SAMPLER", "jaeger_remote", "traces_sampler"),
    ("OTEL_TRACES_SAMPLER", "xray", "traces_sampler"),
    ("OTEL_TRACES_SAMPLER", "sometimes", "traces_sampler"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "abc", "otlp_timeout_ms"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "10", "otlp_timeout_ms"),  # seconds, meant as milliseconds
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "5", "otlp_traces_timeout_ms"),
    ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1.5s", "otlp_metrics_timeout_ms"),
    ("OTEL_RESOURCE_ATTRIBUTES", "team", "resource_attributes"),
])
def test_an_unusable_otel_value_is_warned_about_and_the_default_applies(
        variable: str, raw: str, name: str, caplog: pytest.LogCaptureFixture) -> None:
    """configure() goes on with the default; one warning names the variable and the value."""
    assert getattr(Settings.from_env({variable: raw}), name) == getattr(Settings(), name)
    [warning] = _warnings(caplog)
    assert variable in warning
    assert repr(raw) in warning


def test_an_unusable_otel_value_falls_back_to_the_default_not_to_other_settings() -> None:
    """An ignored OTEL_EXPORTER_OTLP_TRACES_PROTOCOL leaves the spans on the shared protocol."""
    s = Settings.from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                           "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"})
    assert (s.otlp_protocol, s.otlp_traces_protocol) == ("grpc", None)


def test_a_long_otel_value_is_shortened_in_the_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    Settings.from_env({"OTEL_TRACES_SAMPLER": "x" * 5000})
    [warning] = _warnings(caplog)
    assert "x" * 100 not in warning
    assert "..." in warning


@pytest.mark.parametrize(("raw", "disabled", "warned"), [
    ("true", True, False), ("True", True, False), ("false", False, False),
    ("FALSE", False, False), ("", False, False),
    ("1", False, True), ("yes", False, True), ("on", False, True), ("maybe", False, True),
])
def test_otel_sdk_disabled_is_true_only_for_true(
        raw: str, disabled: bool, warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    """The specification: only a case-insensitive "true" is true; any other value is false,
    and one other than "false" or empty is warned about."""
    assert Settings.from_env({"OTEL_SDK_DISABLED": raw}).sdk_disabled is disabled
    assert bool(_warnings(caplog)) is warned


HEADER_VARIABLES = [("OTEL_EXPORTER_OTLP_HEADERS", "otlp_headers"),
                    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "otlp_traces_headers"),
                    ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "otlp_metrics_headers")]


@pytest.mark.parametrize(("variable", "name"), HEADER_VARIABLES)
def test_unusable_otlp_headers_are_skipped_with_a_warning_that_hides_values(
        variable: str, name: str, caplog: pytest.LogCaptureFixture) -> None:
    """A header with a CR/LF or control character (after percent-decoding), or a name that is
    not an HTTP token, would fail every export: it is skipped, the others are kept."""
    raw = ("api-key=good,Bad Key=canary1,x-inject=a%0D%0AX-Evil:%20canary2,"
           "x%0Aname=canary3,x-nul=canary4%00,novalue-canary5,x-tab=a%09b,"
           "x-euro=canary6%E2%82%AC,x-cafe=caf%C3%A9")
    assert getattr(Settings.from_env({variable: raw}), name) == {
        "api-key": "good", "x-tab": "a\tb", "x-cafe": "café"}
    [warning] = _warnings(caplog)
    assert variable in warning
    assert "skipped header(s) #2, #3, #4, #5, #6, #8 of 9" in warning
    assert "canary" not in caplog.text


@pytest.mark.parametrize("headers", [
    {"Bad Key": "canary"}, {"x-api-key": "canary\r\nX-Evil: 1"}, {"x\nname": "canary"},
    {"": "canary"}, {"x-nul": "canary\x00"}, {"x-euro": "canary€"},
])
@pytest.mark.parametrize("name", [name for _, name in HEADER_VARIABLES])
def test_unusable_header_arguments_fail_naming_the_setting_not_the_value(
        name: str, headers: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match=name) as info:
        Settings.from_env({}, **{name: headers})
    assert "canary" not in str(info.value)


FLOAT_SETTINGS = [f.name for f in dataclasses.fields(Settings) if "float" in str(f.type)]
FLOAT_VARIABLES = [(variable, f.name) for f in dataclasses.fields(Settings)
                   if "float" in str(f.type) for variable in f.metadata["env"]
                   if variable.startswith("RAGTRAIL_")]
NOT_FINITE = ["inf", "-inf", "1e999", "nan"]


@pytest.mark.parametrize("raw", NOT_FINITE)
@pytest.mark.parametrize("name", FLOAT_SETTINGS)
def test_float_arguments_refuse_infinity_as_nan(name: str, raw: str) -> None:
    """A number setting is finite: store_close_timeout=inf would hang close()."""
    with pytest.raises(ConfigurationError, match=f"{name}=.*finite"):
        Settings.from_env({}, **{name: float(raw)})


@pytest.mark.parametrize("raw", NOT_FINITE)
@pytest.mark.parametrize(("variable", "name"), FLOAT_VARIABLES)
def test_float_variables_refuse_infinity_as_nan(variable: str, name: str, raw: str) -> None:
    """RAGTRAIL_STORE_CLOSE_TIMEOUT=inf fails naming the variable, as nan does."""
    with pytest.raises(ConfigurationError, match=f"{variable}=.*{name}.*finite"):
        Settings.from_env({variable: raw})
