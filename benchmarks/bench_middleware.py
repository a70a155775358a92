"""Throughput of hello-world apps with ragtrail's middleware against the bare app,
OpenTelemetry's middleware and asgi-correlation-id, all measured in one run.

    python benchmarks/bench_middleware.py [--rounds 5] [--requests 20000] [--seconds 3]
                                          [--no-servers]

In-process: the ASGI (Starlette) or WSGI (Flask) app is called directly in a loop with a
prebuilt scope/environ, no network. Under servers: each variant runs in its own uvicorn or
waitress process on 127.0.0.1 and is loaded with ``wrk`` (``apt-get install wrk``) or, when wrk
is missing, a small keep-alive asyncio client. Every row is the median over rounds; variants
alternate within a round so drift on a shared machine hits them alike.

Variants: ``bare``; ``ragtrail`` (ASGIMiddleware/WSGIMiddleware with a SQLite audit store in a
temporary directory, health routes served but not hit); ``otel`` (OpenTelemetry's
``OpenTelemetryMiddleware`` with an SDK TracerProvider, a BatchSpanProcessor and an exporter
that does nothing); ``asgi-correlation-id`` (ASGI only). The ragtrail store is flushed between
rounds, and its drop count is printed: a full queue drops spans, which would flatter ragtrail.

A hello world is ragtrail's worst case: the app does almost nothing, so everything the
middleware does shows. The last server table is a RAG-shaped endpoint instead (embed,
retrieve with captured arguments and 5 documents, rerank, generate; plain functions for bare,
``@monitored`` steps for ragtrail's variants): the cost of instrumenting a pipeline of five
steps per request. The steps themselves do no work here (no model, no vector search), so this
is still a worst case: a real RAG request spends milliseconds to seconds in its model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ASGI_VARIANTS = ("bare", "ragtrail", "ragtrail, no store", "otel", "asgi-correlation-id")
WSGI_VARIANTS = ("bare", "ragtrail", "ragtrail, no store", "otel")
RAG_VARIANTS = ("bare", "ragtrail", "ragtrail, no store")
VARIANTS = {"asgi": ASGI_VARIANTS, "wsgi": WSGI_VARIANTS, "rag": RAG_VARIANTS}
# Concurrent connections of the load generator. waitress (4 threads) falls into a state where
# its CPU per request quadruples when far more connections than threads wait: 8 keeps it sane.
CONNECTIONS = {"asgi": 32, "wsgi": 8, "rag": 32}


class _NoStore:
    """Stands in for the audit store in the "no store" rows, to show what the store costs."""

    def record(self, record: Any) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> None:
        pass

    def health(self) -> Any:  # the metrics sampler reads the queue depth every interval
        from ragtrail import StoreHealth

        return StoreHealth(status="ok", writer_alive=True, queue_depth=0, queue_capacity=0,
                           written=0, dropped=0, coalesced=0, last_error=None,
                           last_error_time_us=None, ring_usage={})


# -- the apps ------------------------------------------------------------------------------

def _monitor(store_dir: str, variant: str) -> Any:
    from ragtrail import Settings
    from ragtrail.instrument import Monitor

    name = "bench-no-store" if variant == "ragtrail, no store" else "bench"
    monitor = Monitor(Settings(store_url=f"sqlite:///{Path(store_dir) / name}.db",
                               service_name="bench-middleware"))
    if variant == "ragtrail, no store":
        monitor.store.close()
        monitor.store = _NoStore()  # type: ignore[assignment]
    return monitor


def _tracer_provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class NoOpExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoOpExporter()))
    return provider


def asgi_app(variant: str, store_dir: str) -> tuple[Any, Any]:
    """(app, ragtrail monitor or None) for one variant of the Starlette hello world."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("Hello, world!")

    app = Starlette(routes=[Route("/", hello)])
    monitor = None
    if variant.startswith("ragtrail"):
        from ragtrail.middleware import ASGIMiddleware

        monitor = _monitor(store_dir, variant)
        app.add_middleware(ASGIMiddleware, monitor=monitor)
    elif variant == "otel":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        app.add_middleware(OpenTelemetryMiddleware, tracer_provider=_tracer_provider())
    elif variant == "asgi-correlation-id":
        from asgi_correlation_id import CorrelationIdMiddleware

        app.add_middleware(CorrelationIdMiddleware)
    return app, monitor


def rag_app(variant: str, store_dir: str) -> tuple[Any, Any]:
    """A RAG-shaped Starlette endpoint: embed, retrieve (capturing its query and 5 documents
    of about 380 characters), rerank and generate, as ``@monitored`` steps for ragtrail's
    variants and plain functions for bare: 5 spans per request, one of them large."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    documents = [{"id": f"doc-{k}", "score": 0.9 - k / 10,
                  "text": "lorem ipsum dolor sit amet " * 14} for k in range(5)]

    def embed(text: str) -> list[float]:
        return [0.1] * 8

    def retrieve(query: str) -> list[dict[str, Any]]:
        embed(query)
        return documents

    def rerank(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return found[:3]

    def generate(query: str, context: list[dict[str, Any]]) -> str:
        return "an answer"

    monitor = None
    if variant.startswith("ragtrail"):
        import ragtrail
        from ragtrail.middleware import ASGIMiddleware

        monitor = ragtrail.configure(
            store_url=f"sqlite:///{Path(store_dir) / 'rag'}.db", service_name="bench-rag")
        if variant == "ragtrail, no store":
            monitor.store.close()
            monitor.store = _NoStore()  # type: ignore[assignment]
        monitored = ragtrail.monitored
        embed = monitored(kind="embedding")(embed)
        retrieve = monitored(kind="retriever", capture_args=True, capture_result=True)(retrieve)
        rerank = monitored(kind="reranker")(rerank)
        generate = monitored(kind="llm")(generate)

    async def ask(request: Request) -> JSONResponse:
        query = request.query_params.get("q", "which secrets must never reach the logs?")
        return JSONResponse({"answer": generate(query, rerank(retrieve(query)))})

    app = Starlette(routes=[Route("/", ask)])
    if monitor is not None:
        app.add_middleware(ASGIMiddleware, monitor=monitor)
    return app, monitor


def wsgi_app(variant: str, store_dir: str) -> tuple[Any, Any]:
    """(app, ragtrail monitor or None) for one variant of the Flask hello world."""
    from flask import Flask

    flask_app = Flask("bench")

    @flask_app.get("/")
    def hello() -> str:
        return "Hello, world!"

    monitor = None
    if variant.startswith("ragtrail"):
        from ragtrail.middleware import WSGIMiddleware

        monitor = _monitor(store_dir, variant)
        flask_app.wsgi_app = WSGIMiddleware(  # type: ignore[method-assign]
            flask_app.wsgi_app, monitor=monitor)
    elif variant == "otel":
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

        flask_app.wsgi_app = OpenTelemetryMiddleware(  # type: ignore[method-assign]
            flask_app.wsgi_app, tracer_provider=_tracer_provider())
    return flask_app, monitor


# -- in-process ----------------------------------------------------------------------------

_SCOPE = {
    "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
    "method": "GET", "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"",
    "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1.0"),
                (b"accept", b"*/*")],
}


async def _asgi_loop(app: Any, requests: int) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    # Starlette builds its middleware stack on the first call; the lifespan is not needed.
    for _ in range(requests):
        await app(dict(_SCOPE), receive, send)


def _environ() -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/", "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench/1.0", "HTTP_ACCEPT": "*/*", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }


def _wsgi_loop(app: Any, requests: int) -> None:
    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        return lambda data: None

    environ = _environ()
    for _ in range(requests):
        result = app(dict(environ), start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()


Sample = tuple[float, float]  # (requests per second of wall time, CPU microseconds per request)


def in_process(kind: str, rounds: int, requests: int, store_dir: str) -> dict[str, list[Sample]]:
    variants = VARIANTS[kind]
    build = asgi_app if kind == "asgi" else wsgi_app
    apps = {v: build(v, store_dir) for v in variants}
    results: dict[str, list[Sample]] = {v: [] for v in variants}
    for round_number in range(rounds + 1):  # round 0 warms up and is discarded
        for variant, (app, monitor) in apps.items():
            # process_time: CPU of every thread of this process, the store's writer included.
            started, cpu_started = time.perf_counter(), time.process_time()
            if kind == "asgi":
                asyncio.run(_asgi_loop(app, requests))
            else:
                _wsgi_loop(app, requests)
            if monitor is not None:
                # Sustained throughput: the writer must have stored this round's spans.
                monitor.store.flush(timeout=60)
            if round_number:
                results[variant].append((
                    requests / (time.perf_counter() - started),
                    (time.process_time() - cpu_started) / requests * 1e6))
    for variant, (_app, monitor) in apps.items():
        if monitor is not None:
            if variant == "ragtrail":
                _report_store(monitor, f"{kind} in-process")
            monitor.shutdown()
    return results


def _report_store(monitor: Any, where: str) -> None:
    health = monitor.store.health()
    print(f"  [{where}] ragtrail store: {health.written} rows written, "
          f"{health.dropped} dropped", file=sys.stderr)


# -- under servers -------------------------------------------------------------------------

def serve(kind: str, variant: str, port: int, store_dir: str) -> None:
    """Subprocess entry point: run one variant until the parent closes our stdin.

    (Not SIGTERM: uvicorn re-raises it after shutting down, which would skip the store
    report below.)
    """
    app, monitor = {"asgi": asgi_app, "wsgi": wsgi_app, "rag": rag_app}[kind](variant, store_dir)

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    try:
        if kind != "wsgi":
            import uvicorn

            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                   log_level="warning", access_log=False))
            _on_stdin_closed(lambda: setattr(server, "should_exit", True))
            server.run()
        else:
            import waitress

            # wrk keeps more requests queued than threads: that is the point, not news.
            logging.getLogger("waitress.queue").setLevel(logging.ERROR)
            signal.signal(signal.SIGTERM, stop)
            _on_stdin_closed(lambda: os.kill(os.getpid(), signal.SIGTERM))
            waitress.serve(app, host="127.0.0.1", port=port, threads=4, _quiet=True)
    finally:
        if monitor is not None:
            monitor.store.flush(timeout=60)
            if variant == "ragtrail":
                _report_store(monitor, f"{kind} server")
            monitor.shutdown()


def _on_stdin_closed(action: Callable[[], object]) -> None:
    def watch() -> None:
        sys.stdin.buffer.read()
        action()

    threading.Thread(target=watch, daemon=True).start()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"server on port {port} did not start within {timeout} s")


@contextlib.contextmanager
def servers(kind: str, variants: Sequence[str], store_dir: str
            ) -> Iterator[dict[str, tuple[int, int]]]:
    """One server process per variant: {variant: (port, pid)}."""
    ports: dict[str, tuple[int, int]] = {}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for variant in variants:
            port = _free_port()
            process = subprocess.Popen(
                [sys.executable, __file__, "--serve", f"{kind}:{variant}", "--port", str(port),
                 "--store-dir", str(Path(store_dir) / f"{kind}-{variant.replace(' ', '')}")],
                stdin=subprocess.PIPE)
            processes.append(process)
            ports[variant] = (port, process.pid)
        for port, _pid in ports.values():
            _wait_for_port(port)
        yield ports
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()  # the server's signal to stop and report
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _wrk(port: int, seconds: float, connections: int) -> tuple[float, int]:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    if rate is None or count is None or "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk failed:\n{output}")
    return float(rate.group(1)), int(count.group(1))


async def _client_load(port: int, seconds: float, connections: int) -> tuple[float, int]:
    """Keep-alive HTTP/1.1 GETs on ``connections`` sockets for ``seconds``: (rate, count)."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    deadline = time.monotonic() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode("latin-1"))
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            done += 1
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.monotonic() - started), done


def load(port: int, seconds: float, connections: int) -> tuple[float, int]:
    """(requests/s, requests) of ``seconds`` of load on ``port``."""
    if shutil.which("wrk"):
        return _wrk(port, seconds, connections)
    return asyncio.run(_client_load(port, seconds, min(connections, 8)))


def under_servers(kind: str, rounds: int, seconds: float, store_dir: str
                  ) -> dict[str, list[Sample]]:
    import psutil

    variants = VARIANTS[kind]
    connections = CONNECTIONS[kind]
    results: dict[str, list[Sample]] = {v: [] for v in variants}
    with servers(kind, variants, store_dir) as ports:
        for port, _pid in ports.values():
            load(port, 1.0, connections)  # warm-up
        for _ in range(rounds):
            for variant, (port, pid) in ports.items():
                # The server's CPU per request is what it can sustain, whatever else runs
                # on a shared machine; wall-clock req/s is shown too.
                process = psutil.Process(pid)
                cpu_before = sum(process.cpu_times()[:2])
                rate, count = load(port, seconds, connections)
                cpu = sum(process.cpu_times()[:2]) - cpu_before
                results[variant].append((rate, cpu / max(count, 1) * 1e6))
    return results


# -- the report ----------------------------------------------------------------------------

def table(title: str, results: dict[str, list[Sample]]) -> None:
    """Medians of wall-clock req/s and of CPU per request, each against bare.

    "capacity" is bare's CPU per request over the variant's: the throughput ratio a saturated
    process would see, and much steadier than wall-clock rates on a busy machine.
    """
    rates = {v: statistics.median(r for r, _ in samples) for v, samples in results.items()}
    cpus = {v: statistics.median(c for _, c in samples) for v, samples in results.items()}
    print(f"\n{title}")
    print(f"{'variant':<22}{'req/s':>10}{'vs bare':>9}{'CPU us/req':>12}{'capacity':>10}")
    for variant in results:
        print(f"{variant:<22}{rates[variant]:>10,.0f}{rates[variant] / rates['bare']:>8.2f}x"
              f"{cpus[variant]:>12.1f}{cpus['bare'] / cpus[variant]:>9.2f}x")
    if "otel" in results:
        print(f"ragtrail vs otel: {rates['ragtrail'] / rates['otel']:.1f}x req/s, "
              f"{cpus['otel'] / cpus['ragtrail']:.1f}x capacity")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000,
                        help="requests per variant and round, in-process")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="load duration per variant and round, under servers")
    parser.add_argument("--no-servers", action="store_true",
                        help="only the in-process measurements")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        kind, variant = args.serve.split(":")
        os.makedirs(args.store_dir, exist_ok=True)
        serve(kind, variant, args.port, args.store_dir)
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load generator: "
          f"{'wrk' if shutil.which('wrk') else 'asyncio keep-alive client'}")
    with tempfile.TemporaryDirectory(prefix="bench-middleware-") as store_dir:
        table(f"ASGI in-process: Starlette hello world, {args.requests} requests x "
              f"{args.rounds} rounds",
              in_process("asgi", args.rounds, args.requests, store_dir))
        table(f"WSGI in-process: Flask hello world, {args.requests} requests x "
              f"{args.rounds} rounds",
              in_process("wsgi", args.rounds, args.requests, store_dir))
        if not args.no_servers:
            server_rounds = max(3, args.rounds // 2)
            table(f"ASGI under uvicorn (1 process, h11), {CONNECTIONS['asgi']} connections, "
                  f"{args.seconds:g} s x {server_rounds} rounds",
                  under_servers("asgi", server_rounds, args.seconds, store_dir))
            table(f"WSGI under waitress (4 threads), {CONNECTIONS['wsgi']} connections, "
                  f"{args.seconds:g} s x {server_rounds} rounds",
                  under_servers("wsgi", server_rounds, args.seconds, store_dir))
            table(f"RAG-shaped endpoint under uvicorn (5 spans per request, one capturing "
                  f"5 documents), {CONNECTIONS['rag']} connections, {args.seconds:g} s x "
                  f"{server_rounds} rounds",
                  under_servers("rag", server_rounds, args.seconds, store_dir))


if __name__ == "__main__":
    main()
