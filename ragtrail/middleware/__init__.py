"""ASGI and WSGI middleware: correlation IDs, request spans, security events, health routes."""

from ragtrail.middleware._asgi import ASGIMiddleware
from ragtrail.middleware._django import DjangoRouteMiddleware
from ragtrail.middleware._endpoints import create_health_endpoints
from ragtrail.middleware._wsgi import WSGIMiddleware

__all__ = ["ASGIMiddleware", "DjangoRouteMiddleware", "WSGIMiddleware",
           "create_health_endpoints"]
