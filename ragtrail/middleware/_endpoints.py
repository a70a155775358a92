"""``create_health_endpoints(app)``: the seed's one-call set-up, now backed by the middleware.

The seed added health routes to the app itself; ragtrail serves them from its middleware so a
probe never reaches the app. This helper adds that middleware to a Starlette/FastAPI app
(``app.add_middleware``) or wraps a Flask app's ``wsgi_app``. It lives in the middleware
package because it needs both parts, and the health package must not import the middleware
(docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ragtrail.health import HealthCheck, HealthService
from ragtrail.middleware._asgi import ASGIMiddleware
from ragtrail.middleware._wsgi import WSGIMiddleware

if TYPE_CHECKING:
    from ragtrail.instrument import Monitor

__all__ = ["create_health_endpoints"]


def create_health_endpoints(
    app: Any,
    checks: Iterable[HealthCheck] = (),
    *,
    monitor: Monitor | None = None,
    health: HealthService | None = None,
    **middleware_options: Any,
) -> HealthService:
    """Serve the health routes (and correlation IDs, spans, events) for ``app``.

    Returns the ``HealthService``, e.g. for ``install_sigterm_handler``. Keyword options go to
    the middleware (``trusted_proxies=``, ``max_body_bytes=``, ...).

    >>> app = Starlette(routes=[...])  # doctest: +SKIP
    >>> create_health_endpoints(app, [HTTPCheck(OLLAMA + "/api/tags", name="ollama")])
    """
    if health is None:
        health = HealthService(monitor, checks)
    elif checks:
        raise TypeError("give checks= to the HealthService passed as health=, not to both")
    options = {"monitor": monitor, "health": health, **middleware_options}
    if callable(getattr(app, "add_middleware", None)):  # Starlette, FastAPI
        app.add_middleware(ASGIMiddleware, **options)
    elif callable(getattr(app, "wsgi_app", None)):  # Flask
        app.wsgi_app = WSGIMiddleware(app.wsgi_app, **options)
    else:
        raise TypeError(f"create_health_endpoints needs a Starlette/FastAPI app (add_middleware) "
                        f"or a Flask app (wsgi_app); got {type(app).__name__}. Other ASGI/WSGI "
                        "apps: wrap them in ragtrail.middleware.ASGIMiddleware/WSGIMiddleware.")
    return health
