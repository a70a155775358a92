"""What a health check is, what it reports, and the ``@health_check`` registry.

Statuses and field names follow the IETF draft "Health Check Response Format for HTTP APIs"
(draft-inadarei-api-health-check): ``pass``, ``warn``, ``fail``; ``observedValue``,
``observedUnit``, ``output``. A check is keyed ``component:measurement`` in the ``checks`` map.
"""

from __future__ import annotations

import abc
import inspect
import math
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

__all__ = [
    "CheckOutcome",
    "CheckResult",
    "FunctionCheck",
    "HealthCheck",
    "Status",
    "aggregate",
    "health_check",
    "is_check_name",
    "normalise_outcome",
    "registered_checks",
    "worst",
]

Status = Literal["pass", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail")

# Names travel in ``?exclude=`` and ``?check=`` query strings and in the checks map keys,
# so they stay URL- and key-safe.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_check_name(text: object) -> bool:
    return isinstance(text, str) and _NAME.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One run of a check; ``time_us`` and ``duration_ms`` are stamped by the runner.

    >>> CheckResult("warn", "412 ms, above 250 ms", observed_value=412, observed_unit="ms").status
    'warn'
    """

    status: Status
    output: str = ""
    observed_value: float | int | str | None = None
    observed_unit: str | None = None
    timed_out: bool = False
    time_us: int = 0
    duration_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of pass, warn, fail; got {self.status!r}")


CheckOutcome = CheckResult | bool | None
"""What a check may return: a result, True/None for pass, False for fail."""


def normalise_outcome(outcome: object) -> CheckResult:
    """Turn whatever a check returned into a ``CheckResult``."""
    if isinstance(outcome, CheckResult):
        return outcome
    if outcome is None or outcome is True:
        return CheckResult("pass")
    if outcome is False:
        return CheckResult("fail", "check returned False")
    if inspect.iscoroutine(outcome):
        outcome.close()  # never awaited: closed here rather than warned about at collection
        return CheckResult("fail", "check returned a coroutine: a sync function that wraps an "
                           "async one; declare the check itself async def")
    return CheckResult("fail", f"check returned an unsupported {type(outcome).__name__}")


def aggregate(checks: Iterable[HealthCheck], results: Mapping[str, CheckResult]
              ) -> tuple[Status, str]:
    """fail if a critical check fails; warn if any other fails or warns; else pass.

    Checks without a result yet are left out (readiness treats them as "starting").
    """
    failing: list[str] = []
    status: Status = "pass"
    for check in checks:
        result = results.get(check.name)
        if result is None or result.status == "pass":
            continue
        if result.status == "fail" and check.critical:
            failing.append(check.name)
        else:
            status = "warn"
    if failing:
        return "fail", "failing: " + ", ".join(failing)
    return status, ""


def worst(statuses: Iterable[Status]) -> Status:
    found = set(statuses)
    return "fail" if "fail" in found else "warn" if "warn" in found else "pass"


class HealthCheck(abc.ABC):
    """A dependency or resource the service needs, checked in the background.

    Subclasses implement ``check()``, either as a plain method (run in a worker thread) or as
    ``async def`` (run on the checks' event loop). Either way the runner bounds it by
    ``timeout`` (None: ``settings.health_check_timeout``). A failing ``critical`` check makes
    readiness fail; a failing non-critical one only makes it warn.
    """

    def __init__(
        self,
        name: str,
        *,
        critical: bool = True,
        timeout: float | None = None,
        measurement: str = "status",
        component_type: str | None = None,
    ) -> None:
        if not is_check_name(name):
            raise ValueError(
                f"check name must be 1-64 letters, digits, '_', '.' or '-'; got {name!r}")
        # Finite, as the settings' timeout: an infinite one cannot bound a run or a refresh.
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(
                f"check timeout must be a finite number of seconds > 0; got {timeout!r}")
        if not measurement or ":" in measurement:
            raise ValueError(
                f"measurement must be a non-empty name without ':'; got {measurement!r}")
        self.name = name
        self.critical = critical
        self.timeout = timeout
        self.measurement = measurement
        self.component_type = component_type

    @property
    def key(self) -> str:
        """The key in the ``checks`` map, ``component:measurement`` as the draft asks."""
        return f"{self.name}:{self.measurement}"

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.check)

    @abc.abstractmethod
    def check(self) -> CheckOutcome | Awaitable[CheckOutcome]:
        """Look at the dependency once; raise or return a failing result when it is unwell."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, critical={self.critical})"


class FunctionCheck(HealthCheck):
    """A check made from any sync or async callable taking no arguments."""

    def __init__(self, function: Callable[[], Any], name: str | None = None, **options: Any
                 ) -> None:
        super().__init__(name or function.__name__, **options)
        self.function = function
        # An object whose __call__ is async counts too (inspect does not look there).
        self._async = inspect.iscoroutinefunction(function) or \
            inspect.iscoroutinefunction(type(function).__call__)

    @property
    def is_async(self) -> bool:
        return self._async

    def check(self) -> CheckOutcome | Awaitable[CheckOutcome]:
        outcome: CheckOutcome | Awaitable[CheckOutcome] = self.function()
        return outcome


_registry: dict[str, FunctionCheck] = {}
_registry_lock = threading.Lock()

F = TypeVar("F", bound=Callable[[], Any])


@overload
def health_check(function: F, /) -> F: ...


@overload
def health_check(
    name: str | None = None,
    *,
    critical: bool = True,
    timeout: float | None = None,
    measurement: str = "status",
) -> Callable[[F], F]: ...


def health_check(
    name: str | Callable[[], Any] | None = None,
    *,
    critical: bool = True,
    timeout: float | None = None,
    measurement: str = "status",
) -> Any:
    """Register a sync or async callable as a check every ``HealthService`` picks up.

    The function is returned unchanged. It passes by returning None or True, fails by
    returning False or raising, or returns a ``CheckResult``.

    >>> @health_check("vector_index", critical=True, timeout=2.0)
    ... def vector_index() -> bool:
    ...     return True
    """
    if callable(name):
        return health_check()(name)

    def register(function: F) -> F:
        check = FunctionCheck(function, name, critical=critical, timeout=timeout,
                              measurement=measurement)
        with _registry_lock:
            previous = _registry.get(check.name)
            if previous is not None and _identity(previous.function) != _identity(function):
                raise ValueError(f"a health check named {check.name!r} is already registered "
                                 f"({_identity(previous.function)})")
            _registry[check.name] = check
        return function

    return register


def _identity(function: Callable[[], Any]) -> str:
    """Module and qualified name: re-importing a module re-registers the same check."""
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


def registered_checks() -> tuple[HealthCheck, ...]:
    """The checks registered with ``@health_check`` so far, in registration order."""
    with _registry_lock:
        return tuple(_registry.values())


def unregister_check(name: str) -> None:
    """Forget a registered check (tests and plugin teardown); unknown names are ignored."""
    with _registry_lock:
        _registry.pop(name, None)
