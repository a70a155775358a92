"""CPU and memory use as a share of this process's container limits, where it has them.

psutil reads the host. In a Kubernetes pod limited to 512 MiB on a 64 GiB node the host's
memory reads 10% while the container is about to be OOM-killed, and a pod held to half a CPU is
throttled while the node looks idle. Where this process's cgroup (v2, or v1's ``memory``,
``cpu`` and ``cpuacct`` controllers) sets a limit, the levels are measured against it.

Memory counts the working set as the kubelet does (usage less inactive file cache, which the
kernel reclaims before it OOM-kills). A limit is the lowest one set on the cgroup and on the
ancestors this process can see. Limits are read at every sample, so an in-place pod resize
shows at the next one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

__all__ = ["ContainerLimits", "ResourceLevels"]

_Reading = TypeVar("_Reading", tuple[int, int], tuple[float, float])
_NO_LIMIT = 1 << 62  # cgroup v1 writes "no limit" as 2**63 - 1 rounded down to a page
_SHORTEST_CPU_WINDOW_S = 0.5  # CPU use measured over less is start-up noise, not a level
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")  # mountinfo escapes spaces and the like


@dataclass(frozen=True)
class _Cgroup:
    """This process's directory in one cgroup hierarchy, and the hierarchy's mount point."""

    version: int
    directory: Path
    mount_point: Path

    def levels(self) -> Iterator[Path]:
        """The directory and its ancestors up to the mount point (higher ones are hidden)."""
        directory = self.directory
        yield directory
        while directory != self.mount_point and directory.parent != directory:
            directory = directory.parent
            yield directory

    def read(self, name: str, directory: Path | None = None) -> str | None:
        try:
            return ((directory or self.directory) / name).read_text()
        except OSError:  # not there at this level (the root has no limit files), or vanished
            return None

    def stat(self, name: str) -> dict[str, int]:
        """A flat-keyed file such as ``memory.stat``, ``cpu.stat``."""
        fields = (line.split() for line in (self.read(name) or "").splitlines())
        return {f[0]: int(f[1]) for f in fields if len(f) == 2 and f[1].isdigit()}


class ContainerLimits:
    """Reads this process's cgroup limits and usage (``proc_self`` is a seam for tests)."""

    def __init__(self, proc_self: str | Path = "/proc/self") -> None:
        try:
            found = _find_cgroups(Path(proc_self))
        except (OSError, ValueError, IndexError):  # not Linux, /proc unreadable or odd
            found = {}
        v2 = found.get("")
        self._memory = found.get("memory") or _v2_with(v2, "memory.max")
        self._cpu = found.get("cpu") or _v2_with(v2, "cpu.max")
        # v1 counts CPU time in its own controller; v2 in the cpu controller's cpu.stat.
        self._cpuacct = found.get("cpuacct") if "cpu" in found else self._cpu

    def memory(self) -> tuple[int, int] | None:
        """(working set in bytes, limit in bytes), or None when no memory limit applies."""
        group = self._memory
        if group is None:
            return None
        stat = group.stat("memory.stat")
        if group.version == 2:
            limits = [_integer(group.read("memory.max", level)) for level in group.levels()]
            usage, inactive = _integer(group.read("memory.current")), stat.get("inactive_file", 0)
        else:
            limits = [stat.get("hierarchical_memory_limit"),
                      _integer(group.read("memory.limit_in_bytes"))]
            usage = _integer(group.read("memory.usage_in_bytes"))
            inactive = stat.get("total_inactive_file", 0)
        limit = min((value for value in limits if value is not None), default=None)
        if limit is None or not 0 < limit < _NO_LIMIT or usage is None:
            return None
        return max(0, usage - inactive), limit

    def cpu(self) -> tuple[float, float] | None:
        """(CPU seconds the cgroup has used, its limit in cores), or None without a quota."""
        group, accounting = self._cpu, self._cpuacct
        if group is None or accounting is None:
            return None
        quotas = [_quota(group, level) for level in group.levels()]
        cores = min((quota for quota in quotas if quota is not None), default=None)
        if cores is None:
            return None
        if accounting.version == 2:
            used_us = accounting.stat("cpu.stat").get("usage_usec")
            used = None if used_us is None else used_us / 1e6
        else:
            used_ns = _integer(accounting.read("cpuacct.usage"))
            used = None if used_ns is None else used_ns / 1e9
        return None if used is None else (used, cores)


class ResourceLevels:
    """CPU and memory percentages of the container's limits where set, else of the host's.

    ``cpu_limit_cores`` and ``memory_limit_bytes`` say which: None means the host. A limit at
    or above what the host has is no limit.
    """

    def __init__(self, limits: ContainerLimits | None = None) -> None:
        self.limits = limits or ContainerLimits()
        self.cpu_limit_cores: float | None = None
        self.memory_limit_bytes: int | None = None
        self._last_cpu: tuple[float, float] | None = None

    def cpu_percent(self) -> float:
        """Since the previous call (the first one only primes the counters and reads 0.0)."""
        host = psutil.cpu_percent(interval=None)  # called every time, so it stays primed
        reading = _failsafe(self.limits.cpu)
        if reading is None or reading[1] >= (psutil.cpu_count() or 1):
            self.cpu_limit_cores = self._last_cpu = None
            return host
        now, (used, cores) = time.monotonic(), reading
        last, self.cpu_limit_cores = self._last_cpu, cores
        if last is not None and now - last[0] < _SHORTEST_CPU_WINDOW_S:
            # The sampler's first reading comes milliseconds after priming, while start-up
            # keeps a thread busy: judged over that, every pod under a 1-CPU limit read 100%
            # and raised a high event at each start. Keep the window open instead.
            return 0.0
        self._last_cpu = (now, used)
        if last is None:
            return 0.0
        return min(100.0, max(0.0, 100.0 * (used - last[1]) / (now - last[0]) / cores))

    def memory_percent(self) -> float:
        host = psutil.virtual_memory()
        reading = _failsafe(self.limits.memory)
        if reading is None or reading[1] >= host.total:
            self.memory_limit_bytes = None
            return float(host.percent)
        used, self.memory_limit_bytes = reading
        return min(100.0, 100.0 * used / reading[1])

    def limit(self, metric: str) -> dict[str, float]:
        """The container limit a percentage of ``metric`` is of, as event metadata."""
        if metric == "memory" and self.memory_limit_bytes is not None:
            return {"limit_bytes": self.memory_limit_bytes}
        if metric == "cpu" and self.cpu_limit_cores is not None:
            return {"limit_cores": self.cpu_limit_cores}
        return {}

    def describe(self, metric: str) -> str:
        """What a percentage of ``metric`` is relative to, for messages ("" for the host)."""
        if metric == "memory" and self.memory_limit_bytes is not None:
            return f" of the container's {self.memory_limit_bytes / 2**20:g} MiB limit"
        if metric == "cpu" and self.cpu_limit_cores is not None:
            return f" of the container's {self.cpu_limit_cores:g}-CPU limit"
        return ""


def _failsafe(read: Callable[[], _Reading | None]) -> _Reading | None:
    # A cgroup file that is missing, truncated or oddly formatted means "no known limit",
    # never a failed sample: the host figures are still worth having.
    try:
        return read()
    except (OSError, ValueError):
        return None


def _integer(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None  # "max" (v2's no limit) is None too


def _quota(group: _Cgroup, level: Path) -> float | None:
    """The CPU quota set at one level, in cores."""
    if group.version == 2:
        quota, _, period = (group.read("cpu.max", level) or "").partition(" ")
        quota_us, period_us = _integer(quota), _integer(period)
    else:
        quota_us = _integer(group.read("cpu.cfs_quota_us", level))  # -1 (no quota): None
        period_us = _integer(group.read("cpu.cfs_period_us", level))
    return quota_us / period_us if quota_us and period_us else None


def _v2_with(group: _Cgroup | None, interface_file: str) -> _Cgroup | None:
    """The v2 cgroup if its controller is enabled there (its interface file exists)."""
    if group is not None and (group.directory / interface_file).exists():
        return group
    return None


def _find_cgroups(proc_self: Path) -> dict[str, _Cgroup]:
    """v1 controllers by name, and the v2 (unified) hierarchy under "", for this process."""
    mounts: list[tuple[str, Path, str, set[str]]] = []
    for line in (proc_self / "mountinfo").read_text().splitlines():
        fields = line.split(" ")
        after = fields[fields.index("-") + 1:]
        if after[0] in ("cgroup", "cgroup2"):
            root, where = (_OCTAL_ESCAPE.sub(lambda m: chr(int(m[1], 8)), field)
                           for field in fields[3:5])
            options = set(after[2].split(",")) if len(after) > 2 else set()
            mounts.append((after[0], Path(where), root, options))
    found: dict[str, _Cgroup] = {}
    for line in (proc_self / "cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        names = [""] if hierarchy == "0" and not controllers else controllers.split(",")
        for fstype, mount_point, root, options in mounts:
            wanted = fstype == "cgroup2" if names == [""] else (
                fstype == "cgroup" and set(names) <= options)
            inside = _inside(path, root)
            if wanted and inside is not None:
                group = _Cgroup(2 if names == [""] else 1, mount_point / inside, mount_point)
                found.update((name, group) for name in names)
                break
    return found


def _inside(path: str, root: str) -> str | None:
    """``path`` relative to the mount's root, or None if the mount does not show it."""
    root = root.rstrip("/")
    if path == root or not root:
        return path.lstrip("/")
    if path.startswith(root + "/"):
        return path[len(root) + 1:]
    return None
