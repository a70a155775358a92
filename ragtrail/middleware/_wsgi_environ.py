"""What a WSGI environ (PEP 3333) says about a request, as the core's ``RequestHead``."""

from __future__ import annotations

from typing import Any

from ragtrail.middleware._core import RequestHead
from ragtrail.middleware._inspection import (
    MAX_HEADER_BYTES,
    Finding,
    ascii_int,
    header_finding,
    unsafe_header_text,
)
from ragtrail.middleware._options import MiddlewareOptions

__all__ = ["read_environ"]


def read_environ(environ: dict[str, Any], options: MiddlewareOptions) -> RequestHead:
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



def _text(value: str) -> str:
    """A PEP 3333 "native string" (bytes as latin-1) as the UTF-8 text it carries."""
    return value.encode("latin-1", "replace").decode("utf-8", "replace")

