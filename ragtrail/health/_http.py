"""An HTTP dependency check (e.g. Ollama's ``GET /api/tags``) on a raw asyncio connection.

asyncio rather than ``requests`` in a thread: the runner's timeout then really cancels the
request (socket closed, nothing left running), which is what keeps a hanging dependency from
accumulating stuck threads. Only the status line is read; proxies are not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from ragtrail.health._check import CheckResult, HealthCheck

__all__ = ["HTTPCheck"]

_MAX_STATUS_LINE = 8192


class HTTPCheck(HealthCheck):
    """GET ``url`` and expect ``expect_status``; observed value is the response time in ms.

    >>> ollama = HTTPCheck("http://127.0.0.1:11434/api/tags", name="ollama", critical=True)
    >>> ollama.key
    'ollama:responseTime'
    """

    def __init__(
        self,
        url: str,
        expect_status: int | Collection[int] = 200,
        *,
        name: str | None = None,
        critical: bool = True,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        warn_after_ms: float | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"HTTPCheck needs an http:// or https:// URL; got {url!r}")
        super().__init__(name or _name_from_host(parts.hostname), critical=critical,
                         timeout=timeout, measurement="responseTime", component_type="component")
        self.url = url
        self.expect_status = (frozenset((expect_status,)) if isinstance(expect_status, int)
                              else frozenset(expect_status))
        self.warn_after_ms = warn_after_ms
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" \
            else None
        host_header = f"[{self._host}]" if ":" in self._host else self._host
        if parts.port:
            host_header += f":{parts.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {host_header}", "Connection: close",
                 "Accept: application/json", "User-Agent: ragtrail-health"]
        for header, value in (headers or {}).items():
            if any(c in header + value for c in "\r\n"):
                raise ValueError(f"header {header!r} contains CR or LF")
            lines.append(f"{header}: {value}")
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def check(self) -> CheckResult:
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=self._ssl, limit=_MAX_STATUS_LINE)
        try:
            writer.write(self._request)
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        elapsed_ms = round((time.perf_counter() - started) * 1000.0, 1)
        code = _status_code(status_line)
        if code is None:
            return CheckResult("fail", "the server did not answer with an HTTP status line",
                               observed_value=elapsed_ms, observed_unit="ms")
        if code not in self.expect_status:
            expected = ", ".join(str(s) for s in sorted(self.expect_status))
            return CheckResult("fail", f"HTTP {code}, expected {expected}",
                               observed_value=elapsed_ms, observed_unit="ms")
        if self.warn_after_ms is not None and elapsed_ms > self.warn_after_ms:
            return CheckResult("warn", f"slow: {elapsed_ms:g} ms, above {self.warn_after_ms:g} ms",
                               observed_value=elapsed_ms, observed_unit="ms")
        return CheckResult("pass", observed_value=elapsed_ms, observed_unit="ms")


def _name_from_host(host: str) -> str:
    """``ollama`` for ollama, ``1`` for ::1: check names allow letters, digits, _ . -."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", host).strip("-_.")[:64] or "http"


def _status_code(line: bytes) -> int | None:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])
