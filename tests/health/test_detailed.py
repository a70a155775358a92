"""The detailed routes: access control, the dependencies route with refresh, /api/monitoring."""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from typing import Any

import pytest

from ragtrail import MetricsSample, Severity
from ragtrail.health import (
    CheckResult,
    FunctionCheck,
    HealthResponse,
    HealthService,
    MetricsSampler,
)
from ragtrail.instrument import Monitor

from ._servers import wait_until
from .conftest import MonitorFactory, ServiceFactory

DETAILED = ("/api/health/detailed", "/api/health/dependencies", "/api/monitoring")
TOKEN = "k8s-probe-token-9f2c41d7e0"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


def call(service: HealthService, path: str, query: str = "",
         headers: dict[str, str] | list[tuple[bytes, bytes]] | None = None) -> HealthResponse:
    response = service.respond("GET", path, query, headers or {})
    assert response is not None
    return response


def document(response: HealthResponse) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(response.body)
    return parsed


def events(monitor: Monitor, event_type: str) -> list[Any]:
    monitor.store.flush(5.0)
    return list(monitor.store.events(event_type=event_type))


@pytest.mark.parametrize("path", DETAILED)
def test_token_is_required_when_configured(make_monitor: MonitorFactory,
                                           make_service: ServiceFactory, path: str) -> None:
    """With api_token set: no or wrong token -> 401 with a Bearer challenge; right one -> 200."""
    service = make_service(monitor=make_monitor(api_token=TOKEN), store_check=False)
    missing = call(service, path)
    wrong = call(service, path, headers={"Authorization": "Bearer not-the-token"})
    right = call(service, path, headers={"authorization": f"bearer {TOKEN}"})
    raw = call(service, path, headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
    assert (missing.status, wrong.status) == (401, 401)
    assert dict(missing.headers)["www-authenticate"] == 'Bearer realm="ragtrail"'
    assert right.status in (200, 503)
    assert raw.status == right.status
    assert TOKEN.encode() not in right.body


def test_probes_never_need_the_token(make_monitor: MonitorFactory,
                                     make_service: ServiceFactory) -> None:
    """The kubelet sends no credentials: liveness and readiness stay open."""
    service = make_service(monitor=make_monitor(api_token=TOKEN), store_check=False)
    assert call(service, "/health").status == 200


def test_token_comparison_is_constant_time(make_monitor: MonitorFactory,
                                           make_service: ServiceFactory,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens are compared with hmac.compare_digest on equal-length digests, never with ==."""
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    service = make_service(monitor=make_monitor(api_token=TOKEN), store_check=False)
    call(service, DETAILED[0], headers={"Authorization": "Bearer x"})
    call(service, DETAILED[0], headers={"Authorization": f"Bearer {TOKEN}"})
    assert compared == [(32, 32), (32, 32)]


def test_failed_attempts_are_recorded_and_a_burst_escalates(
        make_monitor: MonitorFactory, make_service: ServiceFactory) -> None:
    """Each failure is an authn_login_fail (medium); from the 10th in a minute, high (as the
    middleware counts a client's failures)."""
    monitor = make_monitor(api_token=TOKEN)
    service = make_service(monitor=monitor, store_check=False)
    for attempt in range(12):
        call(service, "/api/monitoring", headers={"Authorization": f"Bearer guess-{attempt}"})
    recorded = events(monitor, "authn_login_fail")
    counts = {e.severity: e.count for e in recorded}
    assert counts == {Severity.MEDIUM: 9, Severity.HIGH: 3}
    assert all("guess" not in json.dumps(e.metadata) + e.description for e in recorded)
    assert {e.metadata["path"] for e in recorded} == {"/api/monitoring"}


def test_failures_are_recorded_per_client(make_monitor: MonitorFactory,
                                          make_service: ServiceFactory) -> None:
    """The client is the events' source, as for the middleware's: each client's failures
    coalesce into its own row, so the first guesser's address does not stand for all."""
    monitor = make_monitor(api_token=TOKEN)
    service = make_service(monitor=monitor, store_check=False)
    for client in ("10.0.0.1", "10.0.0.2", "10.0.0.1"):
        service.respond("GET", "/api/monitoring", "", {"Authorization": "Bearer nope"},
                        client=client)
    recorded = events(monitor, "authn_login_fail")
    assert sorted((e.source, e.count) for e in recorded) == [("10.0.0.1", 2), ("10.0.0.2", 1)]


@pytest.mark.parametrize("path", DETAILED)
def test_production_without_token_hides_detailed_routes(
        make_monitor: MonitorFactory, make_service: ServiceFactory, path: str) -> None:
    """environment=production and no token: 404 for every method, as if the routes did not
    exist (no Cache-Control either, which a plain 404 lacks)."""
    service = make_service(monitor=make_monitor(environment="production"), store_check=False)
    assert (call(service, path).status, call(service, "/health").status) == (404, 200)
    for method in ("GET", "POST", "OPTIONS"):
        hidden = service.respond(method, path, "", {})
        assert hidden is not None
        assert hidden.status == 404
        assert "cache-control" not in dict(hidden.headers)


@pytest.mark.parametrize("method", ["OPTIONS", "POST"])
def test_a_wrong_method_is_no_failed_login(make_monitor: MonitorFactory,
                                           make_service: ServiceFactory, method: str) -> None:
    """A CORS preflight never carries credentials: 405, not 401, and no authn_login_fail."""
    monitor = make_monitor(api_token=TOKEN)
    service = make_service(monitor=monitor, store_check=False)
    response = service.respond(method, "/api/monitoring", "", {"origin": "https://dash.example"})
    assert response is not None
    assert (response.status, dict(response.headers)["allow"]) == (405, "GET, HEAD")
    assert events(monitor, "authn_login_fail") == []


@pytest.mark.parametrize("blank", ["", "   "])
def test_production_with_a_blank_token_hides_detailed_routes(
        make_monitor: MonitorFactory, make_service: ServiceFactory, blank: str) -> None:
    """api_token=os.environ.get("TOKEN", "") with the variable missing is no token at all:
    404 in production, as the start-up posture scan says, never routes open to anyone."""
    monitor = make_monitor(environment="production", api_token=blank)
    service = make_service(monitor=monitor, store_check=False)
    assert monitor.settings.api_token is None
    assert [call(service, path).status for path in DETAILED] == [404] * len(DETAILED)


def test_production_routes_can_be_opened_explicitly(
        make_monitor: MonitorFactory, make_service: ServiceFactory) -> None:
    """detailed_routes_open=True serves them in production without a token."""
    service = make_service(monitor=make_monitor(environment="production",
                                                detailed_routes_open=True), store_check=False)
    assert call(service, "/api/health/detailed").status == 200


def test_production_with_token_asks_for_it(make_monitor: MonitorFactory,
                                           make_service: ServiceFactory) -> None:
    """A token in production means 401 without it (not 404): the route is protected, not hidden."""
    service = make_service(monitor=make_monitor(environment="production", api_token=TOKEN),
                           store_check=False)
    assert call(service, "/api/health/detailed").status == 401


def test_detailed_shows_outputs_values_and_flags(make_service: ServiceFactory) -> None:
    """The detailed route has what probes hide: output, observedValue/Unit, time, flags."""
    def slow() -> CheckResult:
        return CheckResult("warn", "412 ms", observed_value=412, observed_unit="ms")

    service = make_service(FunctionCheck(slow, "ollama", measurement="responseTime"),
                           store_check=False)
    call(service, "/ready")
    wait_until(lambda: "ollama" in service.results)
    body = document(call(service, "/api/health/detailed"))
    entry = body["checks"]["ollama:responseTime"][0]
    assert {k: entry[k] for k in ("componentId", "status", "observedValue", "observedUnit",
                                  "output", "critical", "cached", "timedOut")} == {
        "componentId": "ollama", "status": "warn", "observedValue": 412, "observedUnit": "ms",
        "output": "412 ms", "critical": True, "cached": True, "timedOut": False}
    assert entry["time"].endswith("Z")
    assert body["checks"]["check-loop:heartbeat"][0]["status"] == "pass"
    assert body["status"] == "warn"


def test_a_raising_check_fails_with_its_message_redacted(make_service: ServiceFactory) -> None:
    """An exception becomes fail with a redacted output, on every route: never a 500."""
    def leaky() -> None:
        raise ConnectionError(f"auth failed for Bearer {JWT}")

    service = make_service(FunctionCheck(leaky, "vectors"), store_check=False)
    call(service, "/ready")
    wait_until(lambda: "vectors" in service.results)
    statuses = {p: call(service, p).status for p in ("/ready", "/health", *DETAILED)}
    detailed = document(call(service, "/api/health/detailed"))
    output = detailed["checks"]["vectors:status"][0]["output"]
    assert statuses == {"/ready": 503, "/health": 200, "/api/health/detailed": 503,
                        "/api/health/dependencies": 503, "/api/monitoring": 200}
    assert output.startswith("ConnectionError: auth failed for ")
    assert JWT not in output
    assert "[REDACTED]" in output


def test_transition_to_fail_records_one_event(make_service: ServiceFactory,
                                              monitor: Monitor) -> None:
    """dependency_unhealthy on each pass->fail transition (high if critical), not every run."""
    healthy = threading.Event()
    optional_runs = []

    def optional() -> bool:
        optional_runs.append(1)
        return False

    service = make_service(FunctionCheck(healthy.is_set, "critical_dep"),
                           FunctionCheck(optional, "optional_dep", critical=False),
                           store_check=False)
    call(service, "/ready")
    wait_until(lambda: len(optional_runs) >= 4)  # several failing runs
    healthy.set()
    wait_until(lambda: service.results["critical_dep"].status == "pass")
    healthy.clear()
    wait_until(lambda: service.results["critical_dep"].status == "fail")
    recorded = {(e.metadata["check"], e.severity): e.count
                for e in events(monitor, "dependency_unhealthy")}
    assert recorded == {("critical_dep", Severity.HIGH): 2, ("optional_dep", Severity.MEDIUM): 1}


def test_each_failing_dependency_gets_its_own_event(make_service: ServiceFactory,
                                                   monitor: Monitor) -> None:
    """Two critical checks failing are two events (and so two alerts), not one row whose
    count says 2 under the first check's name: the source names the check."""
    service = make_service(FunctionCheck(lambda: False, "ollama"),
                           FunctionCheck(lambda: False, "vectordb"), store_check=False)
    call(service, "/ready")
    wait_until(lambda: len(events(monitor, "dependency_unhealthy")) == 2)
    assert sorted((e.source, e.metadata["check"], e.count)
                  for e in events(monitor, "dependency_unhealthy")) == [
        ("ragtrail.health:ollama", "ollama", 1), ("ragtrail.health:vectordb", "vectordb", 1)]


def test_dependencies_route_filters_and_refreshes(make_service: ServiceFactory) -> None:
    """?check=name shows one check; &refresh=1 runs it now (cached: false), then 429s."""
    runs = {"n": 0}

    def counted() -> bool:
        runs["n"] += 1
        return True

    service = make_service(FunctionCheck(counted, "ollama"), FunctionCheck(lambda: True, "db"),
                           store_check=False, refresh_min_interval=30.0)
    call(service, "/ready")
    wait_until(lambda: len(service.results) == 2)
    one = document(call(service, "/api/health/dependencies", "check=db"))
    assert list(one["checks"]) == ["db:status"]
    before = runs["n"]
    refreshed = call(service, "/api/health/dependencies", "check=ollama&refresh=1")
    entry = document(refreshed)["checks"]["ollama:status"][0]
    assert (refreshed.status, entry["cached"], runs["n"]) == (200, False, before + 1)
    again = call(service, "/api/health/dependencies", "check=ollama&refresh=1")
    assert again.status == 429
    assert 0 < int(dict(again.headers)["retry-after"]) <= 30
    assert call(service, "/api/health/dependencies", "check=nope").status == 404
    assert call(service, "/api/health/dependencies", "refresh=1").status == 400


def test_a_refresh_that_cannot_run_says_so(make_service: ServiceFactory) -> None:
    """After stop() a refresh cannot run: the answer says so and keeps the last result marked
    cached, rather than presenting it as fresh (cached: false)."""
    service = make_service(FunctionCheck(lambda: True, "ollama"), store_check=False,
                           refresh_min_interval=0.0)
    call(service, "/ready")
    wait_until(lambda: "ollama" in service.results)
    service.stop()
    body = document(call(service, "/api/health/dependencies", "check=ollama&refresh=1"))
    assert (body["checks"]["ollama:status"][0]["cached"], body["notes"]) == (
        True, ["refresh failed (the health check runner is not running); this answer is "
               "cached"])


def test_refreshes_racing_shutdown_always_get_an_answer(make_service: ServiceFactory) -> None:
    """Refreshes arriving while the service stops get an answer (the run's result, or "refresh
    failed"), never the exception of a loop closing under them (a 500)."""
    errors: list[BaseException] = []
    statuses: set[int] = set()
    for _ in range(20):
        service = make_service(FunctionCheck(lambda: True, "ollama"), store_check=False,
                               sampler=False, refresh_min_interval=0.0)
        call(service, "/ready")
        stopped = threading.Event()

        def refresh_until_stopped(service: HealthService = service,
                                  stopped: threading.Event = stopped) -> None:
            while not stopped.is_set():
                try:
                    statuses.add(call(service, "/api/health/dependencies",
                                      "check=ollama&refresh=1").status)
                except BaseException as exc:  # the test collects any failure
                    errors.append(exc)

        threads = [threading.Thread(target=refresh_until_stopped) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.02)  # not synchronisation: lets refreshes be under way when stop() runs
        service.stop()
        stopped.set()
        for thread in threads:
            thread.join(10)
    assert (errors, statuses - {200}) == ([], set())


def test_refresh_never_blocks_an_event_loop(make_service: ServiceFactory) -> None:
    """respond() on an event loop thread answers 202 at once; respond_async() awaits the run."""
    def slow() -> bool:
        time.sleep(0.3)
        return True

    service = make_service(FunctionCheck(slow, "slow", timeout=2.0),
                           store_check=False, refresh_min_interval=0.0)

    async def scenario() -> tuple[int, int, bool]:
        started = asyncio.get_running_loop().time()
        quick = service.respond("GET", "/api/health/dependencies", "check=slow&refresh=1", {})
        quick_seconds = asyncio.get_running_loop().time() - started
        awaited = await service.respond_async("GET", "/api/health/dependencies",
                                              "check=slow&refresh=1", {})
        assert quick is not None
        assert awaited is not None
        cached = document(awaited)["checks"]["slow:status"][0]["cached"]
        # Blocking would take the check's 0.3 s; the margin is for a busy CI machine.
        return quick.status, awaited.status, quick_seconds < 0.25 and not cached

    assert asyncio.run(scenario()) == (202, 200, True)


def test_monitoring_returns_events_metrics_store_and_counters(
        make_service: ServiceFactory, monitor: Monitor) -> None:
    """/api/monitoring: recent events, the latest sample, store health and monitor counters."""
    MetricsSampler(monitor, interval=60).observe(MetricsSample(
        time_us=1_700_000_000_000_000, cpu_percent=12.5, memory_percent=40.0,
        disk_usage_percent=55.0, net_sent_bytes_per_s=10.0, net_recv_bytes_per_s=20.0,
        active_connections=3, queue_depth=0, process_rss_bytes=50_000_000))
    monitor.security_event("authz_fail", "medium", "app.documents", "user 7 denied doc 9")
    monitor.store.flush(5.0)
    # No sampler of its own: the latest sample is the store's (another process may sample).
    service = make_service(FunctionCheck(lambda: True, "ok"), sampler=False)
    response = call(service, "/api/monitoring")
    body = document(response)
    assert (response.status, dict(response.headers)["content-type"]) == (
        200, "application/health+json")
    assert [e["event_type"] for e in body["events"]][:1] == ["authz_fail"]
    assert body["metrics"]["cpu_percent"] == 12.5
    assert body["metrics"]["queue_depth"] == 0
    assert body["store"]["status"] == "ok"
    assert "dropped" in body["store"]
    assert "security_events" in body["monitor"]
    # A document of the IETF health format: status a string, checks keyed component:measure.
    # (Readiness may still be starting here: the check need not have reported yet.)
    assert body["status"] in ("pass", "warn", "fail")
    (entry,) = body["checks"]["ok:status"]
    assert (entry["componentId"], entry["critical"]) == ("ok", True)
    assert set(body["probes"]) == {"live", "ready", "draining"}


def test_monitoring_prefers_its_own_samplers_latest_reading(
        make_service: ServiceFactory, monitor: Monitor) -> None:
    """With a sampler, /api/monitoring shows the sampler's newest reading, not the store's."""
    monitor.store.record(MetricsSample(
        time_us=1_700_000_000_000_000, cpu_percent=12.5, memory_percent=40.0,
        disk_usage_percent=55.0, net_sent_bytes_per_s=0.0, net_recv_bytes_per_s=0.0,
        active_connections=0, queue_depth=0, process_rss_bytes=1))
    monitor.store.flush(5.0)
    sampler = MetricsSampler(monitor, interval=3600)
    service = make_service(FunctionCheck(lambda: True, "ok"), sampler=sampler)
    service.start()  # the sampler takes its first reading at once
    wait_until(lambda: sampler.latest is not None)
    latest = sampler.latest
    assert latest is not None
    metrics = document(call(service, "/api/monitoring"))["metrics"]
    assert metrics["process_rss_bytes"] == latest.process_rss_bytes > 1


@pytest.mark.postgres
def test_monitoring_answers_at_once_with_current_counters_while_the_store_hangs(
        postgres_server: Any, postgres_db_url: str, make_monitor: MonitorFactory,
        make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL frozen: the collection hangs in the events query. The first caller waits
    the check timeout, later ones not at all (they used to wait it too, each); all get the
    last collection's events marked stale, with the store's health read now (failing), not
    the "ok" of before the hang.

    The database comes before the monitor in the arguments, so it is dropped after the
    monitor has shut down (fixtures are torn down in reverse order): a monitor still writing
    to a dropped database spent its whole 5 s shutdown timeout retrying."""
    monkeypatch.setattr("ragtrail.health._detailed._MONITORING_MAX_AGE", 0.0)
    monitor = make_monitor(store_url=postgres_db_url)  # health_check_timeout 0.5 s
    monitor.security_event("authz_fail", "medium", "app.documents", "user 7 denied doc 9")
    assert monitor.store.flush(10)
    service = make_service(FunctionCheck(lambda: True, "ok"), monitor=monitor, sampler=False)
    before = document(call(service, "/api/monitoring"))
    assert (before["stale"], before["store"]["status"]) == (None, "ok")
    assert [e["event_type"] for e in before["events"]] == ["authz_fail"]
    monitor.store._writer.stalled_after_s = 0.3  # "failing" without waiting 10 s
    postgres_server.freeze()
    try:
        monitor.security_event("authn_login_fail", "medium", "1.2.3.4", "bad password")
        wait_until(lambda: monitor.store.health().status == "failing", timeout=10)
        first = call(service, "/api/monitoring")
        began = time.monotonic()
        second = call(service, "/api/monitoring")
        assert time.monotonic() - began < 0.3
        for response in (first, second):
            body = document(response)
            assert response.status == 200
            assert body["stale"].startswith("the audit store has not answered for ")
            assert body["collected"] == before["collected"]
            assert [e["event_type"] for e in body["events"]] == ["authz_fail"]
            assert body["store"]["status"] == "failing"
    finally:
        postgres_server.thaw()
    wait_until(lambda: document(call(service, "/api/monitoring"))["stale"] is None, timeout=15)
    # The failing store check may have added a dependency_unhealthy event meanwhile.
    after = [e["event_type"] for e in document(call(service, "/api/monitoring"))["events"]]
    assert {"authn_login_fail", "authz_fail"} <= set(after)


def test_a_slow_collection_is_still_reused(make_service: ServiceFactory,
                                           make_monitor: MonitorFactory,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A collection that takes longer than the reuse window is reused from when it is ready
    (timed from its start, it was stale on arrival and every hit queried the store again)."""
    monkeypatch.setattr("ragtrail.health._detailed._MONITORING_MAX_AGE", 1.0)
    monitor = make_monitor(health_check_timeout=5.0)
    queries = []
    events = monitor.store.events

    def slow_events(**kwargs: Any) -> Any:
        queries.append(kwargs)
        time.sleep(1.2)  # slower than the reuse window, within the timeout
        return events(**kwargs)

    monkeypatch.setattr(monitor.store, "events", slow_events)
    service = make_service(FunctionCheck(lambda: True, "ok"), monitor=monitor, sampler=False)
    bodies = [document(call(service, "/api/monitoring")) for _ in range(3)]
    assert len(queries) == 1
    assert [b["stale"] for b in bodies] == [None] * 3
