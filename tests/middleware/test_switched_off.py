"""RAGTRAIL_ENABLED=false must not take the service down: the middleware records nothing, but
still answers the liveness and readiness routes, so the probes never reach the app (whose 404
would make Kubernetes restart and unroute every pod)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ragtrail import create_health_endpoints
from ragtrail.health import HealthService
from ragtrail.middleware import ASGIMiddleware, WSGIMiddleware

from ._support import request, uvicorn_server, waitress_server, wsgi_environ

_PROBES = ("/health", "/livez", "/ready", "/readyz")


def _starlette() -> Starlette:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"app:{request.url.path}", status_code=404)

    return Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "HEAD", "POST"])])


def _flask() -> Flask:
    app = Flask(__name__)

    @app.route("/", defaults={"path": ""}, methods=["GET", "HEAD", "POST"])
    @app.route("/<path:path>", methods=["GET", "HEAD", "POST"])
    def echo(path: str) -> tuple[str, int]:
        return f"app:/{path}", 404

    return app


def test_switched_off_asgi_answers_the_probe_routes_and_nothing_else(
        make_monitor: Any, tmp_path: Path) -> None:
    """Each probe path: 200 pass (health+json, no-store) without a store file, a span or an
    ID; HEAD without a body; other methods 405; detailed routes and the rest reach the app."""
    monitor = make_monitor(enabled=False, store_url=f"sqlite:///{tmp_path / 'off.db'}")
    app = ASGIMiddleware(_starlette(), monitor=monitor)
    for path in _PROBES:
        reply = request(app, path)
        assert (reply.status, reply.header("content-type"), reply.header("cache-control")) == (
            200, "application/health+json", "no-store"), path
        document = json.loads(reply.body)
        assert document["status"] == "pass"
        assert "RAGTRAIL_ENABLED=false" in document["notes"][0]
        assert reply.header("x-request-id") is None
        head = request(app, path, method="HEAD")
        assert (head.status, head.body) == (200, b"")
        assert request(app, path, method="POST").status == 405
    for path in ("/api/health/detailed", "/api/monitoring", "/other", "/health/x"):
        reply = request(app, path)
        assert (reply.status, reply.body) == (404, f"app:{path}".encode()), path
    assert not (tmp_path / "off.db").exists()


def test_switched_off_wsgi_answers_the_probe_routes_and_nothing_else(
        make_monitor: Any, tmp_path: Path) -> None:
    """The same for WSGI (Flask), in-process."""
    monitor = make_monitor(enabled=False, store_url=f"sqlite:///{tmp_path / 'off.db'}")
    app = WSGIMiddleware(_flask().wsgi_app, monitor=monitor)
    for path in _PROBES:
        status, headers, body = _call_wsgi(app, path)
        assert (status, headers["content-type"], json.loads(body)["status"]) == (
            "200 OK", "application/health+json", "pass"), path
        assert _call_wsgi(app, path, "HEAD")[::2] == ("200 OK", b"")
        assert _call_wsgi(app, path, "POST")[0] == "405 Method Not Allowed"
    assert _call_wsgi(app, "/api/health/detailed")[::2] == (
        "404 NOT FOUND", b"app:/api/health/detailed")
    assert not (tmp_path / "off.db").exists()


def test_switched_off_readiness_still_fails_while_draining(make_monitor: Any) -> None:
    """The service given to the middleware (``create_health_endpoints``, for
    ``install_sigterm_handler``) still takes the pod out of rotation on SIGTERM."""
    monitor = make_monitor(enabled=False)
    app = _starlette()
    service = create_health_endpoints(app, monitor=monitor)
    try:
        service.begin_draining()
        ready = request(app, "/ready")
        assert (ready.status, json.loads(ready.body)["output"]) == (503, "draining")
        assert request(app, "/health").status == 200
    finally:
        service.stop()


def test_custom_probe_paths_are_answered_switched_off(make_monitor: Any) -> None:
    """The health service's own paths are the ones answered; health=False answers none."""
    monitor = make_monitor(enabled=False)
    service = HealthService(monitor, paths={"live": "/alive", "ready": "/in-rotation"})
    try:
        app = ASGIMiddleware(_starlette(), monitor=monitor, health=service)
        assert [request(app, p).status for p in ("/alive", "/in-rotation", "/health")] == [
            200, 200, 404]
        bare = ASGIMiddleware(_starlette(), monitor=monitor, health=False)
        assert request(bare, "/health").body == b"app:/health"
    finally:
        service.stop()


@pytest.mark.network
@pytest.mark.parametrize("server", ["uvicorn", "waitress"])
def test_probes_over_http_pass_under_a_real_server_switched_off(
        make_monitor: Any, server: str) -> None:
    """A kubelet-like prober (1 s timeout, success on 200-399) over loopback: every probe
    passes with ragtrail switched off, where before the app's 404 failed them all."""
    monitor = make_monitor(enabled=False)
    serving = (uvicorn_server(ASGIMiddleware(_starlette(), monitor=monitor))
               if server == "uvicorn"
               else waitress_server(WSGIMiddleware(_flask().wsgi_app, monitor=monitor)))
    with serving as base, httpx.Client(base_url=base, timeout=1.0) as client:
        for path in _PROBES:
            assert 200 <= client.get(path).status_code < 400, path
        assert client.get("/anything").text == "app:/anything"


def _call_wsgi(app: Any, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    started: list[Any] = []
    body = b"".join(app(wsgi_environ(path, method=method),
                        lambda status, headers, exc_info=None: started.append((status, headers))))
    status, headers = started[0]
    return status, {name.lower(): value for name, value in headers}, body


def test_readiness_fails_once_the_monitor_is_shut_down(make_monitor: Any) -> None:
    """A monitor shut down while the app still serves (ragtrail.shutdown(), configure() of
    another) stops its health service: readiness then fails "stopped" as it documents, and
    is never turned into a fresh 200 pass; liveness keeps passing."""
    for health in ("default", "given"):
        monitor = make_monitor()
        service = HealthService(monitor) if health == "given" else None
        app = ASGIMiddleware(_starlette(), monitor=monitor, health=service)
        assert request(app, "/health").status == 200, health
        monitor.shutdown(timeout=10)
        ready = request(app, "/ready")
        assert (ready.status, json.loads(ready.body)["status"]) == (503, "fail"), health
        assert request(app, "/health").status == 200, health


def test_a_stopped_health_service_fails_readiness_switched_off(make_monitor: Any) -> None:
    """``HealthService.stop()``: "readiness answers 503 from then on", switched off too."""
    monitor = make_monitor(enabled=False)
    service = HealthService(monitor)
    app = WSGIMiddleware(_flask().wsgi_app, monitor=monitor, health=service)
    assert _call_wsgi(app, "/ready")[0] == "200 OK"
    service.stop()
    status, _, body = _call_wsgi(app, "/ready")
    assert (status, json.loads(body)["output"]) == ("503 Service Unavailable", "stopped")


def test_readiness_fails_for_a_monitor_shut_down_before_any_request(make_monitor: Any) -> None:
    """Shut down before the first request (no health service was ever built): readiness
    fails "stopped" and says ragtrail was shut down, not switched off."""
    monitor = make_monitor()
    app = ASGIMiddleware(_starlette(), monitor=monitor)
    monitor.shutdown(timeout=10)
    ready = request(app, "/ready")
    document = json.loads(ready.body)
    assert (ready.status, document["output"]) == (503, "stopped")
    assert document["notes"] == ["ragtrail was shut down: no health check runs"]
    assert request(app, "/health").status == 200


def test_a_failure_building_the_switched_off_answers_never_breaks_a_request(
        make_monitor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected failure (nothing known raises there): requests, probes included, still reach
    the app."""
    def broken(*args: Any) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr("ragtrail.middleware._binding.SwitchedOffProbes", broken)
    app = ASGIMiddleware(_starlette(), monitor=make_monitor(enabled=False))
    assert [request(app, path).body for path in ("/health", "/x")] == [b"app:/health", b"app:/x"]
