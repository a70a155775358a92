"""Real OTLP receivers on 127.0.0.1 for tests, and what they received as plain data.

Import it from any test (it is not a conftest): ``from otlp_receivers import ...`` in
tests/instrument, ``from instrument.otlp_receivers import ...`` elsewhere (tests/conftest.py
puts tests/ on sys.path).

    with RotelReceiver(tmp_path) as receiver:          # OTLP/HTTP and OTLP/gRPC
        ... export to receiver.http_endpoint or receiver.grpc_endpoint ...
        spans = receiver.wait_for_spans(lambda s: s.name == "answer")

    with OteltapReceiver() as receiver:                 # OTLP/HTTP only, no resource
        ...

``rotel`` is a collector binary shipped in a wheel. It has no file exporter, so it runs a small
Python processor (rotel's processor SDK, executed inside the agent) that appends every span and
metric data point it receives to a JSON-lines file, which the test side reads. ``oteltap`` is a
native OTLP/HTTP receiver with an asyncio API; here it runs on its own event loop thread.

Both answer ``spans()``, ``points()``, ``wait_for_spans()`` and ``wait_for_points()`` with the
same ``ReceivedSpan``/``ReceivedPoint`` values, so tests can be parametrized over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sysconfig
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = [
    "HangingCollector",
    "OteltapReceiver",
    "ReceivedEvent",
    "ReceivedPoint",
    "ReceivedSpan",
    "Receiver",
    "RotelReceiver",
    "free_port",
    "isolated_otel_globals",
    "metric_readers",
    "wait_for_points",
    "wait_for_spans",
    "wait_until",
]

# OTLP SpanKind and StatusCode numbers (opentelemetry/proto/trace/v1/trace.proto).
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

T = TypeVar("T")


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span, as in OTLP
    kind: int
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    status_code: int
    status_message: str
    scope: str
    start_ns: int
    end_ns: int
    resource: dict[str, Any] | None = None  # None: this receiver does not report resources
    trace_state: str = ""  # the W3C tracestate header, "" for none
    flags: int = 0  # OTLP SpanFlags (trace flags, HAS_IS_REMOTE 0x100, IS_REMOTE 0x200)


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point of a Sum (``value``) or a Histogram (``count``, ``sum``, buckets)."""

    metric: str
    unit: str
    type: str  # "sum" or "histogram"
    attributes: dict[str, Any]
    value: float | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: list[int] = field(default_factory=list)
    explicit_bounds: list[float] = field(default_factory=list)
    resource: dict[str, Any] | None = None


class Receiver(Protocol):
    http_endpoint: str

    def spans(self) -> list[ReceivedSpan]: ...
    def points(self) -> list[ReceivedPoint]: ...


def metric_readers() -> set[threading.Thread]:
    """The export threads of this process's running PeriodicExportingMetricReaders (the
    OpenTelemetry SDK's name for them)."""
    return {thread for thread in threading.enumerate()
            if thread.name == "OtelPeriodicExportingMetricReader"}


def wait_until(probe: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


def wait_for_spans(receiver: Receiver, predicate: Callable[[ReceivedSpan], bool], count: int = 1,
                   timeout: float = 10.0) -> list[ReceivedSpan]:
    """The received spans matching ``predicate``, once there are at least ``count``."""
    def probe() -> list[ReceivedSpan]:
        found = [s for s in receiver.spans() if predicate(s)]
        return found if len(found) >= count else []
    return wait_until(probe, timeout)


def wait_for_points(receiver: Receiver, predicate: Callable[[ReceivedPoint], bool],
                    timeout: float = 10.0) -> list[ReceivedPoint]:
    """The received metric points matching ``predicate``, once there is one."""
    return wait_until(lambda: [p for p in receiver.points() if predicate(p)], timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- rotel -------------------------------------------------------------------------------------

# Runs inside the rotel agent's embedded Python (stdlib only): one JSON line per span / point.
_ROTEL_PROCESSOR = '''
import json, os

_OUT = os.environ["RAGTRAIL_TEST_CAPTURE"]


def _value(any_value):
    value = getattr(any_value, "value", None)
    kind = type(value).__name__
    if kind == "ArrayValue":
        return [_value(value[i]) for i in range(len(value))]
    if kind == "KeyValueList":
        return {value[i].key: _value(value[i].value) for i in range(len(value))}
    if isinstance(value, bytes):
        return value.hex()
    return value


def _attributes(key_values):
    return {kv.key: _value(kv.value) for kv in key_values}


def _write(lines):
    with open(_OUT, "a", encoding="utf-8") as out:
        out.write("".join(json.dumps(line) + "\\n" for line in lines))


def process_spans(resource_spans):
    resource = _attributes(resource_spans.resource.attributes) if resource_spans.resource else {}
    lines = []
    for scope_spans in resource_spans.scope_spans:
        scope = scope_spans.scope.name if scope_spans.scope else ""
        for span in scope_spans.spans:
            lines.append({
                "signal": "span", "resource": resource, "scope": scope, "name": span.name,
                "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                "parent_span_id": span.parent_span_id.hex(), "kind": span.kind,
                "start_ns": span.start_time_unix_nano, "end_ns": span.end_time_unix_nano,
                "attributes": _attributes(span.attributes),
                "events": [{"name": e.name, "attributes": _attributes(e.attributes)}
                           for e in span.events],
                "status_code": span.status.code if span.status else 0,
                "status_message": span.status.message if span.status else "",
                "trace_state": span.trace_state or "", "flags": span.flags or 0,
            })
    _write(lines)


def _number(value):
    inner = value[0] if value is not None else None
    return inner if isinstance(inner, (int, float)) else None


def process_metrics(resource_metrics):
    resource = resource_metrics.resource
    resource = _attributes(resource.attributes) if resource else {}
    lines = []
    for scope_metrics in resource_metrics.scope_metrics:
        for metric in scope_metrics.metrics:
            data = metric.data[0] if metric.data is not None else None
            kind = type(data).__name__
            for point in getattr(data, "data_points", []):
                line = {"signal": "point", "resource": resource, "metric": metric.name,
                        "unit": metric.unit, "attributes": _attributes(point.attributes)}
                if kind == "Sum":
                    line.update(type="sum", value=_number(point.value))
                elif kind == "Histogram":
                    line.update(type="histogram", count=point.count, sum=point.sum,
                                bucket_counts=list(point.bucket_counts),
                                explicit_bounds=list(point.explicit_bounds))
                else:
                    continue
                lines.append(line)
    _write(lines)
'''


class RotelReceiver:
    """The rotel collector on free 127.0.0.1 ports, recording what it receives to a file."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory()
        self._dir = Path(workdir if workdir is not None else self._tmp.name)  # type: ignore[union-attr]
        self._capture = self._dir / "rotel-received.jsonl"
        self._process: subprocess.Popen[bytes] | None = None
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.http_endpoint = f"http://127.0.0.1:{self.http_port}"
        self.grpc_endpoint = f"http://127.0.0.1:{self.grpc_port}"
        self._read_offset = 0
        self._lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def start(self, timeout: float = 10.0) -> RotelReceiver:
        import rotel  # the wheel ships the agent binary next to its Python package

        agent = Path(rotel.__file__).parent / "rotel-agent"
        processor = self._dir / "rotel_capture_processor.py"
        processor.write_text(_ROTEL_PROCESSOR, encoding="utf-8")
        self._capture.touch()
        env = dict(os.environ)
        # The agent embeds Python for its processors and links against libpython.
        env["LD_LIBRARY_PATH"] = str(sysconfig.get_config_var("LIBDIR") or "")
        env["RAGTRAIL_TEST_CAPTURE"] = str(self._capture)
        self._log = open(self._dir / "rotel.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [str(agent), "start",
             "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
             "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
             "--exporter", "blackhole",
             "--otlp-with-trace-processor", str(processor),
             "--otlp-with-metrics-processor", str(processor),
             "--batch-timeout", "10ms",
             "--pid-file", str(self._dir / "rotel.pid"),
             "--log-file", str(self._dir / "rotel-agent.log")],
            env=env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self._running() and _accepts(self.grpc_port)
                       and _accepts(self.http_port), timeout)
        except TimeoutError:
            self.stop()
            log = (self._dir / "rotel.log").read_text(errors="replace")
            raise RuntimeError(f"rotel did not start:\n{log}") from None
        return self

    def _running(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError("rotel exited: " + (self._dir / "rotel.log").read_text(
                errors="replace"))
        return True

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            self._process = None
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RotelReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def records(self) -> list[dict[str, Any]]:
        """Every record received so far (spans and metric points), as the capture holds them."""
        with self._lock:
            with open(self._capture, "rb") as capture:
                capture.seek(self._read_offset)
                chunk = capture.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read later
            self._read_offset += len(complete)
            self._lines.extend(json.loads(line) for line in complete.splitlines() if line)
            return list(self._lines)

    def raw_text(self) -> str:
        """Everything received so far, decoded, as text: for "this never left" checks."""
        return self._capture.read_text(encoding="utf-8")

    def spans(self) -> list[ReceivedSpan]:
        return [ReceivedSpan(
            name=r["name"], trace_id=r["trace_id"], span_id=r["span_id"],
            parent_span_id=r["parent_span_id"], kind=r["kind"], attributes=r["attributes"],
            events=[ReceivedEvent(e["name"], e["attributes"]) for e in r["events"]],
            status_code=r["status_code"], status_message=r["status_message"],
            scope=r["scope"], start_ns=r["start_ns"], end_ns=r["end_ns"],
            resource=r["resource"], trace_state=r["trace_state"], flags=r["flags"],
        ) for r in self.records() if r["signal"] == "span"]

    def points(self) -> list[ReceivedPoint]:
        return [ReceivedPoint(
            metric=r["metric"], unit=r["unit"], type=r["type"], attributes=r["attributes"],
            value=r.get("value"), count=r.get("count"), sum=r.get("sum"),
            bucket_counts=r.get("bucket_counts", []), explicit_bounds=r.get("explicit_bounds", []),
            resource=r["resource"],
        ) for r in self.records() if r["signal"] == "point"]

    wait_for_spans = wait_for_spans
    wait_for_points = wait_for_points


# --- oteltap -----------------------------------------------------------------------------------

def _pb_value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    if which == "array_value":
        return [_pb_value(v) for v in any_value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in any_value.kvlist_value.values}
    if which == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, which) if which else None


def _pb_attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in key_values}


class OteltapReceiver:
    """oteltap's OTLP/HTTP receiver on a free port, collecting spans and metric points.

    oteltap hands over spans and metrics without their resource (``resource`` is None).
    """

    def __init__(self) -> None:
        self.http_port = free_port()
        self.http_endpoint = f"http://127.0.0.1:{self.http_port}"
        self._spans: list[ReceivedSpan] = []
        self._points: list[ReceivedPoint] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="oteltap",
                                        daemon=True)
        self._receiver: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, timeout: float = 10.0) -> OteltapReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout)
        wait_until(lambda: _accepts(self.http_port), timeout)
        return self

    async def _start(self) -> None:
        from oteltap import OtelTapHttpProtobufReceiver, OtelTapHttpProtobufReceiverSettings

        self._receiver = await OtelTapHttpProtobufReceiver(
            OtelTapHttpProtobufReceiverSettings(http_port=self.http_port)).start()
        self._tasks = [
            asyncio.create_task(self._collect(self._receiver.stream_traces(), self._on_span)),
            asyncio.create_task(self._collect(self._receiver.stream_metrics(), self._on_metric)),
        ]
        await asyncio.sleep(0)  # let both collectors subscribe before anything arrives

    @staticmethod
    async def _collect(stream: AsyncIterator[Any], handle: Callable[[Any], None]) -> None:
        async for item in stream:
            handle(item)

    def _on_span(self, span: Any) -> None:
        self._spans.append(ReceivedSpan(
            name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(), kind=span.kind,
            attributes=_pb_attributes(span.attributes),
            events=[ReceivedEvent(e.name, _pb_attributes(e.attributes)) for e in span.events],
            status_code=span.status.code, status_message=span.status.message, scope="",
            start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
            trace_state=span.trace_state, flags=span.flags,
        ))

    def _on_metric(self, metric: Any) -> None:
        which = metric.WhichOneof("data")
        for point in getattr(metric, which).data_points if which else ():
            if which == "sum":
                number = point.WhichOneof("value")
                self._points.append(ReceivedPoint(
                    metric.name, metric.unit, "sum", _pb_attributes(point.attributes),
                    value=getattr(point, number) if number else None))
            elif which == "histogram":
                self._points.append(ReceivedPoint(
                    metric.name, metric.unit, "histogram", _pb_attributes(point.attributes),
                    count=point.count, sum=point.sum, bucket_counts=list(point.bucket_counts),
                    explicit_bounds=list(point.explicit_bounds)))

    def stop(self) -> None:
        if self._receiver is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
            self._receiver = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    async def _stop(self) -> None:
        await self._receiver.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __enter__(self) -> OteltapReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def spans(self) -> list[ReceivedSpan]:
        return list(self._spans)

    def points(self) -> list[ReceivedPoint]:
        return list(self._points)

    wait_for_spans = wait_for_spans
    wait_for_points = wait_for_points


# --- a collector that never answers ------------------------------------------------------------

class HangingCollector:
    """A TCP listener on 127.0.0.1 that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._connections: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hanging-collector",
                                        daemon=True)

    def _accept(self) -> None:
        self._server.settimeout(0.1)
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                connection, _ = self._server.accept()
                self._connections.append(connection)  # held open, never read or answered

    @property
    def connections(self) -> int:
        return len(self._connections)

    def __enter__(self) -> HangingCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(5)
        for connection in self._connections:
            connection.close()
        self._server.close()


# --- OpenTelemetry's process-wide providers ------------------------------------------------------

@contextlib.contextmanager
def isolated_otel_globals() -> Iterator[None]:
    """Run a block with no global Tracer/MeterProvider set, and restore the previous ones.

    The OTel API lets a process set its global providers once; tests that play "the app set
    its own provider" need a fresh slate each time, so this resets the API's module state.
    """
    from opentelemetry import trace
    from opentelemetry.metrics import _internal as metrics_state
    from opentelemetry.util._once import Once

    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE,
             metrics_state._METER_PROVIDER, metrics_state._METER_PROVIDER_SET_ONCE)
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    metrics_state._METER_PROVIDER, metrics_state._METER_PROVIDER_SET_ONCE = None, Once()
    try:
        yield
    finally:
        (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE,
         metrics_state._METER_PROVIDER, metrics_state._METER_PROVIDER_SET_ONCE) = saved
