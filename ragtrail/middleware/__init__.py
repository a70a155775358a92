"""ASGI and WSGI middleware: correlation IDs, request spans and security events."""

from ragtrail.middleware._asgi import ASGIMiddleware
from ragtrail.middleware._wsgi import WSGIMiddleware

__all__ = ["ASGIMiddleware", "WSGIMiddleware"]
