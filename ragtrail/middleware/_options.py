"""The middleware's configuration, validated once and precomputed for the per-request path.

Settings come from the monitor's ``Settings``; a keyword argument given to the middleware wins
(None counts as not given), the same precedence as ``Settings.from_env``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.propagators.textmap import TextMapPropagator

from ragtrail._settings import ConfigurationError, Settings
from ragtrail.instrument import _textmap as textmap
from ragtrail.instrument._otel_logs import limit_otel_logs
from ragtrail.middleware._client import TrustedProxies

__all__ = ["DEFAULT_EXCLUDED_PATHS", "MiddlewareOptions"]

# The health routes the middleware serves (issue 4): probes are not requests worth a span each.
DEFAULT_EXCLUDED_PATHS: tuple[str, ...] = (
    "/health",
    "/ready",
    "/livez",
    "/readyz",
    "/api/health/detailed",
    "/api/health/dependencies",
    "/api/monitoring",
)

# RFC 9110 section 5.6.2 "token": what a header name may contain.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# Headers read for the span and the client address, besides the correlation headers and the
# propagators' own. Of those, these only ride along with a trace context, never start one.
_CONTEXT_ONLY = frozenset(("tracestate", "baggage"))
_USER_AGENT, _HOST, _FORWARDED_FOR = "user-agent", "host", "x-forwarded-for"
_CONTENT_LENGTH, _TRANSFER_ENCODING = "content-length", "transfer-encoding"


@dataclass(frozen=True, slots=True)
class MiddlewareOptions:
    """What one middleware instance does, with header names ready for ASGI and WSGI lookups."""

    id_headers: tuple[str, ...]
    echo_header: str  # as configured (WSGI); ASGI wants it lowercase: echo_header_asgi
    echo_header_asgi: bytes
    trust_inbound: bool
    # Header names that carry an inbound trace context for ``propagator``, the global one when
    # these options were built (traceparent; b3, x-b3-traceid... with OTEL_PROPAGATORS).
    trace_headers: tuple[str, ...]
    propagator: TextMapPropagator
    proxies: TrustedProxies | None  # None when there are none: one test per request
    max_body_bytes: int
    reject_malicious: bool
    security: bool
    excluded_exact: frozenset[str]
    excluded_prefixes: tuple[str, ...]
    capture_headers: frozenset[str]
    burst_threshold: int
    burst_window: float
    # lowercase header name -> itself, for the headers the middleware reads (ASGI: as bytes)
    wanted_asgi: dict[bytes, str]
    # CGI environ key (HTTP_X_REQUEST_ID) -> lowercase header name, for WSGI
    wanted_wsgi: dict[str, str]

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        correlation_headers: Iterable[str] | None = None,
        trust_inbound: bool | None = None,
        trusted_proxies: Iterable[str] | None = None,
        max_body_bytes: int | None = None,
        reject_malicious: bool | None = None,
        exclude_paths: Iterable[str] | None = None,
        capture_headers: Iterable[str] = (),
        auth_failure_burst: tuple[int, float] = (10, 60.0),
    ) -> MiddlewareOptions:
        """Merge the overrides over ``settings``; raise ConfigurationError on a bad value."""
        headers = _header_names(
            "correlation_headers",
            settings.correlation_headers if correlation_headers is None else correlation_headers)
        if not headers:
            raise ConfigurationError(
                "setting correlation_headers is empty; expected at least one header name")
        limit = settings.max_body_bytes if max_body_bytes is None else max_body_bytes
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(
                f"setting max_body_bytes={limit!r} is not valid; expected an integer >= 1")
        exact, prefixes = _excluded(DEFAULT_EXCLUDED_PATHS if exclude_paths is None
                                    else exclude_paths)
        captured = frozenset(_header_names("capture_headers", capture_headers))
        threshold, window = _burst(auth_failure_burst)
        proxies = TrustedProxies(
            settings.trusted_proxies if trusted_proxies is None else trusted_proxies)
        propagator = textmap.global_textmap()()
        propagated = textmap.fields(propagator)
        limit_otel_logs()  # the baggage propagator logs what clients send
        wanted = {*headers, *propagated, _USER_AGENT, _HOST, _CONTENT_LENGTH,
                  _TRANSFER_ENCODING, *captured}
        if proxies:
            wanted.add(_FORWARDED_FOR)
        echo = (settings.correlation_headers if correlation_headers is None
                else tuple(correlation_headers))[0].strip()
        return cls(
            id_headers=headers,
            echo_header=echo,
            echo_header_asgi=echo.lower().encode("latin-1"),
            trust_inbound=_flag("trust_inbound", settings.trust_inbound, trust_inbound),
            trace_headers=tuple(sorted(propagated - _CONTEXT_ONLY)),
            propagator=propagator,
            proxies=proxies or None,
            max_body_bytes=limit,
            reject_malicious=_flag("reject_malicious", settings.reject_malicious,
                                   reject_malicious),
            security=settings.security_enabled,
            excluded_exact=exact,
            excluded_prefixes=prefixes,
            capture_headers=captured,
            burst_threshold=threshold,
            burst_window=window,
            wanted_asgi={name.encode("latin-1"): name for name in wanted},
            wanted_wsgi={_environ_key(name): name for name in wanted},
        )

    def excluded(self, path: str) -> bool:
        """True when ``path`` (the path alone, never the query) is excluded from spans."""
        if path in self.excluded_exact:
            return True
        return bool(self.excluded_prefixes) and path.startswith(self.excluded_prefixes)


def _header_names(setting: str, names: Iterable[str]) -> tuple[str, ...]:
    if isinstance(names, (str, bytes)):
        raise ConfigurationError(
            f"setting {setting}={names!r} is not valid; expected a list of header names")
    result: list[str] = []
    for name in names:
        cleaned = name.strip().lower() if isinstance(name, str) else ""
        if not _TOKEN.fullmatch(cleaned):
            raise ConfigurationError(
                f"setting {setting} has {name!r}, which is not an HTTP header name")
        if cleaned not in result:
            result.append(cleaned)
    return tuple(result)


def _excluded(paths: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Exact paths, and ``/prefix/*`` entries that exclude a whole subtree."""
    if isinstance(paths, (str, bytes)):
        raise ConfigurationError(
            f"setting exclude_paths={paths!r} is not valid; expected a list of paths")
    exact: set[str] = set()
    prefixes: list[str] = []
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(
                f"setting exclude_paths has {path!r}; expected a path starting with '/'")
        if path.endswith("/*"):
            prefixes.append(path[:-1])
        else:
            exact.add(path)
    return frozenset(exact), tuple(prefixes)


def _burst(value: Any) -> tuple[int, float]:
    try:
        threshold, window = value
        ok = (isinstance(threshold, int) and not isinstance(threshold, bool) and threshold >= 2
              and isinstance(window, (int, float)) and window > 0)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigurationError(
            f"setting auth_failure_burst={value!r} is not valid; "
            "expected (count >= 2, seconds > 0)")
    return threshold, float(window)


def _flag(name: str, default: bool, override: bool | None) -> bool:
    if override is None:
        return default
    if not isinstance(override, bool):
        raise ConfigurationError(
            f"setting {name}={override!r} is not valid; expected True or False")
    return override


def _environ_key(name: str) -> str:
    """The CGI variable for a header (PEP 3333): Content-Length has no HTTP_ prefix."""
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_LENGTH", "CONTENT_TYPE") else "HTTP_" + key
