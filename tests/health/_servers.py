"""Real HTTP on 127.0.0.1 for the health tests: a probe client that judges like the kubelet.
The dependency they make misbehave is ``ragtrail.demo.FakeOllama``."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], object], timeout: float = 5.0,
               interval: float = 0.01) -> None:
    """Poll ``predicate`` until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@contextmanager
def service_process(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``python *args`` with stdout piped for its handshake lines; killed if still running."""
    process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


def kubelet_probe(url: str, timeout: float = 1.0) -> bool:
    """One probe as the kubelet does it: HTTP GET, success on 200-399, failure on timeout."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                           headers={"User-Agent": "kube-probe/1.31", "Accept": "*/*"})
        return 200 <= connection.getresponse().status < 400
    except OSError:
        return False
    finally:
        connection.close()


class Prober:
    """A kubelet probe loop's verdict: unhealthy after ``failure_threshold`` failures in a row,
    healthy again after ``success_threshold`` successes (probe settings of a Pod spec)."""

    def __init__(self, url: str, *, failure_threshold: int = 3, success_threshold: int = 1,
                 timeout: float = 1.0) -> None:
        self.url = url
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.timeout = timeout
        self.healthy = True
        self._failures = self._successes = 0

    def probe(self) -> bool:
        if kubelet_probe(self.url, self.timeout):
            self._failures, self._successes = 0, self._successes + 1
            if self._successes >= self.success_threshold:
                self.healthy = True
        else:
            self._successes, self._failures = 0, self._failures + 1
            if self._failures >= self.failure_threshold:
                self.healthy = False
        return self.healthy
