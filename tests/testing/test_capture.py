"""``ragtrail.testing``: an application's tests read what ragtrail recorded, in isolation."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import flask
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import ragtrail
from ragtrail import SecurityEvent, monitored
from ragtrail.middleware import ASGIMiddleware, WSGIMiddleware
from ragtrail.testing import Trail, capture


@monitored(kind="retriever", capture_args=True)
def retrieve(query: str, api_key: str) -> list[str]:
    return [f"doc about {query}"]


@monitored(kind="llm")
def generate(prompt: str) -> str:
    raise TimeoutError("the model did not answer")


def test_a_block_s_spans_and_events_are_read_back_as_stored() -> None:
    """Spans and events come back as the store keeps them: redacted, oldest first."""
    with capture(service_name="rag-api") as trail:
        retrieve("refund policy", api_key="sk-live-0123456789abcdef")
        with pytest.raises(TimeoutError):
            generate("hello")
        ragtrail.security_event("authz_fail", "medium", "tests", "role missing")
    span = trail.span("retrieve")
    assert (span.kind, span.status) == ("retriever", "ok")
    assert trail.monitor.settings.service_name == "rag-api"  # keyword arguments are settings
    assert span.attributes["input.value"] == {
        "query": "refund policy", "api_key": "[REDACTED]"}
    assert [(s.name, s.status) for s in trail.spans()] == [
        ("retrieve", "ok"), ("generate", "error")]
    assert [s.name for s in trail.spans(errors_only=True)] == ["generate"]
    assert [e.event_type for e in trail.events(event_type="authz_fail")] == ["authz_fail"]


def test_span_names_what_there_is_when_the_span_is_missing() -> None:
    with capture() as trail:
        retrieve("a", api_key="k")
        retrieve("b", api_key="k")
    recorded = r"found 0; spans recorded: \['retrieve', 'retrieve'\]"
    with pytest.raises(AssertionError, match=recorded):
        trail.span("generate")
    with pytest.raises(AssertionError, match="expected one span named 'retrieve', found 2"):
        trail.span("retrieve")


def test_the_app_s_monitor_gets_none_of_the_block_and_comes_back(tmp_path: Path) -> None:
    """An app that configured ragtrail at import keeps its monitor, untouched, and its store
    never sees what the block recorded."""
    app_monitor = ragtrail.configure(store_url=f"sqlite:///{tmp_path / 'app.db'}")
    retrieve("before", api_key="k")
    with capture() as trail:
        assert ragtrail.get_monitor() is trail.monitor
        retrieve("inside", api_key="k")
    assert ragtrail.get_monitor() is app_monitor
    retrieve("after", api_key="k")
    assert app_monitor.flush(10)
    assert len(app_monitor.store.spans(name="retrieve")) == 2
    assert len(trail.spans()) == 1


def test_the_environment_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell or CI settings never send a test's records to a real store,
    collector or webhook."""
    app_store = tmp_path / "from-environment.db"
    monkeypatch.setenv("RAGTRAIL_STORE_URL", f"sqlite:///{app_store}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("RAGTRAIL_ALERT_WEBHOOK_URL", "https://hooks.example/T0/B0/x")
    with capture() as trail:
        ragtrail.security_event("config_read", "critical", "tests", "paged?")
        settings = trail.monitor.settings
    assert (settings.otlp_endpoint, settings.alert_webhook_url) == (None, None)
    assert [e.severity.name for e in trail.events()] == ["CRITICAL"]
    assert trail.monitor.health()["exporter"] is None  # no export pipeline at all
    assert not app_store.exists()


def test_alert_callbacks_are_called_inside_the_block() -> None:
    """``@ragtrail.on_alert`` callbacks run as in production, so a test can check a page."""
    paged: list[SecurityEvent] = []
    ragtrail.on_alert(min_severity="high")(paged.append)
    with capture():
        ragtrail.security_event("malicious_file_upload", "high", "tests", "zip bomb")
    assert [e.event_type for e in paged] == ["malicious_file_upload"]


def test_the_temporary_store_is_removed_with_the_trail() -> None:
    """Readable after the block (where a test's asserts go), deleted with the ``Trail``."""
    with capture() as trail:
        retrieve("a", api_key="k")
    database = Path(trail.monitor.settings.store_url.removeprefix("sqlite:///"))
    assert database.exists()
    assert [s.name for s in trail.spans()] == ["retrieve"]
    del trail
    gc.collect()
    assert not database.parent.exists()


def test_a_configure_inside_the_block_is_kept() -> None:
    """The block replaced the monitor itself: that one stays current afterwards."""
    with capture() as trail, pytest.MonkeyPatch.context() as patch:
        patch.chdir(Path(trail.monitor.settings.store_url.removeprefix("sqlite:///")).parent)
        replacement = ragtrail.configure(store_url="sqlite:///replacement.db", enabled=False)
    assert ragtrail.get_monitor() is replacement


def test_middleware_requests_are_captured() -> None:
    """A request through the ASGI middleware (no ``monitor=``: it follows the current one)."""
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(retrieve(request.query_params["q"], api_key="k")[0])

    app = ASGIMiddleware(Starlette(routes=[Route("/search", hello)]))

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/search?q=refunds",
                                    headers={"X-Request-ID": "req-0123456789"})

    with capture() as trail:
        response = asyncio.run(get())
    assert response.text == "doc about refunds"
    server, step = trail.span("GET /search"), trail.span("retrieve")
    assert (server.kind, server.attributes["http.response.status_code"]) == ("server", 200)
    assert (step.parent_span_id, step.correlation_id) == (server.span_id, "req-0123456789")


def test_flask_requests_are_captured_once_the_response_is_closed() -> None:
    """The WSGI span ends when the response is closed (PEP 3333), which Werkzeug's test
    client leaves to the caller: closed inside the block, the request is in the trail."""
    flask_app = flask.Flask("capture-tests")
    flask_app.add_url_rule("/search", "search",
                           lambda: retrieve(flask.request.args["q"], api_key="k")[0])
    flask_app.wsgi_app = WSGIMiddleware(flask_app.wsgi_app)  # type: ignore[method-assign]
    with capture() as trail, flask_app.test_client().get("/search?q=refunds") as response:
        assert response.text == "doc about refunds"
    server, step = trail.span("GET /search"), trail.span("retrieve")
    assert (server.kind, step.parent_span_id) == ("server", server.span_id)


def test_the_captrail_fixture(captrail: Trail) -> None:
    """Registered with pytest by ragtrail's ``pytest11`` entry point."""
    retrieve("fixture", api_key="k")
    assert captrail.span("retrieve").status == "ok"
    assert os.fspath(captrail.monitor.settings.store_url).endswith("capture.db")
