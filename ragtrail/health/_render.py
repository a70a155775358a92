"""Health documents (``application/health+json``) and the HTTP responses that carry them.

Format: IETF draft "Health Check Response Format for HTTP APIs" (draft-inadarei-api-health-check):
top-level ``status``, ``version``, ``serviceId``, ``description``, ``output``, ``notes`` and
``checks``, a map of ``component:measurement`` to lists of objects with ``componentId``,
``componentType``, ``status``, ``observedValue``, ``observedUnit``, ``time`` and ``output``.
ragtrail adds ``critical``, ``cached`` and ``timedOut`` to each check object.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragtrail._finite import finite
from ragtrail._records import from_epoch_us, utc_iso
from ragtrail.health._check import CheckResult, HealthCheck, Status

__all__ = [
    "HEALTH_JSON",
    "TEXT",
    "Deferred",
    "HealthResponse",
    "check_entry",
    "dumps",
    "health_document",
    "iso_time",
    "respond_with",
]

HEALTH_JSON = "application/health+json"
TEXT = "text/plain; charset=utf-8"
# Kubernetes probes and load balancers must never see a cached answer (RFC 9111 section 5.2.2.5).
_NO_STORE = ("cache-control", "no-store")


@dataclass(frozen=True, slots=True)
class HealthResponse:
    """A complete HTTP response for a health route, framework-neutral.

    Header names are lowercase; for HEAD the body is empty and ``content-length`` is the
    length the GET body would have.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Deferred:
    """An answer that needs ``future`` first; ``finish(completed)`` renders it either way."""

    future: concurrent.futures.Future[Any]
    timeout: float
    finish: Callable[[bool], HealthResponse]


def dumps(document: Any) -> bytes:
    try:
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str,
                          allow_nan=False)
    except ValueError:  # NaN or infinity (a check's 0/0, say): not JSON (RFC 8259 section 6)
        text = json.dumps(finite(document), separators=(",", ":"), ensure_ascii=False,
                          default=str)
    return text.encode("utf-8")


def respond_with(
    status: int,
    body: bytes,
    content_type: str,
    *,
    head: bool,
    extra: Iterable[tuple[str, str]] = (),
    cache: bool = True,
) -> HealthResponse:
    """A response; ``cache=False`` leaves out ``Cache-Control: no-store``."""
    headers = [("content-type", content_type), *([_NO_STORE] if cache else []),
               ("content-length", str(len(body))), *extra]
    return HealthResponse(status, headers, b"" if head else body)


def iso_time(time_us: int) -> str:
    return utc_iso(from_epoch_us(time_us), "milliseconds")


def check_entry(check: HealthCheck, result: CheckResult | None, *, detailed: bool,
                cached: bool = True) -> dict[str, Any]:
    """One check object; probe routes get the name and status only (no outputs, no values)."""
    if result is None:
        # Not reported yet: a critical check in this state is what keeps readiness at 503.
        pending: Status = "fail" if check.critical else "warn"
        entry: dict[str, Any] = {"componentId": check.name, "status": pending,
                                 "critical": check.critical}
        if detailed:
            entry.update(output="no result yet", cached=False, timedOut=False)
        return entry
    entry = {"componentId": check.name, "status": result.status, "critical": check.critical}
    if not detailed:
        return entry
    if check.component_type:
        entry["componentType"] = check.component_type
    if result.observed_value is not None:
        entry["observedValue"] = result.observed_value
    if result.observed_unit:
        entry["observedUnit"] = result.observed_unit
    entry["time"] = iso_time(result.time_us)
    if result.output:
        entry["output"] = result.output
    entry.update(cached=cached, timedOut=result.timed_out)
    return entry


def health_document(
    status: Status,
    *,
    service: str,
    version: str,
    description: str,
    output: str = "",
    notes: Sequence[str] = (),
    checks: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {"status": status, "version": version, "serviceId": service,
                                "description": description}
    if output:
        document["output"] = output
    if notes:
        document["notes"] = list(notes)
    if checks is not None:
        document["checks"] = checks
    return document
