"""The server span's attributes, from the request and the response: OTel HTTP semantic
conventions, with every client-controlled text escaped, redacted and bounded.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ragtrail.instrument._redaction import REDACTED, Redactor
from ragtrail.middleware._inspection import ascii_int, printable

if TYPE_CHECKING:
    from ragtrail.middleware._core import RequestHead

__all__ = ["KNOWN_METHODS", "META_PATH_LIMIT", "add_captured_headers", "clean_text",
           "request_attributes"]

# OTel HTTP semantic conventions: other methods are reported as "_OTHER" (cardinality).
KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"))
_PATH_LIMIT, _VALUE_LIMIT, META_PATH_LIMIT = 2048, 512, 256
# Header names whose values are secrets whatever the allowlist says (X-Functions-Key,
# Ocp-Apim-Subscription-Key, X-Shopify-Hmac-Sha256 as well as Authorization).
_SECRET_HEADER = re.compile(
    r"auth|cookie|token|secret|passw|pwd|api[-_]?key|[-_]key$|hmac|session|signature|credential",
    re.IGNORECASE)
_HOSTS: dict[str, tuple[str, int | None]] = {}
_HOSTS_CACHED = 256


def request_attributes(head: RequestHead, agent: str | None, host: str | None,
                       redactor: Redactor) -> dict[str, Any]:
    """The attributes every request with this method, path, agent and host shares."""
    # OTel semantic conventions for HTTP server spans (semconv 1.26+ attribute names).
    # Client-controlled text is escaped (printable); the common clean case skips the call.
    # A secret in a path, agent or host must not reach the store: each is redacted.
    method = head.method
    attributes: dict[str, Any] = {
        "http.request.method": method if method in KNOWN_METHODS else "_OTHER",
        "url.path": clean_text(redactor, head.path, _PATH_LIMIT),
        "url.scheme": head.scheme,
        "network.protocol.version": head.protocol,
    }
    if method not in KNOWN_METHODS:
        attributes["http.request.method_original"] = printable(method, 64)
    if agent:
        attributes["user_agent.original"] = clean_text(redactor, agent, _VALUE_LIMIT)
    server = head.server if host is None else _HOSTS.get(host) or _split_host(host)
    if server is not None:
        attributes["server.address"] = clean_text(redactor, server[0], _VALUE_LIMIT)
        if server[1] is not None:
            attributes["server.port"] = server[1]
    return attributes


def add_captured_headers(attributes: dict[str, Any], prefix: str,
                         headers: dict[str, list[str]], redactor: Redactor) -> None:
    """Allowlisted headers, secrets redacted by name (the header words above, then the
    redactor's rule for keys: X-Private-Key, Passphrase, X-Sig) and, for the rest, by value."""
    for name, values in headers.items():
        attributes[prefix + name] = (
            [REDACTED] * len(values) if _SECRET_HEADER.search(name)
            else [printable(str(redactor.redact_attribute(name, value)), _VALUE_LIMIT)
                  for value in values])


def clean_text(redactor: Redactor, text: str, limit: int) -> str:
    """``text`` printable, redacted and cut to ``limit`` characters, for the store."""
    if len(text) <= limit and text.isprintable():
        redacted = redactor.redact(text, max_bytes=4 * limit + 64)  # never cut by the budget
        return redacted if isinstance(redacted, str) else str(redacted)
    # Escaped with room to spare, then redacted before it is cut (redact_text scans past the
    # cut), so a secret crossing the cut is replaced whole, never half kept.
    return redactor.redact_text(printable(text, 2 * limit), limit=limit)


def _split_host(host: str) -> tuple[str, int | None] | None:
    """``Host`` as (name, port): ``example.com``, ``example.com:8080``, ``[::1]:8000``."""
    name, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        name, port = host[1:end], host[end + 2:] if end > 0 else ""
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    if not name:
        return None
    number = ascii_int(port) if len(port) <= 5 else None
    split = (printable(name, 255), number)
    if len(_HOSTS) < _HOSTS_CACHED:  # a service answers to a few names; clients send any
        _HOSTS[host] = split
    return split
