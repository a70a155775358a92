"""``http.route`` under Starlette releases before 1.7, which leave no ``scope["route"]``.

The installed Starlette names the route, so each endpoint here removes it from the scope it
shares with the middleware, as an older release would have left it: only ``scope["endpoint"]``
and ``scope["router"]``. (tox's ``py310-compat`` environment runs the whole middleware suite
on Starlette 0.37 as well.)
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match, Mount, Route

from ragtrail.instrument import Monitor
from ragtrail.middleware import ASGIMiddleware, _routes

from ._support import only_span, request, stored_spans


async def _unnamed(request: Request) -> PlainTextResponse:
    request.scope.pop("route", None)  # what Starlette < 1.7 leaves
    return PlainTextResponse("ok")


async def _other(request: Request) -> PlainTextResponse:
    request.scope.pop("route", None)
    return PlainTextResponse("other")


async def _files(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope.pop("route", None)
    await PlainTextResponse("file")(scope, receive, send)


def _app(monitor: Monitor) -> Starlette:
    api = Starlette(routes=[Route("/items/{item_id:int}", _unnamed)])
    app = Starlette(routes=[
        Route("/items/{item_id:int}", _unnamed),
        Route("/status", _other),
        Route("/ping", _other),
        Route("/a/{x}", _unnamed, methods=["POST"]),
        Route("/{y}/b", _unnamed, methods=["POST"]),
        Mount("/v2", app=api),
        Mount("/static", app=_files),
    ])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=False)
    return app


@pytest.mark.parametrize(("path", "route"), [
    ("/items/7", "/items/{item_id:int}"),
    ("/status", "/status"),  # one endpoint, two routes: told apart by the path
    ("/ping", "/ping"),
    ("/v2/items/7", "/v2/items/{item_id:int}"),  # the same endpoint inside a mount
    ("/static/css/site.css", "/static/{path:path}"),  # a mounted plain app
])
def test_the_route_is_found_by_its_endpoint(monitor: Monitor, path: str, route: str) -> None:
    reply = request(_app(monitor), path)
    assert reply.status == 200
    span = only_span(monitor)
    assert span.attributes["http.route"] == route
    assert span.name == f"GET {route}"


def test_routes_an_endpoint_shares_that_both_match_name_none(monitor: Monitor) -> None:
    """``/a/b`` matches ``/a/{x}`` and ``/{y}/b``, both calling one endpoint: rather no route
    than a wrong one."""
    reply = request(_app(monitor), "/a/b", method="POST")
    assert reply.status == 200
    span = only_span(monitor)
    assert "http.route" not in span.attributes
    assert span.name == "POST"


def test_a_route_added_after_the_first_request_is_found(monitor: Monitor) -> None:
    app = _app(monitor)
    request(app, "/items/1")
    app.router.routes.append(Route("/late", _other))
    request(app, "/late")
    assert sorted(span.attributes.get("http.route") for span in stored_spans(monitor)) == [
        "/items/{item_id:int}", "/late"]


class _PathlessRoute(BaseRoute):
    """A route of the app's own kind: an endpoint, but no path template or regex."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.endpoint = _other

    def matches(self, scope: Any) -> tuple[Match, dict[str, Any]]:
        if scope["path"].startswith(self.prefix):
            return Match.FULL, {"endpoint": self.endpoint}
        return Match.NONE, {}

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        scope.pop("route", None)
        await PlainTextResponse("custom")(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NotImplementedError


def test_a_route_without_a_path_template_names_none(monitor: Monitor) -> None:
    """A custom route class sharing an endpoint with a real route: the request is answered
    and traced, the custom route is never named, the real one still is."""
    app = Starlette(routes=[_PathlessRoute("/custom"), Route("/status", _other),
                            _PathlessRoute("/other")])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=False)
    assert request(app, "/custom/x").status == 200
    assert request(app, "/status").status == 200
    routes = sorted(str(span.attributes.get("http.route")) for span in stored_spans(monitor))
    assert routes == ["/status", "None"]
    # Such requests keep matching nothing: the endpoint's routes are not rebuilt for each.
    table = _routes._TABLES[id(app.router)][1]
    assert request(app, "/custom/y").status == 200
    assert request(app, "/other/z").status == 200
    assert _routes._TABLES[id(app.router)][1] is table


class _ExplodingRoute:
    @property
    def path(self) -> str:
        raise RuntimeError("a route object that fails when asked")


async def _odd(request: Request) -> PlainTextResponse:
    request.scope["route"] = _ExplodingRoute()
    return PlainTextResponse("odd")


def test_a_route_that_cannot_be_read_still_ends_the_span(monitor: Monitor) -> None:
    """Reading the route runs after the app; if it fails, the request and its span do not."""
    app = Starlette(routes=[Route("/odd", _odd)])
    app.add_middleware(ASGIMiddleware, monitor=monitor, health=False)
    assert request(app, "/odd").status == 200
    span = only_span(monitor)
    assert (span.name, "http.route" in span.attributes) == ("GET", False)
    assert span.attributes["http.response.status_code"] == 200
