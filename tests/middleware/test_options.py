"""Middleware configuration: precedence over the monitor's settings, validation at start-up."""

from __future__ import annotations

import pytest

from ragtrail import ConfigurationError, Settings
from ragtrail.middleware import ASGIMiddleware, WSGIMiddleware
from ragtrail.middleware._options import DEFAULT_EXCLUDED_PATHS, MiddlewareOptions


def test_settings_are_the_defaults_and_arguments_win() -> None:
    """Arguments override the monitor's settings; None means not given."""
    settings = Settings(correlation_headers=("X-Trace-Token",), trust_inbound=False,
                        max_body_bytes=100, reject_malicious=True)
    from_settings = MiddlewareOptions.build(settings)
    assert from_settings.id_headers == ("x-trace-token",)
    assert from_settings.echo_header == "X-Trace-Token"
    assert from_settings.echo_header_asgi == b"x-trace-token"
    assert (from_settings.trust_inbound, from_settings.max_body_bytes,
            from_settings.reject_malicious) == (False, 100, True)
    overridden = MiddlewareOptions.build(
        settings, correlation_headers=["X-Request-ID"], trust_inbound=True, max_body_bytes=5,
        reject_malicious=None)
    assert overridden.id_headers == ("x-request-id",)
    assert (overridden.trust_inbound, overridden.max_body_bytes,
            overridden.reject_malicious) == (True, 5, True)


def test_excluded_paths_are_exact_or_anchored_prefixes() -> None:
    """Exclusion matches the path itself, never a substring or a longer path."""
    options = MiddlewareOptions.build(Settings(), exclude_paths=["/health", "/static/*"])
    assert options.excluded("/health")
    assert not options.excluded("/health/")
    assert not options.excluded("/api/health")
    assert not options.excluded("/healthz")
    assert options.excluded("/static/app.js")
    assert not options.excluded("/static")
    assert not options.excluded("/x/static/app.js")


def test_the_health_routes_are_excluded_by_default() -> None:
    options = MiddlewareOptions.build(Settings())
    assert all(options.excluded(path) for path in DEFAULT_EXCLUDED_PATHS)
    assert not options.excluded("/")


@pytest.mark.parametrize(("argument", "value", "named"), [
    ("correlation_headers", ["X Request"], "correlation_headers"),
    ("correlation_headers", [], "correlation_headers"),
    ("correlation_headers", "X-Request-ID", "correlation_headers"),
    ("capture_headers", ["content type"], "capture_headers"),
    ("max_body_bytes", 0, "max_body_bytes"),
    ("max_body_bytes", True, "max_body_bytes"),
    ("trust_inbound", "no", "trust_inbound"),
    ("trusted_proxies", ["10.0.0.300"], "trusted_proxies"),
    ("exclude_paths", ["health"], "exclude_paths"),
    ("exclude_paths", "/health", "exclude_paths"),
    ("auth_failure_burst", (1, 60.0), "auth_failure_burst"),
    ("auth_failure_burst", (10, 0), "auth_failure_burst"),
    ("auth_failure_burst", 10, "auth_failure_burst"),
])
@pytest.mark.parametrize("middleware", [ASGIMiddleware, WSGIMiddleware])
def test_bad_arguments_fail_when_the_middleware_is_made(
        middleware: type, argument: str, value: object, named: str) -> None:
    """A bad argument raises ConfigurationError naming it at start-up, not on a request."""
    with pytest.raises(ConfigurationError, match=named):
        middleware(lambda *a: None, health=False, **{argument: value})
