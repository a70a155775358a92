"""How one setting is read from its variable's text, and what one setting's value may be.

The parsers raise ValueError saying what is expected; ``Settings.from_env`` turns that into a
ConfigurationError for arguments and RAGTRAIL_* variables, and into a warning for OTEL_* ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "AT_LEAST_ONE", "BEARER_TOKEN", "COMPRESSIONS", "EXPORTERS", "HEADERS", "LIMIT",
    "NOT_BLANK", "POSITIVE", "PROTOCOLS", "SAMPLERS", "TIMEOUT", "TIMEOUT_MS",
    "TYPES", "WEBHOOK_URL", "Check", "SomeSkipped", "is_endpoint", "is_web_url", "one_of",
    "parse_bool",
    "parse_csv", "parse_enum", "parse_float", "parse_headers", "parse_int", "parse_key_values",
    "parse_optional_str", "parse_otel_bool", "store_url_or_path", "timeout_seconds",
    "unset_when_blank",
]


class SomeSkipped(ValueError):
    """A list variable some of whose items were unusable: the usable rest, and what was skipped."""

    def __init__(self, usable: Any, message: str) -> None:
        super().__init__(message)
        self.usable = usable


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")


def parse_otel_bool(raw: str) -> bool:
    """OTEL_SDK_DISABLED: only "true", in any case, is true; any other value is false, and one
    other than "false" is warned about (OTel SDK environment variables specification)."""
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise ValueError("expected true or false; any other value counts as false")
    return value == "true"


def parse_enum(raw: str) -> str:
    """OTel enum values "SHOULD be interpreted in a case-insensitive manner" (specification)."""
    return raw.strip().lower()


def parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("expected a whole number") from None


def parse_float(raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ValueError("expected a number") from None


def parse_csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _pairs(raw: str) -> list[tuple[str, str] | None]:
    """``k1=v1,k2=v2``, percent-decoded, as in OTEL_RESOURCE_ATTRIBUTES and
    OTEL_EXPORTER_OTLP_HEADERS; None for an item that is not key=value."""
    pairs: list[tuple[str, str] | None] = []
    for item in parse_csv(raw):
        key, sep, value = item.partition("=")
        pairs.append((unquote(key.strip()), unquote(value.strip())) if sep and key.strip()
                     else None)
    return pairs


def parse_key_values(raw: str) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES: an item that is not key=value is skipped with a warning, the
    rest kept, as the OTel SDK does (one typo dropped a valid service.name with it)."""
    items = parse_csv(raw)
    pairs = _pairs(raw)
    skipped = [repr(item) for item, pair in zip(items, pairs, strict=True) if pair is None]
    usable = dict(pair for pair in pairs if pair is not None)
    if skipped:
        raise SomeSkipped(usable, f"skipped {', '.join(skipped)}; expected comma-separated "
                                  "key=value pairs")
    return usable


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP field name (RFC 9110, 5.1)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # no field value holds these (a tab may)


def _is_header(name: str, value: str) -> bool:
    """A header the exporters can send: a CR or LF, a space in a name, or a character HTTP
    cannot carry (beyond Latin-1, e.g. a percent-encoded "€") fails every export."""
    return (_TOKEN.fullmatch(name) is not None and _CONTROL.search(value) is None
            and _latin1(value))


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _are_headers(headers: Mapping[str, str]) -> bool:
    return all(_is_header(name, value) for name, value in headers.items())


def parse_headers(raw: str) -> dict[str, str]:
    """OTLP headers from a variable: an unusable header is skipped and warned about, the rest
    kept (the OTel specification's "Header format invalid"); the warning never shows a value."""
    pairs = _pairs(raw)
    skipped = [str(number) for number, pair in enumerate(pairs, 1)
               if pair is None or not _is_header(*pair)]
    usable = dict(pair for pair in pairs if pair is not None and _is_header(*pair))
    if skipped:
        raise SomeSkipped(usable, f"skipped header(s) #{', #'.join(skipped)} of {len(pairs)}; "
                                  f"expected {HEADERS[1]}")
    return usable


def store_url_or_path(value: str) -> str:
    """A store URL as given, or a value without ``://`` read as a SQLite file path (``~``
    expanded), so that ``RAGTRAIL_STORE_URL=/data/audit.db`` means the same file to the app
    and to the ``ragtrail`` command line."""
    if "://" in value:
        return value
    return "sqlite:///" + str(Path(value).expanduser())


def parse_optional_str(raw: str) -> str | None:
    return raw.strip() or None


def unset_when_blank(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, except that an empty value means unset, as the OTel specification says."""
    return lambda raw: parse(raw) if raw.strip() else None


SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
PROTOCOLS = ("http/protobuf", "grpc")
COMPRESSIONS = ("gzip", "none")  # the OTLP exporter specification's values
EXPORTERS = ("otlp", "none")  # OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER values ragtrail runs

# What one setting accepts, whatever the others say: a test of its value, and its description.
Check = tuple[Callable[[Any], bool], str]


def one_of(choices: tuple[str, ...]) -> Check:
    return choices.__contains__, "one of " + ", ".join(choices)


AT_LEAST_ONE: Check = (lambda number: number >= 1, "an integer >= 1")
LIMIT: Check = (lambda number: number >= 0, "a whole number >= 0 (0: no limit)")
NOT_BLANK: Check = (lambda text: bool(text.strip()), "text that is not blank")
POSITIVE: Check = (lambda number: number > 0, "a number > 0")
# What a client can send after "Bearer " and have match: request headers arrive as latin-1
# bytes and the token is compared as UTF-8, so a non-ASCII character (or a control character,
# which no header carries) would refuse every request, silently. RFC 6750 tokens are ASCII.
BEARER_TOKEN: Check = (lambda token: token.isascii() and token.isprintable(),
                       "printable ASCII (a bearer token, RFC 6750)")
HEADERS: Check = (_are_headers, "headers, each name=value with the name an HTTP token (no "
                                 "spaces) and no control characters (CR, LF) in name or value")
# The OTel specification's Timeout type (OTEL_BSP_EXPORT_TIMEOUT, OTEL_METRIC_EXPORT_TIMEOUT):
# milliseconds, non-negative, 0 for no limit.
TIMEOUT: Check = (lambda ms: ms >= 0, "a whole number of milliseconds >= 0 (0: no limit)")
# The OTel specification gives OTEL_EXPORTER_OTLP_TIMEOUT in milliseconds too; the Python SDK
# reads seconds (opentelemetry-python#4044). A value from 1 to 99 is almost surely meant as
# seconds, and as milliseconds it would fail every export.
TIMEOUT_MS: Check = (lambda ms: ms == 0 or ms >= 100, (
    "0 (no limit) or a whole number of milliseconds >= 100 (OTEL_EXPORTER_OTLP_TIMEOUT and its "
    "per-signal forms are in milliseconds, as the OpenTelemetry specification says)"))
# What a timeout of 0 stands for: the specification reads it as "indefinite", which an
# implementation MAY give as a very long time, e.g. the largest 32-bit count of milliseconds.
_NO_LIMIT_MS = 2**31 - 1  # about 24.9 days


def timeout_seconds(ms: int) -> float:
    """A timeout setting in seconds, 0 (no limit) as about 24.9 days."""
    return (ms or _NO_LIMIT_MS) / 1000


def is_web_url(url: str) -> bool:
    """An http:// or https:// URL with a host (an OTLP endpoint, a webhook)."""
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a port out of range, a malformed IPv6 address
        return False


WEBHOOK_URL: Check = (is_web_url, "an http:// or https:// URL with a host")


def is_endpoint(endpoint: str, protocol: str) -> bool:
    """An OTLP endpoint: an http(s) URL with a host, as the OTel specification asks; gRPC
    exporters also take a bare ``host:port`` (TLS unless told otherwise)."""
    if "://" in endpoint:
        return is_web_url(endpoint)
    try:
        parts = urlsplit(f"//{endpoint}")
        return protocol == "grpc" and bool(parts.hostname) and parts.port is not None
    except ValueError:  # a port out of range, a malformed IPv6 address
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


TYPES: dict[str, Check] = {  # a field's type -> check, description
    "str": (lambda value: isinstance(value, str), "text"),
    "int": (_is_int, "a whole number"),
    # inf as nan: "wait forever" would hang close() and the health loop, not configure them.
    "float": (lambda value: _is_int(value) or (isinstance(value, float) and math.isfinite(value)),
              "a finite number"),
    "bool": (lambda value: isinstance(value, bool), "True or False"),
    "tuple[str, ...]": (lambda value: isinstance(value, (tuple, list)) and all(
        isinstance(item, str) for item in value), "a list or tuple of strings"),
    "dict[str, str]": (lambda value: isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()),
        "a mapping of strings to strings"),
    "dict[str, Any]": (lambda value: isinstance(value, Mapping), "a mapping"),
}


