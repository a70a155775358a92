"""End to end: the health routes through ragtrail's middleware under real servers on 127.0.0.1,
probed like the kubelet."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from middleware._support import uvicorn_server, waitress_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ragtrail.demo import FakeOllama
from ragtrail.health import FunctionCheck, HealthService, HTTPCheck
from ragtrail.instrument import Monitor
from ragtrail.middleware import ASGIMiddleware, create_health_endpoints

from ._servers import Prober, kubelet_probe, service_process, wait_until
from .conftest import ServiceFactory

pytestmark = pytest.mark.network
UVICORN_APP = Path(__file__).with_name("_uvicorn_app.py")


def starlette_app() -> Starlette:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/", home)])


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Run an ASGI app under a real uvicorn on 127.0.0.1; returns its base URL."""
    with ExitStack() as servers:
        yield lambda app: servers.enter_context(uvicorn_server(app))


def _check_status(base: str, name: str) -> str | None:
    """One check's status as ``/ready?verbose`` shows it."""
    checks = httpx.get(f"{base}/ready?verbose", timeout=2).json().get("checks", {})
    statuses = [entries[0]["status"] for key, entries in checks.items()
                if key.partition(":")[0] == name]
    return statuses[0] if statuses else None


def test_200_concurrent_probes_answer_while_a_dependency_hangs(
        tmp_path: Path, ollama: FakeOllama) -> None:
    """With Ollama wedged, 200 simultaneous kubelet probes all succeed within their 1 s.
    The app runs under uvicorn in a process of its own, as in a pod: the 200 client threads
    here do not share its interpreter lock."""
    with service_process(str(UVICORN_APP), f"sqlite:///{tmp_path / 'audit.db'}", "0",
                         ollama.tags_url) as process:
        assert process.stdout is not None
        base = f"http://127.0.0.1:{int(process.stdout.readline())}"
        assert process.stdout.readline().strip() == "started"
        wait_until(lambda: _check_status(base, "ollama") == "pass", timeout=10)
        ollama.mode = "hang"
        wait_until(lambda: _check_status(base, "ollama") == "fail", timeout=5)  # timed out
        barrier = threading.Barrier(200)

        def one_probe(_: int) -> tuple[bool, float]:
            barrier.wait()
            started = time.perf_counter()
            return kubelet_probe(f"{base}/ready", timeout=1.0), time.perf_counter() - started

        with ThreadPoolExecutor(max_workers=200) as pool:
            outcomes = list(pool.map(one_probe, range(200)))
        assert [ok for ok, _ in outcomes] == [True] * 200
        assert max(seconds for _, seconds in outcomes) < 1.0
        assert ollama.requests >= 2  # the check kept trying the hung dependency meanwhile


def test_kubelet_takes_the_pod_out_and_back_without_restarting_it(
        make_service: ServiceFactory, ollama: FakeOllama, serve: Any) -> None:
    """A critical dependency hanging fails readiness (failureThreshold reached), never
    liveness; when it recovers readiness passes again."""
    service = make_service(HTTPCheck(ollama.tags_url, name="ollama"))
    base = serve(ASGIMiddleware(starlette_app(), monitor=service.monitor, health=service))
    readiness = Prober(f"{base}/ready", failure_threshold=3)
    liveness = Prober(f"{base}/health", failure_threshold=1)
    wait_until(readiness.probe, timeout=10)
    ollama.mode = "hang"
    live_history = []

    def out_of_rotation() -> bool:
        live_history.append(liveness.probe())
        return not readiness.probe()

    wait_until(out_of_rotation, timeout=5, interval=0.05)
    ollama.mode = "ok"
    ollama.release()
    wait_until(readiness.probe, timeout=5, interval=0.05)
    assert all(live_history)
    assert liveness.probe()


def test_sigterm_under_uvicorn_drains_then_shuts_down(tmp_path: Path) -> None:
    """The documented set-up: SIGTERM fails /ready at once, /health stays 200 and the app
    keeps serving for drain_seconds, then uvicorn's graceful shutdown runs."""
    with service_process(str(UVICORN_APP), f"sqlite:///{tmp_path / 'audit.db'}", "5") as process:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        assert process.stdout.readline().strip() == "started"
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: kubelet_probe(f"{base}/ready"), timeout=10)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        wait_until(lambda: not kubelet_probe(f"{base}/ready"), timeout=4.0)
        assert kubelet_probe(f"{base}/health")
        assert kubelet_probe(f"{base}/")  # the app itself still serves during the drain
        assert process.stdout.readline().strip() == "stopped"
        process.wait(10)
        assert time.monotonic() - signalled >= 4.9


def test_create_health_endpoints_on_starlette(monitor: Monitor, serve: Any) -> None:
    """The seed's one call: health routes served by the middleware, the app's own routes
    untouched."""
    app = starlette_app()
    service = create_health_endpoints(app, [FunctionCheck(lambda: True, "index")],
                                      monitor=monitor)
    try:
        base = serve(app)
        wait_until(lambda: kubelet_probe(f"{base}/ready"), timeout=10)
        assert [c.name for c in service.checks] == ["index", "store"]
        assert kubelet_probe(f"{base}/")
    finally:
        service.stop()


def test_create_health_endpoints_on_flask_under_waitress(monitor: Monitor) -> None:
    """The same for Flask: app.wsgi_app is wrapped; probes are answered under a real WSGI
    server, HEAD included."""
    app = Flask(__name__)

    @app.get("/")
    def home() -> str:
        return "hello"

    service = create_health_endpoints(app, [FunctionCheck(lambda: True, "index")],
                                      monitor=monitor)
    try:
        with waitress_server(app) as base:
            # Polled with a deadline, not probed once: this checks the wiring, and one probe's
            # 1 s budget can run out on a busy CI machine (probe latency is tested above).
            wait_until(lambda: kubelet_probe(f"{base}/ready"), timeout=10)
            wait_until(lambda: kubelet_probe(f"{base}/livez"), timeout=10)
            wait_until(lambda: kubelet_probe(f"{base}/"), timeout=10)
            head = httpx.head(f"{base}/health", timeout=10)
            assert (head.status_code, head.headers["content-type"], head.content) == (
                200, "application/health+json", b"")
            assert httpx.get(f"{base}/", timeout=10).text == "hello"
    finally:
        service.stop()


def test_create_health_endpoints_is_public() -> None:
    """The seed's entry point is importable from ``ragtrail`` and ``ragtrail.middleware``."""
    import ragtrail
    import ragtrail.middleware

    assert ragtrail.create_health_endpoints is create_health_endpoints
    assert ragtrail.middleware.create_health_endpoints is create_health_endpoints


def test_create_health_endpoints_refuses_other_objects(monitor: Monitor) -> None:
    """Anything that is neither Starlette-like nor Flask-like gets a TypeError saying what to
    use instead."""
    with pytest.raises(TypeError, match="ASGIMiddleware/WSGIMiddleware"):
        create_health_endpoints(object(), monitor=monitor)
    service = HealthService(monitor)
    with pytest.raises(TypeError, match="not to both"):
        create_health_endpoints(starlette_app(), [FunctionCheck(lambda: True, "x")],
                                health=service)
