"""The matched route of a request under Starlette releases that do not name it.

Starlette 1.7 and later (and FastAPI, all along) put the matched route in ``scope["route"]``.
Earlier releases leave only ``scope["endpoint"]``, the function or app the route called, and
``scope["router"]``, the outermost router. The route is found again by its endpoint in a table
made once per router. The request's path is matched against that endpoint's routes alone,
which tells apart the routes one endpoint serves (``/health`` and ``/healthz``) and notices a
route added since; if different templates match, no route is named (a wrong ``http.route``
would be worse than none). Routes of other kinds (no ``path_regex``) are never named.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from starlette.routing import Mount

__all__ = ["route_by_endpoint", "route_path"]

# id(router) -> (the router, id(endpoint) -> the routes calling it, the endpoints whose
# request matched none of their routes right after a rebuild). Routers and Mount apps compare
# by content (unhashable), hence ids, kept valid by holding the router itself.
_TABLES: dict[int, tuple[Any, dict[int, list[Any]], set[int]]] = {}
_TABLES_KEPT = 8  # an app has one router; tests and reloaders make a few


def route_by_endpoint(scope: MutableMapping[str, Any]) -> Any:
    """The route whose endpoint handled the request, or None (no route, or no single one)."""
    endpoint, router = scope.get("endpoint"), scope.get("router")
    if endpoint is None or router is None:
        return None
    key = id(endpoint)
    held = _TABLES.get(id(router))
    if held is not None and held[0] is router:
        routes = _matching(held[1].get(key, []), scope)
        if routes or key in held[2]:
            return _single(routes)
    # First request, or a route added since: routes are few, a rebuild is cheap. An endpoint
    # that matches nothing even then (a route of another kind, no path template) is not
    # rebuilt for again while the routes stay the same: not on every request.
    if len(_TABLES) >= _TABLES_KEPT:
        _TABLES.clear()
    table = _table(getattr(router, "routes", ()))
    unmatched = held[2] if held is not None and held[0] is router and held[1] == table \
        else set()
    routes = _matching(table.get(key, []), scope)
    if not routes:
        unmatched.add(key)
    _TABLES[id(router)] = (router, table, unmatched)
    return _single(routes)


def _matching(routes: list[Any], scope: MutableMapping[str, Any]) -> list[Any]:
    """The routes that match the request's path (a mounted app matched already: its
    endpoint is the app itself, whose path lies below the mount)."""
    path = route_path(scope)
    return [route for route in routes
            if isinstance(route, Mount)
            or ((regex := getattr(route, "path_regex", None)) is not None and regex.match(path))]


def _single(routes: list[Any]) -> Any:
    """The route, when the candidates agree on one template."""
    if not routes or len({getattr(route, "path", None) for route in routes}) > 1:
        return None
    return routes[0]


def route_path(scope: MutableMapping[str, Any]) -> str:
    """The path below the innermost mount that matched (routes' templates are relative)."""
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path) and path[len(root_path):][:1] == "/":
        return path[len(root_path):]
    return path


def _table(routes: Iterable[Any]) -> dict[int, list[Any]]:
    table: dict[int, list[Any]] = {}
    for route, endpoint in _endpoints(routes):
        table.setdefault(id(endpoint), []).append(route)
    return table


def _endpoints(routes: Iterable[Any]) -> Iterable[tuple[Any, Any]]:
    """(route, the endpoint it puts in the scope), through mounts: a mount of routes hands
    over to them (their templates are relative; the caller adds the mount's prefix), a mount
    of a plain app is its own route."""
    for route in routes:
        if isinstance(route, Mount):
            inner = route.routes
            if inner:
                yield from _endpoints(inner)
            else:
                yield route, route.app
        else:
            endpoint = getattr(route, "endpoint", None)
            if endpoint is not None:
                yield route, endpoint
