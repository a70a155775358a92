"""The health routes' paths and the query parameters of the probe routes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl

__all__ = ["DEFAULT_PATHS", "build_routes", "flag", "probe_options"]

# The seed's routes, plus the /livez and /readyz names Kubernetes components use.
DEFAULT_PATHS: Mapping[str, tuple[str, ...]] = {
    "live": ("/health", "/livez"),
    "ready": ("/ready", "/readyz"),
    "detailed": ("/api/health/detailed",),
    "dependencies": ("/api/health/dependencies",),
    "monitoring": ("/api/monitoring",),
}
_FALSE = frozenset(("0", "false", "no", "off"))


def build_routes(paths: Mapping[str, str | Sequence[str]]) -> dict[str, str]:
    """path -> route kind, from the defaults overridden per kind; refuses ambiguous set-ups."""
    unknown = sorted(set(paths) - set(DEFAULT_PATHS))
    if unknown:
        raise ValueError(f"unknown health route(s) {', '.join(unknown)}; "
                         f"expected {', '.join(DEFAULT_PATHS)}")
    routes: dict[str, str] = {}
    for kind, default in DEFAULT_PATHS.items():
        chosen = paths.get(kind, default)
        for path in (chosen,) if isinstance(chosen, str) else chosen:
            if not path.startswith("/") or "?" in path or "#" in path:
                raise ValueError(f"health path must start with '/' and hold no query: {path!r}")
            if path in routes:
                raise ValueError(f"health path {path!r} is used twice")
            routes[path] = kind
    return routes


def flag(value: str) -> bool:
    """``?verbose``, ``?verbose=1`` and ``?verbose=true`` are on; ``=0/false/no/off`` off."""
    return value.lower() not in _FALSE


def probe_options(query: str) -> tuple[bool, frozenset[str]]:
    """``?verbose`` and repeatable ``?exclude=name``, as kube-apiserver's /readyz takes them."""
    verbose = False
    excluded: set[str] = set()
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "verbose":
            verbose = flag(value)
        elif key == "exclude" and value:
            excluded.add(value)
    return verbose, frozenset(excluded)
