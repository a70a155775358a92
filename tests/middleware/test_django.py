"""``DjangoRouteMiddleware``: Django requests get ``http.route`` and a span named after their
URL pattern, under a real waitress (WSGI) and a real uvicorn (ASGI) on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import django
import httpx
import pytest
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import ResolverMatch, include, path, re_path

from ragtrail.instrument import Monitor
from ragtrail.middleware import ASGIMiddleware, DjangoRouteMiddleware, WSGIMiddleware

from ._support import stored_spans, uvicorn_server, waitress_server

pytestmark = pytest.mark.network


def _item(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(f"item {pk}")


def _user(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse(f"user {name}")


def _legacy(request: HttpRequest, year: str) -> HttpResponse:
    return HttpResponse(f"year {year}")


def _index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("index")


def _boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("django view failed")


async def _later(request: HttpRequest, n: int) -> HttpResponse:
    return HttpResponse(f"later {n}")


urlpatterns = [
    path("", _index),
    path("items/<int:pk>", _item),
    path("api/", include([path("users/<slug:name>/", _user)])),
    re_path(r"^legacy/(?P<year>[0-9]{4})/$", _legacy),
    path("boom", _boom),
    path("later/<int:n>", _later),
]

# Request path -> the span's name: the method and route (OTel HTTP semconv), the method alone
# when no pattern matched.
NAMES = {
    "/": "GET /",
    "/items/7": "GET /items/<int:pk>",
    "/api/users/ann/": "GET /api/users/<slug:name>/",
    "/legacy/2024/": "GET /legacy/(?P<year>[0-9]{4})/$",
    "/later/3": "GET /later/<int:n>",
    "/nowhere": "GET",
}


@pytest.fixture(scope="module", autouse=True)
def _django_project() -> None:
    """This module is the project's URLconf; Django's settings are the process's, set once."""
    if not settings.configured:
        settings.configure(
            ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1", "testserver"],
            MIDDLEWARE=["ragtrail.middleware.DjangoRouteMiddleware"], DATABASES={},
            INSTALLED_APPS=[], LOGGING_CONFIG=None)  # leave logging to pytest
        django.setup()


@contextmanager
def _serve(server: str, monitor: Monitor, prefix: str = "") -> Iterator[httpx.Client]:
    """The Django project behind ragtrail's middleware under a real server; a client for it
    (``prefix``: the script name the server gives the app, as an ingress path would)."""
    if server == "waitress":
        with waitress_server(WSGIMiddleware(WSGIHandler(), monitor=monitor, health=False),
                             url_prefix=prefix) as base, \
                httpx.Client(base_url=base + prefix, timeout=10) as client:
            yield client
    else:
        # Django answers no lifespan messages: uvicorn's default "auto" carries on without.
        with uvicorn_server(ASGIMiddleware(ASGIHandler(), monitor=monitor, health=False),
                            root_path=prefix, lifespan="auto") as base, \
                httpx.Client(base_url=base, timeout=10) as client:
            yield client


def _named(monitor: Monitor) -> dict[str, tuple[str, Any]]:
    """url.path -> (span name, http.route) of every stored request span."""
    return {span.attributes["url.path"]: (span.name, span.attributes.get("http.route"))
            for span in stored_spans(monitor)}


@pytest.mark.parametrize("server", ["waitress", "uvicorn"])
def test_django_spans_are_named_after_the_matched_url_pattern(server: str,
                                                              monitor: Monitor) -> None:
    """path(), include() and re_path() patterns, sync and async views; a 404 has no route."""
    with _serve(server, monitor) as client:
        statuses = {url: client.get(url).status_code for url in NAMES}
    assert statuses == {**dict.fromkeys(NAMES, 200), "/nowhere": 404}
    assert _named(monitor) == {
        url: (name, name.partition(" ")[2] or None) for url, name in NAMES.items()}


@pytest.mark.parametrize("server", ["waitress", "uvicorn"])
def test_a_failing_django_view_keeps_its_route(server: str, monitor: Monitor,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Django answers the view's exception with its 500 page; the span says which route."""
    caplog.set_level(logging.CRITICAL, logger="django.request")  # Django logs the traceback
    with _serve(server, monitor) as client:
        assert client.get("/boom").status_code == 500
    (span,) = stored_spans(monitor)
    assert (span.name, span.attributes["http.route"], span.status) == (
        "GET /boom", "/boom", "error")


@pytest.mark.parametrize("server", ["waitress", "uvicorn"])
def test_the_script_name_leads_the_django_route(server: str, monitor: Monitor) -> None:
    """An app served below /svc (waitress url_prefix, uvicorn --root-path) reports the same
    route under both servers, matching its url.path."""
    with _serve(server, monitor, prefix="/svc") as client:
        assert client.get("/items/7").text == "item 7"
    assert _named(monitor) == {"/svc/items/7": ("GET /svc/items/<int:pk>",
                                                "/svc/items/<int:pk>")}


def test_under_asgi_django_runs_the_middleware_without_a_thread_hop(
        caplog: pytest.LogCaptureFixture) -> None:
    """Django adapts a sync-only middleware to its async handler by running it in a thread,
    per request, and says so at DEBUG when settings.DEBUG is on: never for this one."""
    caplog.set_level(logging.DEBUG, logger="django.request")
    with override_settings(DEBUG=True):
        ASGIHandler()
    assert [r.getMessage() for r in caplog.records if "adapted" in r.getMessage()] == []


def test_without_ragtrail_around_it_the_middleware_changes_nothing() -> None:
    """Django's own test client (no WSGI middleware to read the route): the same answers."""
    client = Client()
    assert (client.get("/items/7").content, client.get("/nowhere").status_code) == (
        b"item 7", 404)


def test_a_request_that_cannot_carry_the_route_still_gets_its_response(
        caplog: pytest.LogCaptureFixture) -> None:
    """A request from a handler of neither kind (no environ, no scope): a warning, never an
    error in the app."""
    request = HttpRequest()
    request.resolver_match = ResolverMatch(_index, (), {}, route="")
    answer = HttpResponse("index")
    assert DjangoRouteMiddleware(lambda _request: answer)(request) is answer
    assert [r.getMessage() for r in caplog.records] == [
        "ragtrail could not read the Django route"]


def test_django_mounted_in_starlette_reports_its_own_route(monitor: Monitor) -> None:
    """A Django project under a Starlette ``Mount``: the span names Django's pattern (with the
    mount's prefix), not the mount's catch-all ``/dj/{path:path}``."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = Starlette(routes=[Mount("/dj", app=ASGIHandler())])
    with uvicorn_server(ASGIMiddleware(app, monitor=monitor, health=False)) as base, \
            httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/dj/items/7").text == "item 7"
    assert _named(monitor) == {"/dj/items/7": ("GET /dj/items/<int:pk>", "/dj/items/<int:pk>")}


def test_an_asgiref_too_old_for_the_middleware_names_the_django_it_needs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """asgiref before 3.6 (Django before 4.2) lacks the coroutine markers: simulated with a
    stand-in ``asgiref.sync`` module (an old release cannot be installed beside Django 4.2+)."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "asgiref.sync", types.ModuleType("asgiref.sync"))
    with pytest.raises(ImportError, match=r"Django 4\.2 or later"):
        DjangoRouteMiddleware(lambda request: None)
