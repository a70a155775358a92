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
from ragtrail.middleware._core import Exchange, MiddlewareCore, RequestHead, with_echo
from ragtrail.middleware._inspection import (
    MAX_HEADER_BYTES,
    Finding,
    ascii_int,
    header_finding,
    unsafe_header_text,
)
from ragtrail.middleware._options import MiddlewareOptions

if TYPE_CHECKING:
    from ragtrail.health import HealthCheck, HealthService
    from ragtrail.instrument import Monitor

__all__ = ["WSGIMiddleware"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

log = logging.getLogger("ragtrail.middleware")

_BODIES = {400: b"Bad Request", 413: b"Request body too large", 500: b"Internal Server Error"}


class _BodyTooLarge(Exception):
    """Raised into the app by ``wsgi.input`` once the undeclared body passes the limit."""


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
            return self.app(environ, start_response)
        try:
            head = _read_environ(environ, core.options)
        except Exception:  # instrumentation never breaks the request
            log.warning("ragtrail middleware could not read a request; passing it on",
                        exc_info=True)
            return self.app(environ, start_response)
        context = contextvars.copy_context()
        return context.run(_Responder.serve, self.app, environ, start_response, context, head,
                           core)


class _Responder:
    """One request: wraps ``start_response`` and ``wsgi.input``; ends the exchange once."""

    __slots__ = ("_context", "_echo", "_finished", "_start_response", "body_sent", "environ",
                 "exchange", "replaced")

    def __init__(self, exchange: Exchange, environ: dict[str, Any],
                 start_response: StartResponse, context: contextvars.Context,
                 options: MiddlewareOptions) -> None:
        self.exchange = exchange
        self.environ = environ
        self._start_response = start_response
        self._context = context
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
            return responder._answer(exchange.rejection)
        health = core.health
        if health is not None and head.app_path in health.excluded_paths:
            response = responder._health(health)
            if response is not None:
                return response
        if "transfer-encoding" in head.headers:  # a body of undeclared length
            environ["wsgi.input"] = _LimitedInput(environ["wsgi.input"],
                                                  options.max_body_bytes, exchange)
        try:
            result = app(environ, responder.start_response)
        except Exception as exc:
            return responder._failed(exc)
        except BaseException:
            responder.finish(None)
            raise
        if responder.replaced:
            _close(result)
            return responder._answer(413)
        return _Body(result, responder)

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
        exchange.route = _flask_route(self.environ)
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
            return self._failed(exc)
        if response is None:
            return None
        exchange.no_verdict = True
        try:
            exchange.response_started(response.status, None)
            self._start_response(_status_line(response.status), [*response.headers, self._echo])
        finally:
            self.finish(None)
        return [response.body]

    def _answer(self, status: int, exc_info: ExcInfo | None = None) -> list[bytes]:
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

    def _failed(self, error: Exception) -> Iterable[bytes]:
        """The app raised before its body went out: answer 500 with the ID, then re-raise.

        PEP 3333 lets an app replace unsent headers by calling ``start_response`` again with
        ``exc_info``. The exception is raised again from the body, after the 500, so the
        server still logs it as the app's failure. The limit's own exception (the app did
        not catch it) is no app failure: it gets the 413.
        """
        cut = isinstance(error, _BodyTooLarge)
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


class _Body:
    """The app's response body, iterated and closed inside the request's context."""

    __slots__ = ("_iterator", "_pending", "_responder", "_result")

    def __init__(self, result: Iterable[bytes], responder: _Responder) -> None:
        self._result = result
        self._responder = responder
        self._iterator: Iterator[bytes] | None = None
        self._pending: Iterator[bytes] | None = None

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        if self._pending is not None:
            return next(self._pending)
        responder = self._responder
        run = responder._context.run
        try:
            if self._iterator is None:
                self._iterator = run(iter, self._result)
            chunk = run(next, self._iterator)
        except StopIteration:
            if not responder.replaced:
                raise
            chunk = b""
        except Exception as exc:
            if responder.body_sent:
                run(responder.finish, exc)
                raise
            self._pending = iter(run(responder._failed, exc))
            return next(self._pending)
        if responder.replaced:  # a generator app answered after its body was cut: 413
            self._pending = iter(run(responder._answer, 413))
            return next(self._pending)
        if chunk:
            responder.body_sent = True
        return chunk

    def close(self) -> None:
        """PEP 3333: the server calls this once done, even when the client went away."""
        self._responder._context.run(_close_and_finish, self._result, self._responder)


class _LimitedInput:
    """``wsgi.input`` for a body of undeclared length: raises once it passes the limit."""

    __slots__ = ("_exchange", "_input", "_left")

    def __init__(self, stream: Any, limit: int, exchange: Exchange) -> None:
        self._input = stream
        self._left = limit
        self._exchange = exchange

    def read(self, size: int | None = -1) -> bytes:
        # Never ask for more than one byte past the limit, so an endless body is not buffered.
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._count(self._input.read(want))

    def readline(self, size: int | None = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._count(self._input.readline(want))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def _count(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0:
            self._exchange.cut_body()
            raise _BodyTooLarge
        return data


def _read_environ(environ: dict[str, Any], options: MiddlewareOptions) -> RequestHead:
    """The headers the options want, hostile header values, the target.

    PEP 3333 gives header values as str (a server joins repeated headers with commas).
    """
    get = environ.get
    headers: dict[str, str] = {}
    for key, name in options.wanted_wsgi.items():
        value = get(key)
        if value:
            headers[name] = value
    capture = options.capture_headers
    captured = {name: [headers[name]] for name in capture if name in headers} if capture else None
    findings: list[Finding] = []
    if options.security:
        # One search over every text value of the environ, joined by a space (never a
        # finding): a C-level pass, where picking the HTTP_ keys out costs twice as much.
        # Only a hit or a large environ is looked at header by header.
        joined = " ".join(filter(str.__instancecheck__, environ.values()))
        if len(joined) > MAX_HEADER_BYTES or unsafe_header_text(joined):
            findings = _header_findings(environ)
    app_path: str = get("PATH_INFO", "")
    path: str = get("SCRIPT_NAME", "") + app_path
    uri: str = get("REQUEST_URI") or get("RAW_URI") or ""
    # The undecoded target when the server gives it (waitress, gunicorn, werkzeug);
    # PATH_INFO is decoded once already, which the inspection's decoding rounds allow for.
    raw_path = (uri.partition("?")[0] if uri.startswith("/") else path).encode(
        "latin-1", "replace")
    return RequestHead(  # positional: this runs for every request
        get("REQUEST_METHOD", "GET"),
        (path if path.isascii() else _text(path)) or "/",
        (app_path if app_path.isascii() else _text(app_path)) or "/",
        raw_path,
        get("QUERY_STRING", "").encode("latin-1", "replace"),
        get("wsgi.url_scheme", "http"),
        get("SERVER_PROTOCOL", "HTTP/1.1").removeprefix("HTTP/"),
        get("REMOTE_ADDR") or None,
        _server(get("SERVER_NAME"), get("SERVER_PORT", "")),
        headers,
        findings,
        captured,
    )


def _header_findings(environ: dict[str, Any]) -> list[Finding]:
    """CR, LF, NUL or oversized values among the request headers.

    Reached when the environ's text as a whole looked hostile or large, which may be the
    server's own variables (wsgiref copies the process environment into every request, a
    multi-line certificate included): the headers' values alone are searched first, then
    looked at one by one only if they hit."""
    headers = [(key, value) for key, value in environ.items()
               if (key.startswith("HTTP_") or key in _UNPREFIXED_HEADERS)
               and isinstance(value, str)]
    joined = " ".join([value for _, value in headers])
    if len(joined) <= MAX_HEADER_BYTES and not unsafe_header_text(joined):
        return []
    findings: list[Finding] = []
    for key, value in headers:
        if len(value) > MAX_HEADER_BYTES or unsafe_header_text(value):
            finding = header_finding(key.removeprefix("HTTP_").lower().replace("_", "-"), value)
            if finding is not None:
                findings.append(finding)
    return findings


# PEP 3333: the two request headers CGI names without the HTTP_ prefix.
_UNPREFIXED_HEADERS = frozenset(("CONTENT_TYPE", "CONTENT_LENGTH"))
_SERVERS: dict[tuple[str, str], tuple[str, int | None]] = {}
_SERVERS_CACHED = 64  # a server answers to a few names (gunicorn takes them from Host)


def _server(name: str | None, port: str) -> tuple[str, int | None] | None:
    """(SERVER_NAME, SERVER_PORT as an int), remembered: every request repeats them."""
    if not name:
        return None
    key = (name, port)
    server = _SERVERS.get(key)
    if server is None:
        server = (name, ascii_int(port))
        if len(_SERVERS) < _SERVERS_CACHED:
            _SERVERS[key] = server
    return server


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _text(value: str) -> str:
    """A PEP 3333 "native string" (bytes as latin-1) as the UTF-8 text it carries."""
    return value.encode("latin-1", "replace").decode("utf-8", "replace")


def _flask_route(environ: dict[str, Any]) -> str | None:
    """``http.route`` from the Werkzeug request Flask put in the environ, if any."""
    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
    template = getattr(rule, "rule", None)
    if not isinstance(template, str):
        return None
    script_name: str = environ.get("SCRIPT_NAME", "")
    return script_name + template


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _close_and_finish(result: Iterable[bytes], responder: _Responder) -> None:
    try:
        _close(result)
    finally:
        responder.finish(None)


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
