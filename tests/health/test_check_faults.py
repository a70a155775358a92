"""Checks that misbehave: raising what is not an Exception, raising what cannot be printed,
returning values JSON cannot carry, or being async in a way inspect does not see. Each
reports a result; none stops the check loop or breaks a route."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from ragtrail.health import CheckResult, FunctionCheck, HealthResponse, HealthService

from ._servers import wait_until
from .conftest import ServiceFactory


class ChecksGaveUp(BaseException):
    """A BaseException of a library's own (as gevent's Timeout or trio's Cancelled are)."""


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


def get(service: HealthService, path: str, query: str = "") -> HealthResponse:
    response = service.respond("GET", path, query, {})
    assert response is not None
    return response


def detailed_entry(service: HealthService, key: str) -> dict[str, Any]:
    body = get(service, "/api/health/detailed").body

    def refuse(constant: str) -> float:
        raise ValueError(f"{constant} is not JSON")

    entry: dict[str, Any] = json.loads(body, parse_constant=refuse)["checks"][key][0]
    return entry


def raising(kind: str, error: BaseException, runs: list[int]) -> Callable[[], Any]:
    def sync_check() -> None:
        runs.append(1)
        raise error

    async def async_check() -> None:
        runs.append(1)
        raise error

    return sync_check if kind == "sync" else async_check


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(("error", "output"), [
    (SystemExit(3), "SystemExit: 3"),
    (KeyboardInterrupt("interrupted"), "KeyboardInterrupt: interrupted"),
    (ChecksGaveUp("gave up"), "ChecksGaveUp: gave up"),
])
def test_a_base_exception_fails_the_check_and_the_loop_lives_on(
        make_service: ServiceFactory, kind: str, error: BaseException, output: str) -> None:
    """A check raising SystemExit, KeyboardInterrupt or another BaseException fails with its
    message, runs again, and liveness stays 200 (asyncio re-raises the first two out of the
    loop, which stopped every check and failed liveness: a restart loop)."""
    runs: list[int] = []
    service = make_service(FunctionCheck(raising(kind, error, runs), "raises"),
                           FunctionCheck(lambda: True, "ok"), store_check=False)
    get(service, "/ready")
    wait_until(lambda: len(runs) >= 3)
    entry = detailed_entry(service, "raises:status")
    live = get(service, "/health")
    assert (entry["status"], entry["output"], live.status) == ("fail", output, 200)
    assert get(service, "/ready").status == 503


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_exception_that_cannot_be_printed_still_fails_the_check(
        make_service: ServiceFactory, kind: str) -> None:
    """An exception whose __str__ raises is reported by its type; readiness does not wait
    for it forever as "starting"."""
    service = make_service(FunctionCheck(raising(kind, Unprintable(), []), "odd"),
                           store_check=False)
    get(service, "/ready")
    wait_until(lambda: "odd" in service.results)
    entry = detailed_entry(service, "odd:status")
    assert (entry["status"], entry["output"]) == (
        "fail", "Unprintable: (its message could not be read)")
    assert json.loads(get(service, "/ready").body)["output"] == "failing: odd"


def test_a_sync_check_raising_stop_iteration_fails_at_once(make_service: ServiceFactory
                                                          ) -> None:
    """``next()`` on an empty result raises StopIteration, which an asyncio future refuses to
    carry: the check fails with it at once instead of "timed out" after its whole timeout."""
    def first_row() -> bool:
        return bool(next(iter([])))

    service = make_service(FunctionCheck(first_row, "rows", timeout=5.0), store_check=False)
    get(service, "/ready")
    wait_until(lambda: "rows" in service.results, timeout=3.0)
    result = service.results["rows"]
    assert (result.status, result.output, result.timed_out) == ("fail", "StopIteration", False)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_observed_values_keep_the_document_valid_json(
        make_service: ServiceFactory, value: float) -> None:
    """NaN and infinities (a ratio of zero requests, say) are not JSON (RFC 8259): they are
    written as null, as JSON.stringify does, instead of making the document unparseable."""
    service = make_service(FunctionCheck(
        lambda: CheckResult("pass", observed_value=value, observed_unit="ratio"), "ratio"),
        store_check=False)
    get(service, "/ready")
    wait_until(lambda: "ratio" in service.results)
    entry = detailed_entry(service, "ratio:status")
    assert (entry["status"], entry["observedValue"], entry["observedUnit"]) == (
        "pass", None, "ratio")


class AsyncCallable:
    """A check object whose __call__ is async (inspect.iscoroutinefunction says False)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> CheckResult:
        self.calls += 1
        return CheckResult("pass", observed_value=self.calls, observed_unit="calls")


def test_an_object_with_an_async_call_runs_as_an_async_check(
        make_service: ServiceFactory) -> None:
    """An instance with ``async def __call__`` is awaited on the check loop, not called in a
    thread (which returned an un-awaited coroutine and failed)."""
    target = AsyncCallable()
    check = FunctionCheck(target, "vector_index")
    service = make_service(check, store_check=False)
    get(service, "/ready")
    wait_until(lambda: "vector_index" in service.results)
    assert (check.is_async, service.results["vector_index"].status) == (True, "pass")


def test_a_sync_check_returning_a_coroutine_fails_saying_why(
        make_service: ServiceFactory) -> None:
    """A sync wrapper around an async function returns a coroutine nobody awaits: the check
    fails saying to declare it async, and the coroutine is closed (no "never awaited"
    warning, which this suite turns into an error)."""
    async def ping() -> bool:
        return True

    def wrapper() -> Any:
        return ping()

    service = make_service(FunctionCheck(wrapper, "wrapped"), store_check=False)
    get(service, "/ready")
    wait_until(lambda: "wrapped" in service.results)
    result = service.results["wrapped"]
    assert (result.status, result.output) == (
        "fail", "check returned a coroutine: a sync function that wraps an async one; "
                "declare the check itself async def")
