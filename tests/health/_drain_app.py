"""A minimal service for the SIGTERM test, run as a subprocess: health routes over http.server.

Usage: python _drain_app.py STORE_URL DRAIN_SECONDS. Prints the port once it listens.
"""

from __future__ import annotations

import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ragtrail import Settings
from ragtrail.health import FunctionCheck, HealthService, install_sigterm_handler
from ragtrail.instrument import Monitor


def main() -> None:
    store_url, drain_seconds = sys.argv[1], float(sys.argv[2])
    monitor = Monitor(Settings(store_url=store_url, health_check_interval=0.2))
    service = HealthService(monitor, [FunctionCheck(lambda: True, "ok")])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            response = service.respond("GET", path, query, dict(self.headers.items()))
            if response is None:
                self.send_error(404)
                return
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    service.start()
    # The default action of SIGTERM is the "previous handler": after the drain, the process ends.
    install_sigterm_handler(service, drain_seconds=drain_seconds)
    # The main thread below only waits, so the server's thread must leave SIGTERM to it
    # (docs/health.md, "Draining on SIGTERM"); ragtrail's own threads already do.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    print(server.server_address[1], flush=True)
    threading.Event().wait()  # the main thread only waits, and runs the signal handler


if __name__ == "__main__":
    main()
