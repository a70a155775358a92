"""Pure ASGI middleware: a correlation ID, a server span and security events per request.

No ``BaseHTTPMiddleware``: messages pass straight through, so streaming responses are never
buffered and background tasks keep their timing. Per-request state lives in a ``_Responder``
made for that request; the middleware instance holds only configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from operator import itemgetter
from time import time_ns
from typing import TYPE_CHECKING, Any, Literal

from starlette.routing import Mount

from ragtrail.middleware._binding import CoreBinding
from ragtrail.middleware._core import RequestHead
from ragtrail.middleware._django import ROUTE_KEY
from ragtrail.middleware._exchange import Exchange, with_echo
from ragtrail.middleware._inspection import (
    MAX_HEADER_BYTES,
    Finding,
    header_finding,
    unsafe_header_value,
)
from ragtrail.middleware._options import MiddlewareOptions
from ragtrail.middleware._routes import route_by_endpoint, route_path
from ragtrail.store import EXIT_FLUSH_TIMEOUT_S

if TYPE_CHECKING:
    from ragtrail.health import HealthCheck, HealthResponse, HealthService
    from ragtrail.instrument import Monitor

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("ragtrail.middleware")

_BODIES = {400: b"Bad Request", 413: b"Request body too large", 500: b"Internal Server Error"}
_TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")
_VALUE = itemgetter(1)
_SHUTDOWN_DONE = frozenset(("lifespan.shutdown.complete", "lifespan.shutdown.failed"))


class _BodyTooLarge(Exception):
    """Raised into the app by ``receive()`` once the streamed body passes the limit."""


class ASGIMiddleware:
    """Wrap any ASGI app; in Starlette or FastAPI, ``app.add_middleware(ASGIMiddleware)``.

    Settings come from the monitor (``ragtrail.configure()``; the current one when ``monitor``
    is None); a keyword argument given here wins. Lifespan and unknown scope types pass
    through untouched.

    >>> app.add_middleware(ASGIMiddleware, trusted_proxies=["10.0.0.0/8"])
    """

    def __init__(
        self,
        app: ASGIApp,
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":  # start the health checks with the app; messages untouched
                core = self._binding.current()
                if core is not None:
                    send = _flushing_at_shutdown(core.monitor, send)
            await self.app(scope, receive, send)
            return
        core = self._binding.current()
        if core is None:
            answer = None if kind != "http" else self._binding.switched_off_answer(
                scope.get("method", ""), route_path(scope))
            if answer is None:
                await self.app(scope, receive, send)
            else:
                await _send_switched_off(answer, send)
            return
        try:
            exchange = core.begin(_read_scope(scope, core.options), kind=kind)
        except Exception:  # instrumentation never breaks the request
            log.warning("ragtrail middleware could not read a request; passing it on",
                        exc_info=True)
            await self.app(scope, receive, send)
            return
        health = core.health
        if health is not None and exchange.head.app_path not in health.excluded_paths:
            health = None
        await _Responder(exchange, scope, receive, send, core.options).run(self.app, health)


async def _send_switched_off(response: HealthResponse, send: Send) -> None:
    """A probe route's answer while ragtrail is switched off: no span, no ID, no event."""
    headers = [(name.encode("latin-1"), value.encode("latin-1"))
               for name, value in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def _flushing_at_shutdown(monitor: Monitor, send: Send) -> Send:
    """``send`` for the lifespan, writing out ragtrail's queues before the app reports its
    shutdown done: uvicorn then re-raises SIGTERM, which ends the process without the exit
    handlers that would flush them (a pod stopped by Kubernetes lost its last records)."""
    async def send_after_flush(message: Message) -> None:
        if message["type"] in _SHUTDOWN_DONE:
            try:
                # The exit budget: what exit handlers would have spent, not more.
                budget = min(EXIT_FLUSH_TIMEOUT_S, monitor.settings.store_close_timeout)
                await asyncio.get_running_loop().run_in_executor(None, monitor.flush, budget)
            except Exception:  # a closed executor at exit: the message still goes out
                log.warning("ragtrail could not flush at lifespan shutdown", exc_info=True)
        await send(message)

    return send_after_flush


class _Responder:
    """One request's view of the protocol: wraps ``receive``/``send`` and ends the exchange."""

    __slots__ = (
        "_echo",
        "_limit",
        "_receive",
        "_received",
        "_root_path",
        "_send",
        "_swallow",
        "exchange",
        "scope",
        "started",
    )

    def __init__(self, exchange: Exchange, scope: Scope, receive: Receive, send: Send,
                 options: MiddlewareOptions) -> None:
        self.exchange = exchange
        self.scope = scope
        self._receive = receive
        self._send = send
        self._echo = (options.echo_header_asgi, exchange.correlation_id.encode("latin-1"))
        self._limit = options.max_body_bytes
        self._received = 0
        self._root_path = scope.get("root_path", "")
        self._swallow = False  # the middleware answered in the app's place: drop the app's
        self.started = False

    async def run(self, app: ASGIApp, health: HealthService | None) -> None:
        exchange = self.exchange
        error: BaseException | None = None
        websocket = self.scope["type"] == "websocket"
        try:
            if exchange.rejection is not None:
                await self._reject(exchange.rejection, websocket)
                return
            if health is not None and not websocket:
                head = exchange.head
                response = await health.respond_async(
                    head.method, head.app_path, head.query, self.scope.get("headers") or (),
                    client=exchange.client)
                if response is not None:
                    await self._answer_health(response)
                    return
            # A declared Content-Length was checked already; only a body of undeclared length
            # is counted, which includes a chunked one that also declares a length (servers
            # follow Transfer-Encoding then, RFC 9112 6.1).
            headers = exchange.head.headers
            counted = not websocket and ("content-length" not in headers
                                         or "transfer-encoding" in headers)
            receive = self.receive if counted else self._receive
            await app(self.scope, receive, self.send_websocket if websocket else self.send)
            if exchange.body_cut and not self.started:
                await self._answer(413)
        except _BodyTooLarge:
            if not self.started:
                await self._answer(413)
            elif not self._swallow:
                raise  # the app's response is cut short: the server must drop the connection
        except Exception as exc:
            # ASGI: the exception must reach the server. The client still gets the ID on a 500,
            # unless the app's own 500 handler will answer (answering first would drop it).
            error = exc
            if not self.started and not websocket and (
                    exchange.body_cut or not _app_answers_errors(self.scope)):
                await self._answer_failsafe(413 if exchange.body_cut else 500)
            raise
        finally:
            try:
                exchange.route = self._route()
            except Exception:  # an odd router or scope: no route, but the span still ends
                log.warning("ragtrail could not read the matched route", exc_info=True)
            exchange.finish(error)

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limit:
                self.exchange.cut_body()
                raise _BodyTooLarge
        return message

    async def send(self, message: Message) -> None:
        if self._swallow:
            return
        if message["type"] == "http.response.start":
            exchange = self.exchange
            if exchange.body_cut:  # the app caught the cut and answered: 413 wins
                await self._answer(413)
                return
            self.started = True
            headers = with_echo(message.get("headers", ()), self._echo)
            exchange.response_started(
                message["status"],
                _decoded(headers) if exchange.core.options.capture_headers else None)
            message = {**message, "headers": headers}
        elif not message.get("more_body") and (message["type"] == "http.response.body"
                                               or message["type"] == "http.response.pathsend"):
            await self._send(message)
            self.exchange.responded_ns = time_ns()
            return
        await self._send(message)

    async def send_websocket(self, message: Message) -> None:
        kind = message["type"]
        if not self.started:
            if kind == "websocket.accept" or kind == "websocket.http.response.start":
                self.started = True
                self.exchange.response_started(message.get("status", 101), None)
                message = {**message, "headers": with_echo(message.get("headers", ()),
                                                            self._echo)}
            elif kind == "websocket.close":  # closed before accepting: the server sends 403
                self.started = True
                self.exchange.response_started(403, None)
                # A refusal by policy (1008, or an app's own 4000-4999 code) is an access
                # failure; the router's close for a path it has no route for (1000) is not.
                code = message.get("code", 1000)
                self.exchange.no_verdict = code != 1008 and not 4000 <= code <= 4999
        await self._send(message)

    async def _answer(self, status: int) -> None:
        """Answer for the app: 400 (rejected), 413 (body too large) or 500 (it raised)."""
        self.started = self._swallow = True
        self.exchange.response_started(status, None)
        body = _BODIES[status]
        headers = [_TEXT_PLAIN, (b"content-length", str(len(body)).encode()), self._echo]
        if status == 413:  # the unread rest of the body makes the connection unusable
            headers.append((b"connection", b"close"))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        # HEAD: no content (RFC 9110 9.3.2), whether or not the server drops it (uvicorn does).
        await self._send({"type": "http.response.body",
                          "body": b"" if self.exchange.head.method == "HEAD" else body})

    async def _answer_health(self, response: HealthResponse) -> None:
        self.started = self._swallow = True
        exchange = self.exchange
        exchange.no_verdict = True
        exchange.response_started(response.status, None)
        headers = [(name.encode("latin-1"), value.encode("latin-1"))
                   for name, value in response.headers]
        headers.append(self._echo)
        await self._send({"type": "http.response.start", "status": response.status,
                          "headers": headers})
        await self._send({"type": "http.response.body", "body": response.body})

    async def _reject(self, status: int, websocket: bool) -> None:
        if websocket:  # closing before accepting makes the server answer 403 (ASGI spec)
            self.started = self._swallow = True
            self.exchange.response_started(403, None)
            await self._send({"type": "websocket.close", "code": 1008})
        else:
            await self._answer(status)

    async def _answer_failsafe(self, status: int) -> None:
        try:
            await self._answer(status)
        except Exception:  # the client is gone; the app's exception is what matters
            log.debug("ragtrail could not send the %d response", status, exc_info=True)

    def _route(self) -> str | None:
        """``http.route``: the template of the Starlette route that matched, mounts included,
        or the one ``DjangoRouteMiddleware`` handed over."""
        scope = self.scope
        handed = scope.get(ROUTE_KEY)  # first: a Django app mounted in Starlette knows better
        if isinstance(handed, str):
            return handed
        route = scope.get("route")
        if route is None:
            route = route_by_endpoint(scope)  # Starlette before 1.7 names no route
            if route is None:
                return None
        template = getattr(route, "path", None)
        if not isinstance(template, str):
            return None
        if isinstance(route, Mount):
            template = "/{path:path}"
        root_path, entry = scope.get("root_path", ""), self._root_path
        if root_path == entry:  # no mount on the way (most requests): the template as it is
            return template
        # A Mount puts its matched prefix in root_path; the inner router's route is relative.
        return (root_path[len(entry):] if root_path.startswith(entry) else "") + template


def _read_scope(scope: Scope, options: MiddlewareOptions) -> RequestHead:
    """The headers the options want (one pass), hostile header values, the target."""
    wanted = options.wanted_asgi
    capture = options.capture_headers
    raw_headers = scope.get("headers") or ()
    headers: dict[str, str] = {}
    captured: dict[str, list[str]] | None = {} if capture else None
    for name, value in raw_headers:
        key = wanted.get(name)
        if key is not None and value:
            text = value.decode("latin-1")
            if key not in headers:
                headers[key] = text
            elif key == "x-forwarded-for":  # RFC 9110 5.3: repeated lines form one list
                headers[key] += "," + text
            if captured is not None and key in capture:
                captured.setdefault(key, []).append(text)
    path: str = scope.get("path") or "/"
    client = scope.get("client")
    server = scope.get("server")
    return RequestHead(  # positional: this runs for every request
        scope.get("method", "GET"),
        path,
        route_path(scope) if scope.get("root_path") else path,
        scope.get("raw_path") or path.encode("utf-8", "surrogatepass"),
        scope.get("query_string") or b"",
        scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http"),
        scope.get("http_version") or "1.1",
        client[0] if client else None,
        (server[0], server[1]) if server and server[0] else None,
        headers,
        _header_findings(raw_headers) if options.security else [],
        captured,
    )


def _header_findings(raw_headers: Iterable[tuple[bytes, bytes]]) -> list[Finding]:
    """CR, LF, NUL or oversized values among the request headers.

    One search over the values joined by a space (which is never a finding) instead of one
    per header; only a request with a hit, or a large header block, is looked at header by
    header.
    """
    joined = b" ".join(map(_VALUE, raw_headers))  # no Python frame per request
    if len(joined) <= MAX_HEADER_BYTES and not unsafe_header_value(joined):
        return []
    findings: list[Finding] = []
    for name, value in raw_headers:
        if len(value) > MAX_HEADER_BYTES or unsafe_header_value(value):
            finding = header_finding(name.decode("latin-1"), value)
            if finding is not None:
                findings.append(finding)
    return findings


def _decoded(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def _app_answers_errors(scope: Scope) -> bool:
    """Whether a Starlette app around this middleware has its own handler for unhandled
    exceptions: Starlette's outermost layer, outside every ``add_middleware`` one, runs it and
    sends its answer only if no response was started."""
    handlers = getattr(scope.get("app"), "exception_handlers", None)
    return isinstance(handlers, dict) and (500 in handlers or Exception in handlers)
