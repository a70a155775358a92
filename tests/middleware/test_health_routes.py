"""Health routes answered by the middleware itself, before the app (ASGI and WSGI)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from ragtrail.health import FunctionCheck, HealthService
from ragtrail.instrument import Monitor
from ragtrail.middleware import ASGIMiddleware, WSGIMiddleware

from ._support import (
    call_wsgi,
    only_span,
    request,
    stored_events,
    stored_spans,
    uvicorn_server,
    wait_until,
    wsgi_environ,
)


class _CountingApp:
    """A Starlette app with its own /health route, to show when the app is reached."""

    def __init__(self) -> None:
        self.calls = 0
        self.app = Starlette(routes=[Route("/health", self.own_health),
                                     Route("/", self.own_health)])

    async def own_health(self, request: Request) -> PlainTextResponse:
        self.calls += 1
        return PlainTextResponse("the app's own")


def _failing() -> bool:
    return False


def test_health_routes_never_reach_the_app(monitor: Monitor) -> None:
    """/health is answered by the middleware, with the ID, in application/health+json."""
    counting = _CountingApp()
    app = ASGIMiddleware(counting.app, monitor=monitor)
    reply = request(app, "/health", headers=[(b"x-request-id", b"kubelet-probe-1")])
    assert counting.calls == 0
    assert reply.status == 200
    assert reply.header("content-type") == "application/health+json"
    assert reply.header("x-request-id") == "kubelet-probe-1"
    assert json.loads(reply.body)["status"] == "pass"
    assert stored_spans(monitor) == []  # probes are excluded from spans
    request(app, "/")
    assert counting.calls == 1


def test_health_false_leaves_the_paths_to_the_app(monitor: Monitor) -> None:
    counting = _CountingApp()
    reply = request(ASGIMiddleware(counting.app, monitor=monitor, health=False), "/health")
    assert (counting.calls, reply.body) == (1, b"the app's own")


def test_readiness_failing_is_not_a_server_error(make_monitor: Any) -> None:
    """A 503 from /ready is the probe's answer, not an app failure: no server_error event."""
    monitor = make_monitor(health_check_interval=0.05)
    app = ASGIMiddleware(_CountingApp().app, monitor=monitor,
                         checks=[FunctionCheck(_failing, name="vector_index")])
    wait_until(lambda: request(app, "/ready").status == 503, 5, "readiness to fail")
    wait_until(lambda: stored_events(monitor, "dependency_unhealthy"), 5, "check event")
    assert stored_events(monitor, "server_error") == []


def test_detailed_route_failures_are_recorded_once(make_monitor: Any) -> None:
    """A wrong token is one authn_login_fail (the health service's), not one per layer."""
    monitor = make_monitor(api_token="s3cret-token-value")
    app = ASGIMiddleware(_CountingApp().app, monitor=monitor)
    reply = request(app, "/api/health/detailed",
                    headers=[(b"authorization", b"Bearer wrong-token-value")])
    assert reply.status == 401
    assert reply.header("x-request-id")
    events = stored_events(monitor, "authn_login_fail")
    assert [e.count for e in events] == [1]
    allowed = request(app, "/api/health/detailed",
                      headers=[(b"authorization", b"Bearer s3cret-token-value")])
    assert allowed.status == 200


def test_a_given_health_service_is_used(monitor: Monitor) -> None:
    service = HealthService(monitor, [], paths={"live": "/alive"})
    try:
        reply = request(ASGIMiddleware(_CountingApp().app, monitor=monitor, health=service),
                        "/alive")
    finally:
        service.stop()
    assert reply.status == 200


def test_the_routes_the_service_answers_get_no_span_whatever_their_paths(
        monitor: Monitor) -> None:
    """Moved health routes are left out of spans where they are; the app's own /health,
    no longer a health route, gets its span; exclude_paths adds to them, never replaces."""
    counting = _CountingApp()
    service = HealthService(monitor, [], paths={"live": "/alive"})
    try:
        app = ASGIMiddleware(counting.app, monitor=monitor, health=service,
                             exclude_paths=["/"])
        for path in ("/alive", "/ready", "/health", "/"):
            assert request(app, path).status in (200, 503)
    finally:
        service.stop()
    assert counting.calls == 2
    assert [s.attributes["url.path"] for s in stored_spans(monitor)] == ["/health"]


def test_health_and_checks_together_are_refused(monitor: Monitor) -> None:
    service = HealthService(monitor, [])
    with pytest.raises(ValueError, match="checks"):
        ASGIMiddleware(_CountingApp().app, health=service,
                       checks=[FunctionCheck(_failing, name="x")])
    service.stop()


def test_wsgi_serves_the_health_routes_too(monitor: Monitor) -> None:
    flask_app = Flask("health-tests")
    calls: list[str] = []

    @flask_app.get("/health")
    def own() -> str:
        calls.append("app")
        return "the app's own"

    app = WSGIMiddleware(flask_app.wsgi_app, monitor=monitor)
    reply = call_wsgi(app, wsgi_environ("/health", headers={"X-Request-ID": "wsgi-probe-01"}))
    assert calls == []
    assert reply.status == "200 OK"
    assert reply.header("X-Request-ID") == "wsgi-probe-01"
    assert reply.header("content-type") == "application/health+json"
    head = call_wsgi(app, wsgi_environ("/health", method="HEAD"))
    assert (head.status, head.body) == ("200 OK", b"")


def test_health_routes_are_relative_to_a_mount(monitor: Monitor) -> None:
    """Mounted under a prefix (a Starlette Mount, ASGI root_path, WSGI SCRIPT_NAME), the
    health routes sit below it like the app's own routes: the prefix's /ready is served and
    gets no span, while url.path keeps the prefix."""
    counting = _CountingApp()
    outer = Starlette(routes=[Mount("/api", app=ASGIMiddleware(counting.app, monitor=monitor))])
    assert request(outer, "/api/ready").header("content-type") == "application/health+json"
    assert request(outer, "/api/health").header("content-type") == "application/health+json"
    assert counting.calls == 0
    assert stored_spans(monitor) == []
    assert request(outer, "/api/").status == 200
    assert only_span(monitor).attributes["url.path"] == "/api/"

    flask_app = Flask("mounted")
    wsgi = WSGIMiddleware(flask_app.wsgi_app, monitor=monitor)
    reply = call_wsgi(wsgi, wsgi_environ("/health", SCRIPT_NAME="/svc"))
    assert (reply.status, reply.header("content-type")) == ("200 OK", "application/health+json")


@pytest.mark.network
def test_health_routes_under_uvicorn_with_a_root_path(monitor: Monitor) -> None:
    """``uvicorn --root-path /svc`` behind an ingress that strips /svc: the kubelet's
    ``GET /health`` is the middleware's (uvicorn puts the root path in front of the path)."""
    counting = _CountingApp()
    app = ASGIMiddleware(counting.app, monitor=monitor)
    with uvicorn_server(app, root_path="/svc") as base, \
            httpx.Client(base_url=base, timeout=5) as client:
        reply = client.get("/health")
        assert reply.headers["content-type"] == "application/health+json"
        assert client.get("/").text == "the app's own"
    assert counting.calls == 1


@pytest.mark.network
def test_readiness_under_uvicorn_follows_the_checks(make_monitor: Any) -> None:
    """Checks start with the app's lifespan; /ready reports them while / reaches the app."""
    monitor = make_monitor(health_check_interval=0.05)
    healthy = {"value": True}
    counting = _CountingApp()
    app = ASGIMiddleware(counting.app, monitor=monitor,
                         checks=[FunctionCheck(lambda: healthy["value"], name="index")])
    with uvicorn_server(app) as base, httpx.Client(base_url=base, timeout=5) as client:
        wait_until(lambda: client.get("/ready").status_code == 200, 5, "ready")
        healthy["value"] = False
        wait_until(lambda: client.get("/ready").status_code == 503, 5, "not ready")
        assert client.get("/health").status_code == 200  # liveness ignores dependencies
        assert client.get("/").text == "the app's own"
    assert counting.calls == 1
