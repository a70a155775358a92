"""Liveness and readiness answers of HealthService.respond(), called directly."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ragtrail.health import CheckResult, FunctionCheck, HealthResponse, HealthService, health_check
from ragtrail.store import AuditStore, StoreHealth

from ._servers import wait_until
from .conftest import MonitorFactory, ServiceFactory


def get(service: HealthService, path: str, query: str = "", method: str = "GET"
        ) -> HealthResponse:
    response = service.respond(method, path, query, {})
    assert response is not None
    return response


def document(response: HealthResponse) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(response.body)
    return parsed


def ready_once(service: HealthService, timeout: float = 5.0) -> None:
    get(service, "/ready")  # the first request starts the background checks
    wait_until(lambda: get(service, "/ready").status == 200, timeout)


def test_paths_that_are_not_health_routes_return_none(make_service: ServiceFactory) -> None:
    """The middleware passes anything else to the app; matching is exact, not a prefix."""
    service = make_service(store_check=False)
    for path in ("/", "/healthz", "/health/", "/ready/x", "/api/health", "/x/health"):
        assert service.respond("GET", path, b"", {}) is None


def test_default_routes_and_aliases_answer(make_service: ServiceFactory) -> None:
    """/health and /livez are liveness, /ready and /readyz readiness, as in the seed."""
    service = make_service(store_check=False)
    ready_once(service)
    described = {p: document(get(service, p))["description"]
                 for p in ("/health", "/livez", "/ready", "/readyz")}
    assert described == {"/health": "liveness of rag-api", "/livez": "liveness of rag-api",
                         "/ready": "readiness of rag-api", "/readyz": "readiness of rag-api"}
    assert service.excluded_paths == frozenset({
        "/health", "/livez", "/ready", "/readyz", "/api/health/detailed",
        "/api/health/dependencies", "/api/monitoring"})


def test_probe_response_is_health_json_and_never_cached(make_service: ServiceFactory) -> None:
    """application/health+json with Cache-Control: no-store and an exact Content-Length."""
    service = make_service(store_check=False)
    ready_once(service)
    response = get(service, "/ready")
    headers = dict(response.headers)
    assert headers == {"content-type": "application/health+json", "cache-control": "no-store",
                       "content-length": str(len(response.body))}
    assert document(response) == {"status": "pass", "version": "1.4.2", "serviceId": "rag-api",
                                  "description": "readiness of rag-api"}


def test_head_sends_headers_only(make_service: ServiceFactory) -> None:
    """HEAD has GET's status and headers (Content-Length included) and an empty body."""
    service = make_service(store_check=False)
    ready_once(service)
    get_response, head_response = get(service, "/ready"), get(service, "/ready", method="HEAD")
    assert (head_response.status, head_response.headers, head_response.body) == (
        get_response.status, get_response.headers, b"")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_405_with_allow(make_service: ServiceFactory, method: str) -> None:
    """Only GET and HEAD: 405 Method Not Allowed names them in Allow (RFC 9110 15.5.6)."""
    service = make_service(store_check=False)
    response = get(service, "/health", method=method)
    assert (response.status, dict(response.headers)["allow"]) == (405, "GET, HEAD")


def test_readiness_is_503_while_starting(make_service: ServiceFactory) -> None:
    """Until every critical check has reported once, readiness says starting; liveness is 200."""
    gate = threading.Event()
    service = make_service(FunctionCheck(lambda: gate.wait(10), "warming", timeout=10),
                           store_check=False)
    starting = get(service, "/ready")
    assert (starting.status, document(starting)["output"]) == (
        503, "starting: waiting for warming")
    assert get(service, "/health").status == 200
    gate.set()
    wait_until(lambda: get(service, "/ready").status == 200)


def test_noncritical_checks_do_not_hold_start(make_service: ServiceFactory) -> None:
    """A slow non-critical check does not keep the pod out of service while starting."""
    gate = threading.Event()
    service = make_service(
        FunctionCheck(lambda: True, "critical_one"),
        FunctionCheck(lambda: gate.wait(10), "optional", critical=False, timeout=10),
        store_check=False)
    ready_once(service)
    assert document(get(service, "/ready"))["status"] == "pass"
    gate.set()


@pytest.mark.parametrize(("critical", "code", "status"), [(True, 503, "fail"),
                                                           (False, 200, "warn")])
def test_failing_check_fails_or_warns_by_criticality(
        make_service: ServiceFactory, critical: bool, code: int, status: str) -> None:
    """A critical failure fails readiness (503); a non-critical one only warns (200)."""
    service = make_service(FunctionCheck(lambda: True, "ok"),
                           FunctionCheck(lambda: False, "broken", critical=critical),
                           store_check=False)
    get(service, "/ready")
    wait_until(lambda: "broken" in service.results)
    response = get(service, "/ready")
    assert (response.status, document(response)["status"]) == (code, status)


def test_a_warning_check_keeps_readiness_200(make_service: ServiceFactory) -> None:
    """warn is still ready (the draft: pass and warn are healthy, with a concern)."""
    service = make_service(FunctionCheck(lambda: CheckResult("warn", "slow"), "slowish"),
                           store_check=False)
    get(service, "/ready")
    wait_until(lambda: "slowish" in service.results)
    response = get(service, "/ready")
    assert (response.status, document(response)["status"]) == (200, "warn")


def test_verbose_lists_checks_with_names_and_statuses_only(make_service: ServiceFactory
                                                           ) -> None:
    """?verbose shows each check's name and status; outputs stay on the detailed routes."""
    def fails() -> CheckResult:
        return CheckResult("fail", "connection refused to db:5432", observed_value=3)

    service = make_service(FunctionCheck(lambda: True, "ollama", measurement="responseTime"),
                           FunctionCheck(fails, "postgres", critical=False), store_check=False)
    get(service, "/ready")
    wait_until(lambda: len(service.results) == 2)
    body = document(get(service, "/ready", "verbose"))
    assert body["checks"] == {
        "ollama:responseTime": [{"componentId": "ollama", "status": "pass", "critical": True}],
        "postgres:status": [{"componentId": "postgres", "status": "fail", "critical": False}],
    }
    assert "checks" not in document(get(service, "/ready"))
    assert "checks" not in document(get(service, "/ready", "verbose=false"))


def test_exclude_skips_named_checks_like_kube_apiserver(make_service: ServiceFactory) -> None:
    """?exclude=name (repeatable) leaves a check out of the verdict and the listing."""
    service = make_service(FunctionCheck(lambda: False, "etcd"),
                           FunctionCheck(lambda: False, "informer"),
                           FunctionCheck(lambda: True, "ping"), store_check=False)
    get(service, "/ready")
    wait_until(lambda: len(service.results) == 3)
    assert get(service, "/readyz", "exclude=etcd").status == 503
    response = get(service, "/readyz", "exclude=etcd&exclude=informer&verbose")
    body = document(response)
    assert (response.status, list(body["checks"]), body["notes"]) == (
        200, ["ping:status"], ["excluded: etcd", "excluded: informer"])


def test_an_exclude_naming_no_check_is_said_in_verbose(make_service: ServiceFactory) -> None:
    """A mistyped ?exclude= leaves the verdict alone and, as kube-apiserver's /readyz?verbose
    does, says it matched nothing (a text that could be no check name is not echoed)."""
    service = make_service(FunctionCheck(lambda: False, "etcd"), store_check=False)
    get(service, "/ready")
    wait_until(lambda: "etcd" in service.results)
    response = get(service, "/readyz", "exclude=ectd&exclude=%3Cscript%3E&verbose")
    assert (response.status, document(response)["notes"]) == (
        503, ["not excluded: no check named ectd"])


def test_probe_answers_from_cache_while_a_check_hangs(make_service: ServiceFactory) -> None:
    """A hung dependency never slows a probe: it answers at once and later says timed out."""
    release = threading.Event()
    service = make_service(FunctionCheck(lambda: True, "ok"),
                           FunctionCheck(lambda: release.wait(30), "hung", critical=False),
                           store_check=False)
    try:
        get(service, "/ready")
        seconds: list[float] = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            started = time.perf_counter()
            get(service, "/ready", "verbose")
            seconds.append(time.perf_counter() - started)
        detailed = document(get(service, "/api/health/detailed"))["checks"]["hung:status"][0]
        # A probe that waited on the hung check would take its 0.5 s timeout (or the 30 s hang);
        # the bounds leave room for a busy CI machine pausing this thread now and then.
        assert max(seconds) < 0.45
        assert statistics.median(seconds) < 0.005
        assert (detailed["status"], detailed["timedOut"]) == ("fail", True)
        assert detailed["output"].startswith("timed out after 0.5 s")
    finally:
        release.set()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_hung_check_runs_single_flight(make_service: ServiceFactory, kind: str) -> None:
    """A run still going when the next is due is not duplicated: one at a time per check."""
    running = 0
    most = 0
    lock = threading.Lock()
    release = threading.Event()

    def enter() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)

    def leave() -> None:
        nonlocal running
        with lock:
            running -= 1

    def sync_hang() -> None:
        enter()
        try:
            release.wait(30)
        finally:
            leave()

    async def async_hang() -> None:
        enter()
        try:
            await asyncio.sleep(30)
        finally:
            leave()

    target = sync_hang if kind == "sync" else async_hang
    service = make_service(FunctionCheck(target, "hung", timeout=0.2), store_check=False)
    try:
        get(service, "/ready")
        reported: dict[int, str] = {}

        def several_runs_reported() -> bool:
            result = service.results.get("hung")
            if result is not None:
                reported[result.time_us] = result.output
            return len(reported) >= 3

        wait_until(several_runs_reported)
        assert most == 1
        # A cancelled async check really stops; a sync one's thread cannot be stopped, so
        # later runs say that the previous one is still going rather than start another.
        expected = {"timed out after 0.2 s"} if kind == "async" else {
            "timed out after 0.2 s",
            "timed out after 0.2 s (the previous run has still not returned)"}
        assert set(reported.values()) == expected
    finally:
        release.set()


def test_failing_checks_are_rechecked_sooner(make_service: ServiceFactory, make_monitor: Any
                                             ) -> None:
    """After a failure the check is retried at the shorter failure interval."""
    runs = {"ok": 0, "bad": 0}

    def counted(name: str, ok: bool) -> FunctionCheck:
        def run() -> bool:
            runs[name] += 1
            return ok
        return FunctionCheck(run, name, critical=False)

    service = make_service(counted("ok", True), counted("bad", False), store_check=False,
                           monitor=make_monitor(health_check_interval=6.0))
    get(service, "/ready")
    # The failure interval is a third of the interval (2 s); the passing check runs again at 6 s.
    wait_until(lambda: runs["bad"] >= 2, timeout=5.5)
    assert runs["ok"] == 1


def test_draining_fails_readiness_but_not_liveness(make_service: ServiceFactory) -> None:
    """After begin_draining() (SIGTERM) readiness is 503 'draining'; liveness stays 200."""
    service = make_service(FunctionCheck(lambda: True, "ok"), store_check=False)
    ready_once(service)
    service.begin_draining()
    ready, live = get(service, "/ready"), get(service, "/health")
    assert (ready.status, document(ready)["output"], live.status) == (503, "draining", 200)
    assert service.draining


def test_a_blocked_check_loop_fails_readiness_not_liveness(make_service: ServiceFactory,
                                                            make_monitor: Any) -> None:
    """A blocking call inside an async check, waiting on a hung dependency, stalls the loop:
    liveness warns but stays 200 (a restart would not fix the dependency), and readiness
    stops serving the last pass and fails the check as timed out."""
    hang, dependency_back = threading.Event(), threading.Event()

    async def blocks_the_loop() -> bool:
        if hang.is_set():
            # Deliberately wrong: a blocking call inside an async check, waiting (at most 4 s)
            # on the hung dependency; the test ends the hang once it has seen the stall.
            dependency_back.wait(4.0)
        return True

    service = make_service(FunctionCheck(blocks_the_loop, "bad_async", timeout=0.5),
                           store_check=False, liveness_stale_after=0.5,
                           monitor=make_monitor(health_check_interval=0.5))
    ready_once(service)
    assert get(service, "/ready").status == 200
    hang.set()
    seen: dict[str, HealthResponse] = {}

    def stalled() -> bool:  # both probes together: the loop unblocks between runs
        seen["ready"], seen["live"] = get(service, "/ready"), get(service, "/health", "verbose")
        return seen["ready"].status == 503

    wait_until(stalled, timeout=8.0)
    assert "bad_async" in document(seen["ready"])["output"]
    assert seen["live"].status == 200
    assert "unresponsive" in document(seen["live"])["output"]
    hang.clear()
    dependency_back.set()
    wait_until(lambda: get(service, "/ready").status == 200, timeout=10.0)


def test_a_wall_clock_step_forward_keeps_readiness(make_service: ServiceFactory,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An NTP step or a corrected VM clock moves the wall clock: results are aged on the
    monotonic clock, so an hour forward does not read every result as stale and take every
    pod out of the Service at once."""
    service = make_service(FunctionCheck(lambda: True, "ok"), store_check=False)
    ready_once(service)
    wall_clock = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: wall_clock() + 3600 * 10**9)
    response = get(service, "/ready")
    assert (response.status, document(response).get("output")) == (200, None)


def test_a_wall_clock_step_back_still_fails_a_blocked_loop(make_service: ServiceFactory,
                                                           make_monitor: Any,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """An hour back must not make the last pass look an hour younger: with the loop blocked,
    readiness still stops serving it once it is due plus the timeout (plus 2 s) old."""
    blocking, dependency_back = threading.Event(), threading.Event()
    hang = threading.Event()

    async def blocks_the_loop() -> bool:
        if hang.is_set():
            blocking.set()
            dependency_back.wait(10.0)  # deliberately blocking, as in the test above
        return True

    service = make_service(FunctionCheck(blocks_the_loop, "bad_async", timeout=0.5),
                           store_check=False, monitor=make_monitor(health_check_interval=0.5))
    ready_once(service)
    hang.set()
    try:
        wait_until(blocking.is_set)
        wall_clock = time.time_ns
        monkeypatch.setattr(time, "time_ns", lambda: wall_clock() - 3600 * 10**9)
        # Stale after 0.5 + 0.5 + 2 s; the loop stays blocked for 10 s.
        wait_until(lambda: get(service, "/ready").status == 503, timeout=8.0)
    finally:
        hang.clear()
        dependency_back.set()


def test_verbose_shows_a_check_gone_stale_as_failed(make_service: ServiceFactory,
                                                    make_monitor: Any) -> None:
    """/ready?verbose lists what readiness judges: a non-critical check whose result is no
    longer renewed (the loop blocked) shows as fail, not as the pass rendered before."""
    hang, blocking, dependency_back = threading.Event(), threading.Event(), threading.Event()

    async def blocks_the_loop() -> bool:
        if hang.is_set():
            blocking.set()
            dependency_back.wait(10.0)  # deliberately blocking, as in the tests above
        return True

    def listed() -> dict[str, str]:
        checks = document(get(service, "/ready", "verbose"))["checks"]
        return {key: entries[0]["status"] for key, entries in checks.items()}

    service = make_service(FunctionCheck(lambda: False, "optional", critical=False),
                           FunctionCheck(blocks_the_loop, "reranker", critical=False,
                                         timeout=0.5),
                           store_check=False, monitor=make_monitor(health_check_interval=0.5))
    get(service, "/ready")
    wait_until(lambda: listed() == {"optional:status": "fail", "reranker:status": "pass"})
    hang.set()
    try:
        wait_until(blocking.is_set)
        wait_until(lambda: listed()["reranker:status"] == "fail", timeout=8.0)
    finally:
        hang.clear()
        dependency_back.set()


class _WriterDiedStore:
    """The monitor's real store, except that health() reports a writer thread that died and
    could not be started again. A process out of threads (how that happens) cannot be set up
    safely in a test; tests/store/test_writer.py covers how the store detects it."""

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def health(self) -> StoreHealth:
        return dataclasses.replace(self._store.health(), writer_alive=False)


def test_liveness_covers_the_store_writer_thread(make_service: ServiceFactory) -> None:
    """A live writer is listed as a passing liveness component of /health?verbose."""
    service = make_service(FunctionCheck(lambda: True, "ok"), store_check=False)
    response = get(service, "/health", "verbose")
    assert (response.status, document(response)["checks"]["store:writer"]) == (
        200, [{"componentId": "store", "status": "pass"}])


def test_liveness_fails_when_the_store_writer_is_dead(
        make_monitor: MonitorFactory, make_service: ServiceFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead audit writer fails /health, /livez and HEAD with 503 (Kubernetes restarts the
    pod: nothing else brings the audit trail back); readiness is not liveness's business."""
    monitor = make_monitor()
    monkeypatch.setattr(monitor, "store", _WriterDiedStore(monitor.store))
    service = make_service(FunctionCheck(lambda: True, "ok"), store_check=False,
                           monitor=monitor)
    ready_once(service)
    assert [get(service, path, method=method).status
            for path in ("/health", "/livez") for method in ("GET", "HEAD")] == [503] * 4
    verbose = document(get(service, "/health", "verbose"))
    assert (verbose["status"], verbose["output"]) == (
        "fail", "the audit store writer thread has died")
    assert verbose["checks"]["store:writer"] == [{"componentId": "store", "status": "fail"}]


def test_stopped_service_is_not_ready(make_service: ServiceFactory) -> None:
    """After stop() (shutdown) readiness answers 503 'stopped'."""
    service = make_service(FunctionCheck(lambda: True, "ok"), store_check=False)
    ready_once(service)
    service.stop()
    response = get(service, "/ready")
    assert (response.status, document(response)["output"]) == (503, "stopped")


def test_registered_checks_are_picked_up(make_service: ServiceFactory) -> None:
    """@health_check functions join every service unless include_registered=False."""
    @health_check("index", critical=True)
    def index() -> bool:
        return False

    with_registry = make_service(store_check=False)
    without = make_service(store_check=False, include_registered=False)
    assert [c.name for c in with_registry.checks] == ["index"]
    assert without.checks == ()


def test_check_names_must_be_unique(make_service: ServiceFactory) -> None:
    """Two checks under one name could not be told apart in ?exclude=; refused at start-up."""
    with pytest.raises(ValueError, match="named 'db'"):
        make_service(FunctionCheck(lambda: True, "db"), FunctionCheck(lambda: True, "db"))


def test_routes_are_configurable(make_service: ServiceFactory) -> None:
    """paths= moves or adds routes; an empty list removes one; excluded_paths follows."""
    service = make_service(store_check=False, paths={"live": ["/alive"], "monitoring": []})
    assert service.respond("GET", "/health", b"", {}) is None
    assert get(service, "/alive").status == 200
    assert "/alive" in service.excluded_paths
    assert "/api/monitoring" not in service.excluded_paths


@pytest.mark.parametrize(("paths", "message"), [
    ({"livez": "/x"}, "unknown health route"), ({"live": "health"}, "must start with"),
    ({"live": "/ready"}, "used twice"),
])
def test_bad_paths_are_refused(make_service: ServiceFactory, paths: Any, message: str) -> None:
    """Misconfigured routes fail at construction, naming the problem."""
    with pytest.raises(ValueError, match=message):
        make_service(paths=paths)


def test_a_monitor_switched_off_without_a_store_does_not_stop_the_app(
        make_monitor: MonitorFactory, tmp_path: Path) -> None:
    """RAGTRAIL_ENABLED=false on a new pod (no store file yet): building the health service
    must not raise (asking a monitor created switched off for its store raises StoreError when
    there is none), and the service leaves the store alone: no store check, no writer in
    liveness, no sampler, no database file."""
    store_file = tmp_path / "never.db"
    monitor = make_monitor(enabled=False, store_url=f"sqlite:///{store_file}")
    service = HealthService(monitor, [FunctionCheck(lambda: True, "ok")])
    try:
        ready_once(service)
        live = get(service, "/health", "verbose")
        assert ([c.name for c in service.checks], service.sampler) == (["ok"], None)
        assert (live.status, list(document(live)["checks"])) == (200, ["check-loop:heartbeat"])
        assert not store_file.exists()
    finally:
        service.stop()
