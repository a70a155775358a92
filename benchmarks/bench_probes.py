"""``/ready`` latency under 200 concurrent probes while a dependency hangs, in one run.

    python benchmarks/bench_probes.py [--concurrency 200] [--rounds 20] [--skip-server]

The dependency is a TCP listener that accepts connections and never answers (a wedged Ollama);
the HealthService checks it (non-critical, 0.5 s timeout) next to a passing critical check, so
the check is always in flight or timed out while the probes run. Goal (issue #4): p99 < 2 ms.

In-process: ``respond()`` timed per call, from one thread, from ``--concurrency`` threads at
once, and ``respond_async()`` from as many asyncio tasks at once.

Over loopback: uvicorn in a subprocess, probed like the kubelet (a new connection per probe,
``Connection: close``, 1 s timeout). "burst" sends ``--concurrency`` probes at the same instant
per round; "paced" keeps ``--concurrency`` probers each probing about once a second (jittered),
which is already far more than a kubelet sends one pod. Rows: a bare ASGI app answering a fixed
body (the baseline), the HealthService responder in a plain ASGI app, ragtrail's
ASGIMiddleware, and a seed-style /ready that checks the dependency inline on every probe.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from ragtrail import Settings
from ragtrail.health import FunctionCheck, HealthService, HTTPCheck
from ragtrail.instrument import Monitor

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

APPS = ("bare", "responder", "middleware", "inline")


# -- the service under test -------------------------------------------------------------------

def hanging_dependency() -> socket.socket:
    """A listener that never accepts: connects succeed (the kernel queues them), no answer."""
    return socket.create_server(("127.0.0.1", 0), backlog=1024)


def build_service(store_dir: str, hang_port: int) -> HealthService:
    monitor = Monitor(Settings(store_url=f"sqlite:///{store_dir}/audit.db",
                               health_check_interval=1.0, health_check_timeout=0.5))
    checks = [HTTPCheck(f"http://127.0.0.1:{hang_port}/api/tags", name="ollama", critical=False),
              FunctionCheck(lambda: True, "index")]
    service = HealthService(monitor, checks)
    service.start()
    deadline = time.monotonic() + 10
    while service.respond("GET", "/ready", b"", []).status != 200:  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise SystemExit("the service did not become ready")
        time.sleep(0.05)
    return service


def percentiles(samples_ns: Sequence[int]) -> tuple[float, float, float, float]:
    """p50, p95, p99, max in microseconds."""
    ordered = sorted(samples_ns)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return q[49] / 1e3, q[94] / 1e3, q[98] / 1e3, ordered[-1] / 1e3


# -- in-process ---------------------------------------------------------------------------------

def in_process(service: HealthService, concurrency: int, calls: int) -> dict[str, list[int]]:
    results: dict[str, list[int]] = {}
    clock = time.perf_counter_ns
    sequential = []
    for _ in range(calls * 10):
        started = clock()
        service.respond("GET", "/ready", b"", [])
        sequential.append(clock() - started)
    results["respond(), 1 thread"] = sequential

    threaded: list[int] = []
    barrier = threading.Barrier(concurrency)

    def worker() -> None:
        own = []
        barrier.wait()
        for _ in range(calls):
            started = clock()
            service.respond("GET", "/ready", b"", [])
            own.append(clock() - started)
        threaded.extend(own)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results[f"respond(), {concurrency} threads"] = threaded

    async def tasks() -> list[int]:
        gathered: list[int] = []
        start = asyncio.Event()

        async def one() -> None:
            await start.wait()
            for _ in range(calls):
                started = clock()
                await service.respond_async("GET", "/ready", b"", [])
                gathered.append(clock() - started)
                await asyncio.sleep(0)

        running = [asyncio.create_task(one()) for _ in range(concurrency)]
        await asyncio.sleep(0)
        start.set()
        await asyncio.gather(*running)
        return gathered

    results[f"respond_async(), {concurrency} tasks"] = asyncio.run(tasks())
    return results


# -- the served apps ------------------------------------------------------------------------------

def build_app(kind: str, store_dir: str, hang_port: int) -> ASGIApp:
    body = b'{"status":"pass"}'
    fixed_headers = [(b"content-type", b"application/health+json"),
                     (b"content-length", str(len(body)).encode())]

    async def bare(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": fixed_headers})
        await send({"type": "http.response.body", "body": body})

    if kind == "bare":
        return bare
    if kind == "inline":  # what the seed did: check the dependency while the probe waits
        check = HTTPCheck(f"http://127.0.0.1:{hang_port}/api/tags", name="ollama")

        async def inline(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            try:
                await asyncio.wait_for(check.check(), 0.5)
                status = 200
            except Exception:
                status = 503
            await send({"type": "http.response.start", "status": status,
                        "headers": fixed_headers})
            await send({"type": "http.response.body", "body": body})

        return inline
    service = build_service(store_dir, hang_port)
    if kind == "middleware":
        from ragtrail.middleware import ASGIMiddleware

        return ASGIMiddleware(bare, monitor=service.monitor,  # type: ignore[arg-type]
                              health=service)

    async def responder(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = await service.respond_async(scope["method"], scope["path"],
                                               scope["query_string"], scope["headers"])
        if response is None:
            await bare(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [(k.encode(), v.encode()) for k, v in response.headers]})
        await send({"type": "http.response.body", "body": response.body})

    return responder


def serve(kind: str, port: int, hang_port: int) -> None:
    import uvicorn

    with tempfile.TemporaryDirectory() as store_dir:
        app = build_app(kind, store_dir, hang_port)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                    backlog=4096)


# -- the kubelet-like load generator --------------------------------------------------------------

async def probe(port: int, timeout: float = 1.0) -> tuple[int, int]:
    """One probe on a new connection: (latency in ns, status; 0 on timeout or error)."""
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"User-Agent: kube-probe/1.31\r\nConnection: close\r\n\r\n")
            return await reader.read()
        finally:
            writer.close()

    started = time.perf_counter_ns()
    try:
        data = await asyncio.wait_for(exchange(), timeout)
        status = int(data.split(b" ", 2)[1])
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        status = 0
    return time.perf_counter_ns() - started, status


async def burst(port: int, concurrency: int, rounds: int) -> list[tuple[int, int]]:
    samples: list[tuple[int, int]] = []
    for _ in range(rounds):
        samples += await asyncio.gather(*(probe(port) for _ in range(concurrency)))
        await asyncio.sleep(0.05)
    return samples


async def paced(port: int, concurrency: int, seconds: float) -> list[tuple[int, int]]:
    samples: list[tuple[int, int]] = []
    deadline = time.monotonic() + seconds

    async def prober() -> None:
        await asyncio.sleep(random.random())
        while time.monotonic() < deadline:
            samples.append(await probe(port))
            await asyncio.sleep(random.uniform(0.5, 1.5))

    await asyncio.gather(*(prober() for _ in range(concurrency)))
    return samples


def over_loopback(kind: str, hang_port: int, options: argparse.Namespace
                  ) -> dict[str, list[tuple[int, int]]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port),
                               str(hang_port)])
    try:
        deadline = time.monotonic() + 20
        while asyncio.run(probe(port))[1] == 0:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the {kind} server did not start")
            time.sleep(0.1)
        rounds = 2 if kind == "inline" else options.rounds
        return {"burst": asyncio.run(burst(port, options.concurrency, rounds)),
                "paced": asyncio.run(paced(port, options.concurrency, options.paced_seconds))}
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


# -- report -------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20, help="burst rounds per app")
    parser.add_argument("--calls", type=int, default=200, help="in-process calls per worker")
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    parser.add_argument("--skip-server", action="store_true", help="in-process numbers only")
    parser.add_argument("--serve", nargs=3, metavar=("APP", "PORT", "HANG_PORT"),
                        help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve:
        serve(options.serve[0], int(options.serve[1]), int(options.serve[2]))
        return 0

    dependency = hanging_dependency()
    hang_port = dependency.getsockname()[1]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; a dependency that never "
          f"answers on 127.0.0.1:{hang_port}\n")
    with tempfile.TemporaryDirectory() as store_dir:
        service = build_service(store_dir, hang_port)
        try:
            measured = in_process(service, options.concurrency, options.calls)
        finally:
            service.stop()
            service.monitor.shutdown()  # type: ignore[attr-defined]
    print("in-process /ready (microseconds per call)")
    print(f"{'case':32} {'calls':>7} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>9}  goal p99<2ms")
    for name, timings in measured.items():
        p50, p95, p99, worst = percentiles(timings)
        print(f"{name:32} {len(timings):7d} {p50:8.1f} {p95:8.1f} {p99:8.1f} {worst:9.1f}  "
              f"{'met' if p99 < 2000 else 'MISSED'}")
    if options.skip_server:
        return 0

    print("\nuvicorn over loopback, kubelet-style probes (milliseconds; new connection each)")
    print(f"{'app':12} {'load':6} {'probes':>7} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} "
          f"{'ok':>6} {'p99 x bare':>11}")
    baseline: dict[str, float] = {}
    for kind in APPS:
        for load, samples in over_loopback(kind, hang_port, options).items():
            latencies = [ns for ns, _ in samples]
            p50, p95, p99, worst = (v / 1e3 for v in percentiles(latencies))
            ok = sum(1 for _, status in samples if 200 <= status < 400)
            if kind == "bare":
                baseline[load] = p99
            ratio = f"{p99 / baseline[load]:.2f}" if baseline.get(load) else "-"
            print(f"{kind:12} {load:6} {len(samples):7d} {p50:8.2f} {p95:8.2f} {p99:8.2f} "
                  f"{worst:8.2f} {ok:6d} {ratio:>11}")
    dependency.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
