"""WSGI middleware (PEP 3333): the same per-request behaviour as the ASGI one, for Flask,
Django or any WSGI callable.

A WSGI response outlives ``__call__``: the server iterates the body and calls ``close()``
afterwards. So each request runs in its own copy of the context, entered again for every
chunk and for ``close()``, where the span ends. Nothing leaks into the server thread's context
even if a broken server never calls ``close()``.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ragtrail.middleware._binding import CoreBinding
from ragtrail.middleware._core import MiddlewareCore, RequestHead
from ragtrail.middleware._django import ROUTE_KEY
from ragtrail.middleware._exchange import Exchange, with_echo
from ragtrail.middleware._inspection import ascii_int
from ragtrail.middleware._options import MiddlewareOptions
from ragtrail.middleware._wsgi_bodies import BodyTooLarge, LimitedInput, ResponseBody, close
from ragtrail.middleware._wsgi_environ import read_environ

if TYPE_CHECKING:
    from ragtrail.health import HealthCheck, HealthService
    from ragtrail.instrument import Monitor

__all__ = ["WSGIMiddleware"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

log = logging.getLogger("ragtrail.middleware")

_BODIES = {400: b"Bad Request", 413: b"Request body too large", 500: b"Internal Server Error"}


class WSGIMiddleware:
    """Wrap any WSGI app; for Flask, ``app.wsgi_app = WSGIMiddleware(app.wsgi_app)``.

    Settings come from the monitor (``ragtrail.configure()``; the current one when ``monitor``
    is None); a keyword argument given here wins.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        monitor: Monitor | None = None,
        health: HealthService | Literal[False] | None = None,
        checks: Iterable[HealthCheck] = (),
        correlation_headers: Iterable[str] | None = None,
        trust_inbound: bool | None = None,
        trusted_proxies: Iterable[str] | None = None,
        max_body_bytes: int | None = None,
        reject_malicious: bool | None = None,
        exclude_paths: Iterable[str] | None = None,
        capture_headers: Iterable[str] = (),
        auth_failure_burst: tuple[int, float] = (10, 60.0),
    ) -> None:
        self.app = app
        self._binding = CoreBinding(monitor, {
            "correlation_headers": correlation_headers, "trust_inbound": trust_inbound,
            "trusted_proxies": trusted_proxies, "max_body_bytes": max_body_bytes,
            "reject_malicious": reject_malicious, "exclude_paths": exclude_paths,
            "capture_headers": capture_headers, "auth_failure_burst": auth_failure_burst,
        }, health, checks)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        core = self._binding.current()
        if core is None:
            answer = self._binding.switched_off_answer(environ.get("REQUEST_METHOD", ""),
                                                       environ.get("PATH_INFO", ""))
            if answer is None:
                return self.app(environ, start_response)
            start_response(_status_line(answer.status), answer.headers)
            return [answer.body]
        try:
            head = read_environ(environ, core.options)
        except Exception:  # instrumentation never breaks the request
            log.warning("ragtrail middleware could not read a request; passing it on",
                        exc_info=True)
            return self.app(environ, start_response)
        context = contextvars.copy_context()
        return context.run(_Responder.serve, self.app, environ, start_response, context, head,
                           core)


class _Responder:
    """One request: wraps ``start_response`` and ``wsgi.input``; ends the exchange once."""

    __slots__ = ("_echo", "_finished", "_start_response", "body_sent", "context", "environ",
                 "exchange", "replaced")

    def __init__(self, exchange: Exchange, environ: dict[str, Any],
                 start_response: StartResponse, context: contextvars.Context,
                 options: MiddlewareOptions) -> None:
        self.exchange = exchange
        self.environ = environ
        self._start_response = start_response
        self.context = context
        self._echo = (options.echo_header, exchange.correlation_id)
        self._finished = False
        self.body_sent = False  # a non-empty chunk went out: the headers are on the wire
        self.replaced = False  # the middleware answered in the app's place

    @classmethod
    def serve(cls, app: WSGIApp, environ: dict[str, Any], start_response: StartResponse,
              context: contextvars.Context, head: RequestHead, core: MiddlewareCore
              ) -> Iterable[bytes]:
        """Run inside the request's own context: begin, call the app, wrap its body."""
        try:
            exchange = core.begin(head)
        except Exception:
            log.warning("ragtrail middleware could not start a request; passing it on",
                        exc_info=True)
            return app(environ, start_response)
        options = core.options
        responder = cls(exchange, environ, start_response, context, options)
        if exchange.rejection is not None:
            return responder.answer(exchange.rejection)
        health = core.health
        if health is not None and head.app_path in health.excluded_paths:
            response = responder._health(health)
            if response is not None:
                return response
        if "transfer-encoding" in head.headers:  # a body of undeclared length
            environ["wsgi.input"] = LimitedInput(environ["wsgi.input"],
                                                  options.max_body_bytes, exchange)
        try:
            result = app(environ, responder.start_response)
        except Exception as exc:
            return responder.failed(exc)
        except BaseException:
            responder.finish(None)
            raise
        if responder.replaced:
            close(result)
            return responder.answer(413)
        return ResponseBody(result, responder)

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], object]:
        exchange = self.exchange
        if exchange.body_cut or self.replaced:
            # The app answered after its body was cut (Flask turns the error into a 500):
            # swallow that answer; serve() sends 413 in its place.
            self.replaced = True
            return _discard
        code = _STATUS_CODES.get(status)
        if code is None:
            code = _status_code(status)
        if code:
            exchange.response_started(
                code, headers if exchange.core.options.capture_headers else None)
        exchange.route = _route(self.environ)
        headers = with_echo(headers, self._echo)
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    def _health(self, health: HealthService) -> Iterable[bytes] | None:
        """The health service's answer for a health route (None: not one after all)."""
        exchange = self.exchange
        head = exchange.head
        headers = {key[5:].replace("_", "-").lower(): value
                   for key, value in self.environ.items() if key.startswith("HTTP_")}
        try:
            response = health.respond(head.method, head.app_path, head.query, headers,
                                      client=exchange.client)
        except Exception as exc:
            return self.failed(exc)
        if response is None:
            return None
        exchange.no_verdict = True
        try:
            exchange.response_started(response.status, None)
            self._start_response(_status_line(response.status), [*response.headers, self._echo])
        finally:
            self.finish(None)
        return [response.body]

    def answer(self, status: int, exc_info: ExcInfo | None = None) -> list[bytes]:
        """Answer for the app, and finish: 400 (rejected) or 413 (body too large)."""
        try:
            return [self._send_plain(status, exc_info)]
        finally:
            self.finish(None)

    def _send_plain(self, status: int, exc_info: ExcInfo | None) -> bytes:
        """Start the middleware's own answer; the content to send (none for HEAD, RFC 9110
        9.3.2: servers leave that to the app, and a body after a HEAD answer would be read
        as the start of the next response on the connection)."""
        body = _BODIES[status]
        # No "Connection: close" for an unread body: PEP 3333 leaves hop-by-hop headers
        # to the server, which knows whether it buffered the body already (waitress does).
        headers = [("Content-Type", "text/plain; charset=utf-8"),
                   ("Content-Length", str(len(body))), self._echo]
        self.exchange.response_started(status, None)
        if exc_info is None:
            self._start_response(_status_line(status), headers)
        else:  # PEP 3333: replaces headers the app set but the server has not sent
            self._start_response(_status_line(status), headers, exc_info)
        return b"" if self.exchange.head.method == "HEAD" else body

    def failed(self, error: Exception) -> Iterable[bytes]:
        """The app raised before its body went out: answer 500 with the ID, then re-raise.

        PEP 3333 lets an app replace unsent headers by calling ``start_response`` again with
        ``exc_info``. The exception is raised again from the body, after the 500, so the
        server still logs it as the app's failure. The limit's own exception (the app did
        not catch it) is no app failure: it gets the 413.
        """
        cut = isinstance(error, BodyTooLarge)
        status = 413 if self.exchange.body_cut else 500
        try:
            body = self._send_plain(status, (type(error), error, error.__traceback__))
        except Exception:  # headers already sent (the app used write()): nothing to replace
            self.finish(None if cut else error)
            raise error from None
        if cut:
            self.finish(None)
            return [body]
        self.finish(error)
        return _then_raise(body, error)

    def finish(self, error: BaseException | None) -> None:
        if not self._finished:
            self._finished = True
            self.exchange.finish(error)


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _route(environ: dict[str, Any]) -> str | None:
    """``http.route``: the one ``DjangoRouteMiddleware`` handed over, else the rule of the
    Werkzeug request Flask put in the environ, if any."""
    handed = environ.get(ROUTE_KEY)
    if isinstance(handed, str):
        return handed
    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
    template = getattr(rule, "rule", None)
    if not isinstance(template, str):
        return None
    script_name: str = environ.get("SCRIPT_NAME", "")
    return script_name + template


_STATUS_CODES: dict[str, int] = {}
_STATUS_CODES_CACHED = 256  # apps answer with a few dozen status lines


def _status_code(status: str) -> int:
    """The code of a WSGI status line ("200 OK"), 0 if it has none; remembered."""
    code = ascii_int(status[:3]) or 0
    if len(_STATUS_CODES) < _STATUS_CODES_CACHED:
        _STATUS_CODES[status] = code
    return code


def _then_raise(body: bytes, error: BaseException) -> Iterator[bytes]:
    yield body
    raise error


def _discard(data: bytes) -> None:
    """The ``write()`` given to an app whose answer the middleware replaced."""
