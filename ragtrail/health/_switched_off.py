"""The probe routes' answers while ragtrail is switched off.

``RAGTRAIL_ENABLED=false`` is the switch an operator flips when ragtrail itself misbehaves. If
it also stopped answering ``/health`` and ``/ready``, the probes would reach the app and get
its 404, and Kubernetes would restart (liveness) and unroute (readiness) every pod: turning
monitoring off would take the service down. So the probe routes keep answering ``pass`` from
fixed documents, without running a check (readiness still fails while draining after
SIGTERM, and once the health service or its monitor stopped); the detailed routes are left to
the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ragtrail._settings import Settings
from ragtrail.health._render import (
    HEALTH_JSON,
    TEXT,
    HealthResponse,
    dumps,
    health_document,
    respond_with,
)

__all__ = ["SwitchedOffProbes"]

NOTE = "ragtrail is switched off (RAGTRAIL_ENABLED=false): no health check runs"
SHUT_DOWN_NOTE = "ragtrail was shut down: no health check runs"


class SwitchedOffProbes:
    """Answers the liveness and readiness paths, GET and HEAD (else 405): 200 ``pass``, and
    503 on readiness while ``out_of_rotation()`` gives a reason ("draining", "stopped") or
    the monitor was shut down (always "stopped": a stopping pod must not say it is ready)."""

    __slots__ = ("_answers", "_not_allowed", "_out_of_rotation", "_ready", "_shut_down",
                 "paths")

    def __init__(self, live: Iterable[str], ready: Iterable[str], settings: Settings,
                 out_of_rotation: Callable[[], str] = str) -> None:
        self._ready = frozenset(ready)
        self._out_of_rotation = out_of_rotation
        # A monitor configured on and no longer enabled was shut down (not switched off).
        self._shut_down = "stopped" if settings.enabled else ""
        state, note = ("shut down", SHUT_DOWN_NOTE) if settings.enabled else ("switched off", NOTE)

        def answers(code: int, output: str) -> tuple[HealthResponse, HealthResponse]:
            body = dumps(health_document(
                "pass" if code == 200 else "fail", service=settings.service_name,
                version=settings.service_version,
                description=f"{settings.service_name}, ragtrail {state}", output=output,
                notes=[note]))
            return (respond_with(code, body, HEALTH_JSON, head=False),
                    respond_with(code, body, HEALTH_JSON, head=True))

        self._answers = {reason: answers(503 if reason else 200, reason)
                         for reason in ("", "draining", "stopped")}
        self._not_allowed = respond_with(405, b"Method Not Allowed", TEXT, head=False,
                                         extra=[("allow", "GET, HEAD")])
        self.paths = frozenset((*live, *self._ready))

    paths: frozenset[str]
    """Every path answered here."""

    def answer(self, method: str, path: str) -> HealthResponse | None:
        """The response for a probe path; None for any other path (the app's)."""
        if path not in self.paths:
            return None
        if method != "GET" and method != "HEAD":
            return self._not_allowed
        reason = self._out_of_rotation() or self._shut_down if path in self._ready else ""
        get, head = self._answers[reason]
        return get if method == "GET" else head
