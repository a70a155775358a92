"""Periodic psutil readings of the host and this process, written to the audit store.

CPU and memory are shares of the container's limits where its cgroup sets them
(``_container``), since those are what throttle a pod or get it OOM-killed. Connections are
counted for this process only: the system-wide ``psutil.net_connections()`` walks every socket
of the host and costs milliseconds (issue #4), where this one is cheap.
"""

from __future__ import annotations

import logging
import threading
import time

import psutil

from ragtrail._records import MetricsSample, Severity
from ragtrail._threads import start_quietly
from ragtrail.health._container import ResourceLevels
from ragtrail.health._seams import MonitorLike
from ragtrail.health._thresholds import METRICS, Hysteresis, Metric

__all__ = ["MetricsSampler"]

log = logging.getLogger("ragtrail.health")
_SOURCE = "ragtrail.health.metrics"


class MetricsSampler:
    """Samples CPU, memory, disk, network rates, RSS, connections and writer queue depth.

    CPU and memory are percentages of the container's limits when its cgroup sets them
    (``levels.cpu_limit_cores`` and ``levels.memory_limit_bytes`` say so), else of the host.

    ``start()`` samples every ``interval`` seconds (default ``settings.monitoring_interval``)
    on a daemon thread; ``observe()`` feeds a reading taken elsewhere through the same
    thresholds. Each level rise records a ``resource_threshold`` event (medium for warn, high
    for fail); ``ThresholdCheck`` reports the levels to the health routes.
    """

    def __init__(
        self,
        monitor: MonitorLike | None = None,
        *,
        interval: float | None = None,
        disk_path: str = "/",
        rearm_points: float = 5.0,
    ) -> None:
        if monitor is None:
            from ragtrail.instrument import get_monitor

            monitor = get_monitor()
        self.monitor: MonitorLike = monitor
        settings = monitor.settings
        self.interval = settings.monitoring_interval if interval is None else interval
        if not self.interval > 0:
            raise ValueError(f"interval must be a number of seconds > 0; got {interval!r}")
        self.disk_path = disk_path
        self.thresholds: dict[Metric, Hysteresis] = {
            metric: Hysteresis(getattr(settings, f"{metric}_warn_percent"),
                               getattr(settings, f"{metric}_fail_percent"), rearm_points)
            for metric in METRICS
        }
        self.levels = ResourceLevels()
        self.latest: MetricsSample | None = None
        self._lock = threading.Lock()
        self._process = psutil.Process()
        # psutil 6 renamed Process.connections; the 5.9 releases ragtrail supports have only
        # the old name (every sample failed there: no metrics, no threshold events).
        self._connections = getattr(self._process, "net_connections", None) \
            or self._process.connections
        self._last_net: tuple[float, int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.levels.cpu_percent()  # the first call only primes the counters
        self._thread = threading.Thread(target=self._run, name="ragtrail-metrics", daemon=True)
        start_quietly(self._thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def sample(self) -> MetricsSample:
        """Read psutil now, apply the thresholds and record the sample."""
        now = time.monotonic()
        net = psutil.net_io_counters()
        sent_rate = recv_rate = 0.0
        if self._last_net is not None and now > self._last_net[0]:
            elapsed = now - self._last_net[0]
            sent_rate = max(0.0, (net.bytes_sent - self._last_net[1]) / elapsed)
            recv_rate = max(0.0, (net.bytes_recv - self._last_net[2]) / elapsed)
        self._last_net = (now, net.bytes_sent, net.bytes_recv)
        try:
            connections = len(self._connections(kind="inet"))
        except psutil.Error:  # e.g. AccessDenied on some platforms
            connections = 0
        reading = MetricsSample(
            time_us=time.time_ns() // 1000,
            cpu_percent=self.levels.cpu_percent(),
            memory_percent=self.levels.memory_percent(),
            disk_usage_percent=psutil.disk_usage(self.disk_path).percent,
            net_sent_bytes_per_s=sent_rate,
            net_recv_bytes_per_s=recv_rate,
            active_connections=connections,
            queue_depth=self.monitor.store.health().queue_depth,
            process_rss_bytes=self._process.memory_info().rss,
        )
        self.observe(reading)
        return reading

    def observe(self, reading: MetricsSample) -> None:
        """Apply the thresholds to a reading, record events on rises, and store it."""
        values = {"cpu": reading.cpu_percent, "memory": reading.memory_percent,
                  "disk": reading.disk_usage_percent}
        with self._lock:  # sample() on the thread and observe() from a caller may race
            self.latest = reading
            rises = [(m, self.thresholds[m].update(values[m])) for m in METRICS]
        for metric, level in rises:
            if level is not None:
                self._record_rise(metric, level, values[metric])
        self.monitor.store.record(reading)

    def _record_rise(self, metric: Metric, level: str, value: float) -> None:
        threshold = self.thresholds[metric].threshold("fail" if level == "fail" else "warn")
        self.monitor.security_event(
            "resource_threshold",
            Severity.HIGH if level == "fail" else Severity.MEDIUM,
            # One source per metric: events coalesce by type, source and severity, and a
            # memory warning in the same minute as a CPU one became a count on CPU's row.
            f"{_SOURCE}.{metric}",
            f"{metric} at {value:.1f}%{self.levels.describe(metric)} reached the {level} "
            f"threshold of {threshold:g}%",
            {"metric": metric, "value": round(value, 1), "threshold": threshold, "level": level,
             **self.levels.limit(metric)},
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # failsafe: a psutil or store hiccup must not end sampling
                log.exception("ragtrail metrics sample failed")
            self._stop.wait(self.interval)
