"""The signal-specific OTLP settings (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ..._PROTOCOL,
..._HEADERS, ..._TIMEOUT and their METRICS forms): resolved as the OTel exporter
specification says, and honoured by real receivers."""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from export_support import Pipelines, new_trace, span_record
from otlp_receivers import (
    HangingCollector,
    RotelReceiver,
    free_port,
    isolated_otel_globals,
    metric_readers,
    wait_until,
)

from ragtrail import SecurityEvent, Settings, Severity
from ragtrail.instrument._export import ExportPipeline
from ragtrail.instrument._export_otlp import signal_target

SHARED = "http://collector:4318"


def _endpoints(settings: Settings) -> tuple[str | None, str | None]:
    return signal_target(settings, "traces").endpoint, signal_target(settings, "metrics").endpoint


@pytest.mark.parametrize(("settings", "traces", "metrics"), [
    ({"otlp_endpoint": SHARED}, f"{SHARED}/v1/traces", f"{SHARED}/v1/metrics"),
    ({"otlp_endpoint": f"{SHARED}/"}, f"{SHARED}/v1/traces", f"{SHARED}/v1/metrics"),
    # A gateway's query stays a query: the signal path goes onto the path before it.
    ({"otlp_endpoint": f"{SHARED}/otlp/?tenant=a"}, f"{SHARED}/otlp/v1/traces?tenant=a",
     f"{SHARED}/otlp/v1/metrics?tenant=a"),
    ({"otlp_endpoint": "http://collector:4317", "otlp_protocol": "grpc"},
     "http://collector:4317", "http://collector:4317"),
    ({"otlp_endpoint": SHARED, "otlp_traces_endpoint": "https://t.example/otlp/spans"},
     "https://t.example/otlp/spans", f"{SHARED}/v1/metrics"),
    ({"otlp_metrics_endpoint": "https://m.example/in"}, None, "https://m.example/in"),
    # A signal's own protocol decides whether the shared base URL gets a signal path.
    ({"otlp_endpoint": SHARED, "otlp_traces_protocol": "grpc"},
     SHARED, f"{SHARED}/v1/metrics"),
    ({"otlp_endpoint": SHARED, "otlp_protocol": "grpc", "otlp_metrics_protocol": "http/protobuf"},
     SHARED, f"{SHARED}/v1/metrics"),
    ({}, None, None),
])
def test_a_signals_own_endpoint_is_used_as_given_and_wins(
        settings: dict[str, str], traces: str | None, metrics: str | None) -> None:
    assert _endpoints(Settings(**settings)) == (traces, metrics)


def test_a_signals_own_protocol_headers_and_timeout_win_over_the_shared_ones() -> None:
    settings = Settings(otlp_endpoint=SHARED, otlp_headers={"api-key": "shared"},
                        otlp_timeout_ms=10_000, otlp_traces_protocol="grpc",
                        otlp_traces_headers={"x-traces": "t"}, otlp_metrics_timeout_ms=250)
    traces, metrics = signal_target(settings, "traces"), signal_target(settings, "metrics")
    assert (traces.protocol, dict(traces.headers), traces.timeout) == (
        "grpc", {"x-traces": "t"}, 10.0)  # replaced, not merged, as the specification says
    assert (metrics.protocol, dict(metrics.headers), metrics.timeout) == (
        "http/protobuf", {"api-key": "shared"}, 0.25)


def test_the_signal_settings_come_from_the_standard_variables() -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317",
           "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/v1/metrics",
           "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
           "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
           "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-tenant=a%20b,api-key=k1",
           "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "api-key=k2",
           "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500",
           "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "700"}
    settings = Settings.from_env(env)
    assert (settings.otlp_traces_endpoint, settings.otlp_metrics_endpoint) == (
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"])
    assert (settings.otlp_traces_protocol, settings.otlp_metrics_protocol) == (
        "grpc", "http/protobuf")
    assert settings.otlp_traces_headers == {"x-tenant": "a b", "api-key": "k1"}
    assert settings.otlp_metrics_headers == {"api-key": "k2"}
    assert (settings.otlp_traces_timeout_ms, settings.otlp_metrics_timeout_ms) == (2500, 700)
    assert settings.otlp_endpoint is None
    assert "k1" not in repr(settings)  # headers are secrets
    assert "k2" not in repr(settings)


def test_empty_signal_variables_count_as_unset() -> None:
    """The OTel specification: an empty value is treated as if the variable were unset."""
    settings = Settings.from_env({
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "", "OTEL_EXPORTER_OTLP_METRICS_HEADERS": " ",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=shared"})
    assert (settings.otlp_traces_protocol, settings.otlp_metrics_headers,
            settings.otlp_traces_timeout_ms) == (None, None, None)
    assert signal_target(settings, "traces").protocol == "grpc"
    assert dict(signal_target(settings, "metrics").headers) == {"api-key": "shared"}


@pytest.mark.parametrize(("variable", "value", "setting"), [
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json", "otlp_traces_protocol"),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "5", "otlp_traces_timeout_ms"),
    ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1.5s", "otlp_metrics_timeout_ms"),
])
def test_a_bad_signal_value_is_ignored_so_the_shared_one_applies(
        variable: str, value: str, setting: str) -> None:
    """The OTel specification: an unusable value is warned about and ignored (unset)."""
    assert getattr(Settings.from_env({variable: value}), setting) is None


def test_a_signal_header_without_a_value_is_skipped() -> None:
    settings = Settings.from_env({"OTEL_EXPORTER_OTLP_METRICS_HEADERS": "no-value,api-key=k"})
    assert settings.otlp_metrics_headers == {"api-key": "k"}


def test_a_signal_protocol_is_read_in_any_case() -> None:
    settings = Settings.from_env({"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "GRPC "})
    assert settings.otlp_metrics_protocol == "grpc"


def _a_span_and_a_metric_arrive(pipeline: ExportPipeline, rotel: RotelReceiver,
                                name: str) -> None:
    """Export one span and one security-event count; rotel receives both, nothing fails."""
    trace_id = new_trace()
    pipeline.submit(span_record(trace_id, name, "retriever"))
    kind = f"authz_fail_{secrets.token_hex(4)}"
    pipeline.count_event(SecurityEvent(kind, Severity.MEDIUM, "guard", "seen",
                                       time.time_ns() // 1000))
    assert pipeline.force_flush(10)
    (span,) = rotel.wait_for_spans(lambda s: s.trace_id == trace_id)
    assert span.name == name
    assert rotel.wait_for_points(lambda p: p.attributes.get("ragtrail.event.type") == kind)
    assert pipeline.health()["failed"] == 0


def _nothing_listens() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.network
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_and_metrics_reach_their_own_endpoints(
        rotel: RotelReceiver, make_pipeline: Pipelines, protocol: str) -> None:
    """Only the signal endpoints set, the shared one pointing nowhere: everything arrives."""
    if protocol == "grpc":
        traces = metrics = rotel.grpc_endpoint
    else:
        traces, metrics = f"{rotel.http_endpoint}/v1/traces", f"{rotel.http_endpoint}/v1/metrics"
    pipeline = make_pipeline(otlp_endpoint=_nothing_listens(), otlp_protocol=protocol,
                             otlp_traces_endpoint=traces, otlp_metrics_endpoint=metrics)
    _a_span_and_a_metric_arrive(pipeline, rotel, "retrieve")


class _HeaderRecorder:
    """A real OTLP/HTTP receiver on 127.0.0.1 that only remembers each request's path and
    headers (and answers 200 with an empty, valid protobuf body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        recorded = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorded.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll: shutdown() waits up to one poll interval (0.5 s by default).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)

    def __enter__(self) -> _HeaderRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.network
def test_each_signal_sends_its_own_headers(make_pipeline: Pipelines) -> None:
    with _HeaderRecorder() as receiver:
        pipeline = make_pipeline(
            otlp_endpoint=receiver.endpoint, otlp_headers={"api-key": "shared"},
            otlp_traces_headers={"api-key": "traces-only", "x-tenant": "t1"})
        pipeline.submit(span_record(new_trace(), "generate", "llm"))
        pipeline.count_event(SecurityEvent("authz_fail", Severity.MEDIUM, "guard", "seen",
                                           time.time_ns() // 1000))
        assert pipeline.force_flush(10)
        seen = wait_until(lambda: dict(receiver.requests)
                          if {"/v1/traces", "/v1/metrics"} <= {p for p, _ in receiver.requests}
                          else None)
        pipeline.shutdown(2.0)  # while the receiver still answers the final export
    assert seen["/v1/traces"]["api-key"] == "traces-only"
    assert seen["/v1/traces"]["x-tenant"] == "t1"
    assert seen["/v1/metrics"]["api-key"] == "shared"
    assert "x-tenant" not in seen["/v1/metrics"]


@pytest.mark.network
def test_a_traces_timeout_bounds_span_exports_only(make_pipeline: Pipelines) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=300 with the shared timeout at its 10 s default: the
    span export to a collector that never answers fails within seconds."""
    with HangingCollector() as collector:
        pipeline = make_pipeline(otlp_endpoint=collector.endpoint, otlp_traces_timeout_ms=300,
                                 export_schedule_delay_ms=50)
        pipeline.submit(span_record(new_trace(), "retrieve", "retriever"))
        started = time.monotonic()
        # 5 s: the 300 ms timeout plus slack for a busy machine, half the shared 10 s.
        health = wait_until(lambda: (h := pipeline.health())["failed"] and h, timeout=5.0)
        assert time.monotonic() - started < 5.0
        assert health["status"] == "failing"
        readers = metric_readers()
        started = time.monotonic()
        pipeline.shutdown(0.2)  # the metrics export still hangs: shutdown keeps its bound
        assert time.monotonic() - started < 2.0
    # The collector is gone: the reader's last export fails now. Wait for it here, or it logs
    # the refused export in a later test.
    wait_until(lambda: not readers & metric_readers())


def test_a_timeout_of_zero_means_no_limit(caplog: pytest.LogCaptureFixture) -> None:
    """The specification reads a timeout of 0 as "indefinite": accepted from each variable and
    as an argument, no warning, and given to the exporters as a very long time (2**31 - 1 ms)
    rather than as 0, which the OTel exporters take as "fail at once"."""
    settings = Settings.from_env({"OTEL_EXPORTER_OTLP_TIMEOUT": "0",
                                  "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "0"})
    assert (settings.otlp_timeout_ms, settings.otlp_metrics_timeout_ms) == (0, 0)
    # ragtrail's own: another test's exporter thread may still log its refused exports here.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("ragtrail")] == []
    assert Settings(otlp_traces_timeout_ms=0).otlp_traces_timeout_ms == 0
    assert signal_target(settings, "metrics").timeout == (2**31 - 1) / 1000
    assert signal_target(settings.replace(otlp_timeout_ms=400), "traces").timeout == 0.4


@pytest.mark.network
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_and_metrics_export_with_no_timeout(protocol: str, rotel: RotelReceiver,
                                                 make_pipeline: Pipelines) -> None:
    """OTLP and batch timeouts of 0: exports go through (not refused, not failed at once)."""
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    pipeline = make_pipeline(otlp_endpoint=endpoint, otlp_protocol=protocol,
                             otlp_timeout_ms=0, export_timeout_ms=0, metric_export_timeout_ms=0)
    _a_span_and_a_metric_arrive(pipeline, rotel, "no-timeout")


@pytest.mark.network
def test_spans_over_grpc_and_metrics_over_http_by_their_own_protocols(
        rotel: RotelReceiver, make_pipeline: Pipelines) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc beside a shared http/protobuf: a collector
    that takes spans on its gRPC port and metrics on its HTTP port gets both."""
    pipeline = make_pipeline(
        otlp_protocol="http/protobuf", otlp_traces_protocol="grpc",
        otlp_traces_endpoint=rotel.grpc_endpoint,
        otlp_metrics_endpoint=f"{rotel.http_endpoint}/v1/metrics")
    _a_span_and_a_metric_arrive(pipeline, rotel, "rerank")
    assert pipeline.health()["protocol"] == "grpc"


def test_a_traces_endpoint_alone_turns_export_on() -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT, the traces endpoint is enough for a pipeline."""
    with isolated_otel_globals():
        pipeline = ExportPipeline.create(Settings(otlp_traces_endpoint=_nothing_listens()))
        assert pipeline is not None
        pipeline.shutdown(2.0)
        assert ExportPipeline.create(Settings(otlp_metrics_endpoint=_nothing_listens())) is None


@pytest.fixture
def pipeline_from_env(no_app_otel_providers: None) -> Iterator[Callable[..., ExportPipeline]]:
    """Pipelines built as configure() builds them: Settings.from_env over os.environ."""
    made: list[ExportPipeline] = []

    def make(**arguments: Any) -> ExportPipeline:
        pipeline = ExportPipeline.create(Settings.from_env(**arguments))
        assert pipeline is not None
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.shutdown(2.0)


@pytest.mark.network
def test_a_capitalised_header_name_works_over_grpc(rotel: RotelReceiver,
                                                   make_pipeline: Pipelines) -> None:
    """``X-Api-Key=...`` (as vendors' guides spell it) over gRPC: gRPC metadata keys must be
    lowercase, and every export failed with "Invalid metadata"."""
    pipeline = make_pipeline(otlp_endpoint=rotel.grpc_endpoint, otlp_protocol="grpc",
                             otlp_headers={"X-Api-Key": "abc", "Authorization": "Basic eA=="})
    _a_span_and_a_metric_arrive(pipeline, rotel, "embed")


@pytest.mark.network
def test_headers_ragtrail_refused_are_not_sent_or_logged_by_the_exporter(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        pipeline_from_env: Callable[..., ExportPipeline]) -> None:
    """A CR/LF header value ragtrail skips (with a warning) was read again by the OTLP/HTTP
    exporter, sent, and failed every export; a value it could not parse was logged whole."""
    variable = 'api-key=good1,x-bad=a%0D%0Ainjected,bad name=hunter2-secret,x-q=SECRET"TOKEN'
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", variable)
    with _HeaderRecorder() as receiver, caplog.at_level("DEBUG"):
        pipeline = pipeline_from_env(otlp_endpoint=receiver.endpoint)
        pipeline.submit(span_record(new_trace(), "generate", "llm"))
        assert pipeline.force_flush(10)
        seen = wait_until(lambda: dict(receiver.requests).get("/v1/traces"))
        assert pipeline.health()["failed"] == 0
        pipeline.shutdown(2.0)  # while the receiver still answers the final export
    assert seen["api-key"] == "good1"
    assert "x-bad" not in seen
    assert not [r for r in caplog.records
                if "hunter2" in r.getMessage() or "TOKEN" in r.getMessage()]
    assert os.environ["OTEL_EXPORTER_OTLP_HEADERS"] == variable  # hidden only while building


@pytest.mark.network
def test_values_ragtrail_ignores_do_not_stop_the_grpc_exporter(
        rotel: RotelReceiver, monkeypatch: pytest.MonkeyPatch,
        pipeline_from_env: Callable[..., ExportPipeline]) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=5s and OTEL_EXPORTER_OTLP_COMPRESSION=zstd are ignored
    with a warning; the gRPC exporters read them again and raised out of configure()."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "5s")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "5s")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")
    pipeline = pipeline_from_env(otlp_endpoint=rotel.grpc_endpoint, otlp_protocol="grpc")
    _a_span_and_a_metric_arrive(pipeline, rotel, "rerank")


@pytest.mark.network
@pytest.mark.parametrize(("variables", "encoding"), [
    ({"OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP"}, "gzip"),
    ({"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none"},
     None),
    ({"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip"}, "gzip"),
])
def test_compression_follows_the_variables(
        monkeypatch: pytest.MonkeyPatch, pipeline_from_env: Callable[..., ExportPipeline],
        variables: dict[str, str], encoding: str | None) -> None:
    """Shared and per-signal compression, read by ragtrail and seen on the wire."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with _HeaderRecorder() as receiver:
        # From the environment: an endpoint argument would set the signal variables aside.
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        pipeline = pipeline_from_env()
        pipeline.submit(span_record(new_trace(), "generate", "llm"))
        assert pipeline.force_flush(10)
        seen = wait_until(lambda: dict(receiver.requests).get("/v1/traces"))
        pipeline.shutdown(2.0)  # while the receiver still answers the final export
    assert seen.get("content-encoding") == encoding


@pytest.mark.parametrize(("variables", "traces", "metrics"), [
    ({"OTEL_TRACES_EXPORTER": "none"}, None, f"{SHARED}/v1/metrics"),
    ({"OTEL_METRICS_EXPORTER": "NONE"}, f"{SHARED}/v1/traces", None),
    ({"OTEL_TRACES_EXPORTER": "console"}, f"{SHARED}/v1/traces", f"{SHARED}/v1/metrics"),
])
def test_the_exporter_variables_turn_a_signal_off(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], traces: str | None,
        metrics: str | None) -> None:
    """OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER=none: that signal is not exported;
    a value ragtrail does not run (console) is ignored with a warning."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert _endpoints(Settings.from_env(otlp_endpoint=SHARED)) == (traces, metrics)


def test_no_span_export_with_the_traces_exporter_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    with isolated_otel_globals():
        assert ExportPipeline.create(Settings.from_env(otlp_endpoint=SHARED)) is None


def test_a_shared_argument_wins_over_the_signal_variables(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """configure(otlp_endpoint=A) sent spans to a cluster-wide
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=B, and otlp_headers= got the environment's signal
    headers instead: an argument wins over the environment, a signal's variables too."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://elsewhere:4318/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "authorization=env-secret")
    settings = Settings.from_env(otlp_endpoint=SHARED, otlp_protocol="http/protobuf",
                                 otlp_headers={"authorization": "argument"})
    traces, metrics = signal_target(settings, "traces"), signal_target(settings, "metrics")
    assert (traces.endpoint, traces.protocol) == (f"{SHARED}/v1/traces", "http/protobuf")
    assert dict(metrics.headers) == {"authorization": "argument"}
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is ignored: otlp_endpoint was given" in caplog.text
    assert "env-secret" not in caplog.text
    # Without the shared argument, the signal's own variable still wins over the shared one.
    assert signal_target(Settings.from_env(), "traces").endpoint == (
        "http://elsewhere:4318/v1/traces")


def test_a_metrics_endpoint_alone_says_nothing_is_exported(
        caplog: pytest.LogCaptureFixture) -> None:
    """Metrics go out with spans only: an endpoint for metrics alone was silently unused."""
    with isolated_otel_globals():
        assert ExportPipeline.create(Settings(otlp_metrics_endpoint=SHARED)) is None
    assert "exports metrics along with spans only" in caplog.text


def test_an_endpoint_argument_takes_none_of_another_collectors_signal_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """configure(otlp_endpoint=A) alone: the signal variables that came with
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=B (B's API key, B's protocol) must not go to A."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://elsewhere:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=for-elsewhere")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=shared")
    traces = signal_target(Settings.from_env(otlp_endpoint=SHARED), "traces")
    assert (traces.endpoint, traces.protocol, dict(traces.headers)) == (
        f"{SHARED}/v1/traces", "http/protobuf", {"api-key": "shared"})


_unset_seen: list[str] | None = None  # while a test listens: OTEL_* names os.unsetenv was given


def _record_unsetenv(event: str, args: tuple[Any, ...]) -> None:
    if event == "os.unsetenv" and _unset_seen is not None:
        name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        if name.startswith("OTEL_"):
            _unset_seen.append(name)


sys.addaudithook(_record_unsetenv)  # (audit hooks stay for the process: it only listens)


@pytest.fixture
def unset_variables() -> Iterator[list[str]]:
    """The OTEL_* variables anything took out of os.environ during the test, in order."""
    global _unset_seen
    _unset_seen = []
    try:
        yield _unset_seen
    finally:
        _unset_seen = None


@pytest.mark.network
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_usable_variables_stay_in_the_environment_while_exporters_are_built(
        protocol: str, monkeypatch: pytest.MonkeyPatch, rotel: RotelReceiver,
        pipeline_from_env: Callable[..., ExportPipeline], unset_variables: list[str]) -> None:
    """Headers, timeouts and compression that ragtrail reads and uses as they are: the
    exporters would read them to the same effect, so os.environ is not touched (another
    thread, or a subprocess started meanwhile, saw them vanish)."""
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    for name, value in {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%20def,x-tenant=acme",
                        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=traces",
                        "OTEL_EXPORTER_OTLP_TIMEOUT": "5000",
                        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "4000",
                        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}.items():
        monkeypatch.setenv(name, value)
    pipeline = pipeline_from_env()
    _a_span_and_a_metric_arrive(pipeline, rotel, "environment-kept")
    assert unset_variables == []


def test_only_the_variables_an_exporter_would_misread_are_hidden(
        monkeypatch: pytest.MonkeyPatch, pipeline_from_env: Callable[..., ExportPipeline],
        unset_variables: list[str]) -> None:
    """A header ragtrail refused, and a timeout the gRPC exporter cannot parse, are out of
    sight while the exporters are built (and back afterwards); the usable rest stays."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=ok,x-bad=a%0Ab")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "4s")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5000")
    pipeline_from_env(otlp_endpoint=f"http://127.0.0.1:{free_port()}", otlp_protocol="grpc")
    assert sorted(unset_variables) == ["OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
                                       "OTEL_EXPORTER_OTLP_TRACES_HEADERS"]
    assert os.environ["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] == "api-key=ok,x-bad=a%0Ab"
    assert os.environ["OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"] == "4s"
