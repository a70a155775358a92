"""The data behind ``/api/monitoring``: recent security events, latest metrics, store health.

Collected in a worker thread (queries can be slow when the store's database is), never on the
request path; the service keeps the last collection for a short while.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from ragtrail._records import MetricsSample, SecurityEvent
from ragtrail.health._render import iso_time
from ragtrail.health._sampler import MetricsSampler
from ragtrail.health._seams import MonitorLike

__all__ = ["collect", "collect_live", "metrics_document"]

log = logging.getLogger("ragtrail.health")


def collect(monitor: MonitorLike, sampler: MetricsSampler | None, events_limit: int
            ) -> dict[str, Any]:
    """Everything, the store's database queried: for a worker thread."""
    store = monitor.store

    def latest_metrics() -> dict[str, Any] | None:
        if sampler is not None and sampler.latest is not None:
            return metrics_document(sampler.latest, sampler)
        latest = next(iter(store.metrics(limit=1)), None)
        return None if latest is None else metrics_document(latest)

    return {
        "events": _part("events", lambda: [_event(e) for e in store.events(limit=events_limit)]),
        "metrics": _part("metrics", latest_metrics),
        **collect_live(monitor),
    }


def collect_live(monitor: MonitorLike) -> dict[str, Any]:
    """The store's and the monitor's own counters, from memory: never waits on a database,
    so it stays current while the database hangs, when it matters most."""
    health = _part("monitor", lambda: dict(monitor.health()))  # never opens a store
    return {"store": health.get("store"), "monitor": health}


def _part(name: str, read: Callable[[], Any]) -> Any:
    # One unreadable part (say, the events query while the database is down) must not hide
    # the others, which are exactly what the on-call engineer needs then.
    try:
        return read()
    except Exception as exc:
        log.warning("ragtrail /api/monitoring could not read %s: %s", name, type(exc).__name__)
        return {"error": f"unavailable ({type(exc).__name__})"}


def _event(event: SecurityEvent) -> dict[str, Any]:
    return {
        "time": iso_time(event.time_us),
        "event_type": event.event_type,
        "severity": str(event.severity),
        "source": event.source,
        "description": event.description,
        "count": event.count,
        "correlation_id": event.correlation_id,
        "trace_id": event.trace_id,
        "metadata": event.metadata,
    }


def metrics_document(sample: MetricsSample, sampler: MetricsSampler | None = None
                     ) -> dict[str, Any]:
    """A sample as JSON; from the live ``sampler``, with the container limits it measured
    CPU and memory against (None: the host's)."""
    document = dataclasses.asdict(sample)
    document["time"] = iso_time(document.pop("time_us"))
    if sampler is not None:
        document["cpu_limit_cores"] = sampler.levels.cpu_limit_cores
        document["memory_limit_bytes"] = sampler.levels.memory_limit_bytes
    return document

