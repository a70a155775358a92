"""Django's matched URL pattern as the request span's ``http.route``.

Django resolves the URL inside its own handler, out of sight of the WSGI environ and ASGI
scope the ragtrail middleware reads; Starlette and Flask leave their route there. This Django
middleware puts the pattern back where the ragtrail middleware around the app finds it: in the
environ (WSGI) or the scope (ASGI) the request came with, under ``ROUTE_KEY``. Django (and
its asgiref) is imported only when Django loads the class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["ROUTE_KEY", "DjangoRouteMiddleware"]

log = logging.getLogger("ragtrail.middleware")

ROUTE_KEY = "ragtrail.route"


class DjangoRouteMiddleware:
    """Give Django requests their route: spans named ``GET /items/<int:pk>``.

    List it in ``MIDDLEWARE`` (anywhere) of an app wrapped in ``WSGIMiddleware`` or
    ``ASGIMiddleware``. It runs sync or async as the handler does, so under ASGI it costs no
    thread hop.

    >>> MIDDLEWARE = ["ragtrail.middleware.DjangoRouteMiddleware", ...]
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        try:
            from asgiref.sync import iscoroutinefunction, markcoroutinefunction
        except ImportError:  # asgiref before 3.6: Django before 4.2
            raise ImportError("ragtrail's DjangoRouteMiddleware needs Django 4.2 or later "
                              "(asgiref 3.6 or later)") from None

        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:  # Django then awaits this instance (its own middleware do the same)
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._call_async(request)
        try:
            return self.get_response(request)
        finally:  # the view may have raised; the route it matched still names the span
            _hand_over(request)

    async def _call_async(self, request: Any) -> Any:
        try:
            return await self.get_response(request)
        finally:
            _hand_over(request)


def _hand_over(request: Any) -> None:
    """Put the request's route (script prefix, then the pattern) in its environ or scope.

    No pattern matched (a 404), no route. ``re_path`` patterns keep their regex, without the
    leading ``^`` Django itself drops when it joins included patterns.
    """
    try:
        route = getattr(request.resolver_match, "route", None)
        if not isinstance(route, str):
            return
        carrier = getattr(request, "scope", None)  # ASGIRequest; a WSGIRequest has environ
        if carrier is None:
            carrier = request.environ
        prefix: str = request.META.get("SCRIPT_NAME", "")
        carrier[ROUTE_KEY] = f"{prefix.rstrip('/')}/{route.removeprefix('^')}"
    except Exception:  # instrumentation never breaks the request
        log.warning("ragtrail could not read the Django route", exc_info=True)
