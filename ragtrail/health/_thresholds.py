"""Warn/fail thresholds over system metrics, with hysteresis, and the check that reports them.

A reading hovering around a threshold must not flap readiness or flood the audit log, so a
level is entered as soon as the reading reaches its threshold but left only once the reading
drops ``rearm`` points below it; only entering a higher level is an event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ragtrail.health._check import CheckResult, HealthCheck, Status

if TYPE_CHECKING:
    from ragtrail.health._sampler import MetricsSampler

__all__ = ["METRICS", "Hysteresis", "Metric", "ThresholdCheck"]

Metric = Literal["cpu", "memory", "disk"]
METRICS: tuple[Metric, ...] = ("cpu", "memory", "disk")
_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}


class Hysteresis:
    """The level of one metric: ``update()`` returns the new level when it rose, else None.

    >>> h = Hysteresis(warn=85, fail=95)
    >>> h.update(90), h.update(84), h.update(79), h.level
    ('warn', None, None, 'pass')
    """

    def __init__(self, warn: float, fail: float, rearm: float = 5.0) -> None:
        if not 0 <= warn <= fail:
            raise ValueError(f"thresholds need 0 <= warn <= fail; got warn={warn}, fail={fail}")
        if rearm < 0:
            raise ValueError(f"rearm must be >= 0; got {rearm}")
        self.warn = warn
        self.fail = fail
        self.rearm = rearm
        self.level: Status = "pass"
        self.value: float | None = None

    def update(self, value: float) -> Status | None:
        self.value = value
        reached: Status = "fail" if value >= self.fail else "warn" if value >= self.warn else "pass"
        if _RANK[reached] > _RANK[self.level]:
            self.level = reached
            return reached
        # Going down: keep every level whose threshold the reading is still within rearm of.
        held: Status = ("fail" if value >= self.fail - self.rearm
                        else "warn" if value >= self.warn - self.rearm else "pass")
        if _RANK[held] < _RANK[self.level]:
            self.level = held
        return None

    def threshold(self, level: Status) -> float:
        return self.fail if level == "fail" else self.warn


class ThresholdCheck(HealthCheck):
    """Reports a sampler's CPU, memory or disk level (thresholds from the settings).

    Non-critical by default: a busy host should warn, not take every pod out of service.
    """

    def __init__(
        self,
        sampler: MetricsSampler,
        metric: Metric,
        *,
        name: str | None = None,
        critical: bool = False,
        timeout: float | None = None,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
        super().__init__(name or metric, critical=critical, timeout=timeout,
                         measurement="utilization", component_type="system")
        self.sampler = sampler
        self.metric: Metric = metric

    def check(self) -> CheckResult:
        tracker = self.sampler.thresholds[self.metric]
        if tracker.value is None:
            return CheckResult("pass", "no sample yet", observed_unit="percent")
        output = ""
        if tracker.level != "pass":
            output = (f"{self.metric} at {tracker.value:.1f}%"
                      f"{self.sampler.levels.describe(self.metric)}, {tracker.level} threshold "
                      f"{tracker.threshold(tracker.level):g}%")
        return CheckResult(tracker.level, output, observed_value=round(tracker.value, 1),
                           observed_unit="percent")
