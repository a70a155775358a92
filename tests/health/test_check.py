"""HealthCheck, CheckResult and the ``@health_check`` registry."""

from __future__ import annotations

import asyncio
import math

import pytest

from ragtrail.health import (
    CheckResult,
    FunctionCheck,
    HealthCheck,
    health_check,
    registered_checks,
)
from ragtrail.health._check import normalise_outcome


@pytest.mark.parametrize(("outcome", "status"), [
    (None, "pass"), (True, "pass"), (False, "fail"), (CheckResult("warn", "slow"), "warn"),
    ("ok", "fail"), (1, "fail"),
])
def test_outcomes_map_to_statuses(outcome: object, status: str) -> None:
    """None/True pass, False fails, a CheckResult is kept, anything else fails."""
    assert normalise_outcome(outcome).status == status


def test_result_rejects_unknown_status() -> None:
    """Only the draft's three statuses exist; a typo fails loudly at construction."""
    with pytest.raises(ValueError, match="pass, warn, fail"):
        CheckResult("ok")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "has space", "a:b", "x" * 65, "-leading", "ümlaut",
                                  "trailing-newline\n"])
def test_check_names_are_query_and_key_safe(name: str) -> None:
    """Names travel in ?exclude= and in checks keys, so unsafe ones are refused."""
    with pytest.raises(ValueError, match="check name"):
        FunctionCheck(lambda: None, name)


def test_timeout_and_measurement_are_validated() -> None:
    """A timeout that is not a finite number of seconds > 0 (infinity could bound nothing)
    or a measurement with ':' would break the contract; both are refused."""
    for timeout in (0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite number of seconds > 0"):
            FunctionCheck(lambda: None, "x", timeout=timeout)
    with pytest.raises(ValueError, match="measurement"):
        FunctionCheck(lambda: None, "x", measurement="a:b")


def test_key_is_component_colon_measurement() -> None:
    """The checks map key follows the draft: componentName:measurementName."""
    assert FunctionCheck(lambda: None, "ollama", measurement="responseTime").key == \
        "ollama:responseTime"


def test_sync_and_async_functions_are_told_apart() -> None:
    """The runner needs to know once whether to await a check or run it in a thread."""
    async def probe() -> bool:
        await asyncio.sleep(0)
        return True

    class Subclassed(HealthCheck):
        async def check(self) -> CheckResult:
            return CheckResult("pass")

    assert FunctionCheck(probe).is_async
    assert not FunctionCheck(lambda: True, "sync").is_async
    assert Subclassed("sub").is_async


def test_decorator_registers_and_returns_the_function_unchanged() -> None:
    """@health_check leaves the function callable as before and registers a check."""
    @health_check("vector_index", critical=False, timeout=2.0)
    def vector_index() -> bool:
        return True

    assert vector_index() is True
    check = {c.name: c for c in registered_checks()}["vector_index"]
    assert (check.critical, check.timeout, check.is_async) == (False, 2.0, False)


def test_bare_decorator_uses_the_function_name() -> None:
    """@health_check without arguments names the check after the function."""
    @health_check
    async def reranker() -> None:
        return None

    check = {c.name: c for c in registered_checks()}["reranker"]
    assert check.critical
    assert check.is_async


def test_two_functions_cannot_share_a_name() -> None:
    """A second, different function under a taken name is a mistake worth an error."""
    @health_check("db")
    def first() -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):
        @health_check("db")
        def second() -> None:
            return None
