"""CPU and memory levels against the container's cgroup limits (v1 for real, v2 as a tree).

The cgroup v1 tests create real cgroups with real limits (root and a writable v1 hierarchy, as
on the CI machine) and run a child process inside them. This machine's cgroup v2 hierarchy has
no memory or cpu controller, so v2 is read from a directory tree laid out like cgroupfs, with
the /proc/self files that point to it: the one part that cannot run here for real.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from ragtrail import Severity
from ragtrail.health import MetricsSampler, ThresholdCheck
from ragtrail.health._container import ContainerLimits, ResourceLevels
from ragtrail.health._monitoring import metrics_document

from ._servers import wait_until
from .conftest import MonitorFactory

MiB = 2**20
V1 = Path("/sys/fs/cgroup")


def cgroupfs_tree(tmp_path: Path, files: dict[str, str], *, cgroup: str = "0::/kubepods/pod1/c1",
                  mount_root: str = "/") -> Path:
    """A cgroup v2 tree under tmp_path/"cg sys" (a space, as mountinfo escapes it) and the
    /proc/self files pointing at it; returns the stand-in for /proc/self."""
    mount = tmp_path / "cg sys"
    for name, text in files.items():
        (mount / name).parent.mkdir(parents=True, exist_ok=True)
        (mount / name).write_text(text)
    proc_self = tmp_path / "proc-self"
    proc_self.mkdir()
    escaped = str(mount).replace(" ", "\\040")
    (proc_self / "mountinfo").write_text(
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
        f"30 22 0:26 {mount_root} {escaped} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    (proc_self / "cgroup").write_text(cgroup + "\n")
    return proc_self


POD = "kubepods/pod1"
V2_FILES = {
    f"{POD}/c1/memory.max": "536870912\n",
    f"{POD}/c1/memory.current": f"{400 * MiB}\n",
    f"{POD}/c1/memory.stat": f"anon {300 * MiB}\ninactive_file {16 * MiB}\nactive_file 5\n",
    f"{POD}/c1/cpu.max": "max 100000\n",
    f"{POD}/c1/cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
    f"{POD}/memory.max": "1073741824\n",
    f"{POD}/cpu.max": "50000 100000\n",
    "kubepods/memory.max": "max\n",
    "kubepods/cpu.max": "max 100000\n",
}


def test_v2_limits_are_the_lowest_on_the_way_up_and_memory_is_the_working_set(
        tmp_path: Path) -> None:
    """v2: the container's memory.max beats the pod's, the pod's cpu.max (0.5 CPU) applies to
    the container without one, and inactive file cache does not count as used."""
    limits = ContainerLimits(cgroupfs_tree(tmp_path, V2_FILES))
    assert limits.memory() == (384 * MiB, 512 * MiB)
    assert limits.cpu() == (2.5, 0.5)


def test_v2_in_a_cgroup_namespace_reads_the_mount_point_itself(tmp_path: Path) -> None:
    """Inside a container with its own cgroup namespace the process sits at "/" of the mount."""
    files = {"memory.max": f"{256 * MiB}\n", "memory.current": f"{64 * MiB}\n",
             "memory.stat": "inactive_file 0\n", "cpu.max": "200000 100000\n",
             "cpu.stat": "usage_usec 1000\n"}
    limits = ContainerLimits(cgroupfs_tree(tmp_path, files, cgroup="0::/"))
    assert (limits.memory(), limits.cpu()) == ((64 * MiB, 256 * MiB), (0.001, 2.0))


def test_v2_without_limits_or_controllers_means_no_container_limit(tmp_path: Path) -> None:
    """"max" everywhere, or a hierarchy without the controllers' files, is no limit."""
    unlimited = {"a/memory.max": "max\n", "a/memory.current": "10\n", "a/cpu.max": "max 100000\n",
                 "a/cpu.stat": "usage_usec 5\n"}
    limits = ContainerLimits(cgroupfs_tree(tmp_path / "1", unlimited, cgroup="0::/a"))
    assert (limits.memory(), limits.cpu()) == (None, None)
    no_controllers = {"a/cgroup.procs": "1\n", "a/cpu.stat": "usage_usec 5\n"}
    bare = ContainerLimits(cgroupfs_tree(tmp_path / "2", no_controllers, cgroup="0::/a"))
    assert (bare.memory(), bare.cpu()) == (None, None)


@pytest.mark.parametrize("damage", [
    {"mountinfo": "nonsense without a separator\n"},
    {"cgroup": "garbage\n"},
    {"mountinfo": ""},
    {"missing": "mountinfo"},
])
def test_unreadable_proc_files_mean_the_host_figures(tmp_path: Path,
                                                     damage: dict[str, str]) -> None:
    """A /proc/self it cannot make sense of is no limit, never an exception."""
    proc_self = cgroupfs_tree(tmp_path, V2_FILES)
    for name, text in damage.items():
        if name == "missing":
            (proc_self / text).unlink()
        else:
            (proc_self / name).write_text(text)
    levels = ResourceLevels(ContainerLimits(proc_self))
    assert 0 < levels.memory_percent() <= 100
    assert levels.memory_limit_bytes is None


def test_damaged_cgroup_files_mean_the_host_figures(tmp_path: Path) -> None:
    """A limit file that vanishes or reads as garbage after start-up falls back to the host."""
    proc_self = cgroupfs_tree(tmp_path, V2_FILES)
    levels = ResourceLevels(ContainerLimits(proc_self))
    assert levels.memory_percent() == pytest.approx(75.0)
    (tmp_path / "cg sys" / POD / "c1" / "memory.current").write_text("12abc\n")
    assert 0 < levels.memory_percent() <= 100
    assert levels.memory_limit_bytes is None
    (tmp_path / "cg sys" / POD / "c1" / "cpu.stat").unlink()
    levels.cpu_percent()
    assert levels.cpu_limit_cores is None


def test_a_limit_beyond_the_hosts_own_is_no_limit(tmp_path: Path) -> None:
    """A memory limit larger than the host's memory (or a CPU quota above its CPUs) is moot."""
    files = dict(V2_FILES)
    files[f"{POD}/c1/memory.max"] = f"{psutil.virtual_memory().total * 2}\n"
    files[f"{POD}/memory.max"] = "max\n"
    files[f"{POD}/cpu.max"] = f"{(psutil.cpu_count() or 1) * 200000} 100000\n"
    levels = ResourceLevels(ContainerLimits(cgroupfs_tree(tmp_path, files)))
    levels.cpu_percent()
    levels.memory_percent()
    assert (levels.cpu_limit_cores, levels.memory_limit_bytes) == (None, None)


def test_this_process_without_container_limits_reads_the_host() -> None:
    """The test process has no limit set on its cgroup: the figures are psutil's."""
    limits = ContainerLimits()
    if limits.memory() is not None or limits.cpu() is not None:
        pytest.skip("this test process runs under a container limit")
    levels = ResourceLevels(limits)
    levels.cpu_percent()
    assert 0 < levels.memory_percent() <= 100
    assert (levels.cpu_limit_cores, levels.memory_limit_bytes, levels.describe("memory")) == (
        None, None, "")


def test_threshold_events_checks_and_monitoring_name_the_container_limit(
        tmp_path: Path, make_monitor: MonitorFactory) -> None:
    """At 75% of a 512 MiB limit: a high event, a failing check and /api/monitoring all say
    the percentage is of the container's limit, not the host's memory."""
    monitor = make_monitor(memory_warn_percent=60, memory_fail_percent=70)
    sampler = MetricsSampler(monitor, interval=3600)
    sampler.levels = ResourceLevels(ContainerLimits(cgroupfs_tree(tmp_path, V2_FILES)))
    sample = sampler.sample()
    assert sample.memory_percent == pytest.approx(75.0)
    assert monitor.store.flush(30.0)
    (event,) = [e for e in monitor.store.events(event_type="resource_threshold")
                if e.metadata["metric"] == "memory"]
    assert event.severity == Severity.HIGH
    assert event.description == ("memory at 75.0% of the container's 512 MiB limit reached "
                                 "the fail threshold of 70%")
    assert event.metadata["limit_bytes"] == 512 * MiB
    check = ThresholdCheck(sampler, "memory").check()
    assert (check.status, check.output) == (
        "fail", "memory at 75.0% of the container's 512 MiB limit, fail threshold 70%")
    document = metrics_document(sample, sampler)
    assert (document["memory_limit_bytes"], document["memory_percent"]) == (512 * MiB, 75.0)
    assert document["cpu_limit_cores"] == 0.5


# --- real cgroup v1 hierarchies -------------------------------------------------------------

CgroupFactory = Callable[..., dict[str, Path]]


@pytest.fixture
def make_cgroup() -> Iterator[CgroupFactory]:
    """Fresh cgroups in real v1 hierarchies, removed afterwards; skips where none can be made."""
    made: list[Path] = []

    def make(*controllers: str, **settings: str) -> dict[str, Path]:
        name = f"ragtrail-test-{uuid.uuid4().hex[:12]}"
        groups = {}
        for controller in controllers:
            hierarchy = V1 / controller
            if os.geteuid() != 0 or not (hierarchy / "cgroup.procs").exists():
                pytest.skip(f"needs root and a cgroup v1 {controller} hierarchy at {hierarchy}")
            try:
                (hierarchy / name).mkdir()
            except OSError as exc:
                pytest.skip(f"cannot create a cgroup in {hierarchy}: {exc}")
            made.append(hierarchy / name)
            groups[controller] = hierarchy / name
        for file_name, value in settings.items():
            controller = file_name.split("_")[0]
            (groups[controller] / file_name.replace("_", ".", 1)).write_text(value)
        return groups

    yield make
    for group in reversed(made):
        # The child has exited, but the kernel may still be uncharging it for a moment.
        wait_until(functools.partial(_removed, group), timeout=10)


def _removed(group: Path) -> bool:
    try:
        group.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def run_inside(groups: dict[str, Path], body: str) -> dict[str, object]:
    """Run ``body`` in a child process that first joins ``groups``; it prints a JSON line."""
    joins = "".join(f"open({str(g / 'cgroup.procs')!r}, 'w').write(str(os.getpid()))\n"
                    for g in groups.values())
    script = "import json, os, time\n" + joins + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_memory_is_a_share_of_a_real_v1_memory_limit(make_cgroup: CgroupFactory) -> None:
    """A process holding 192 MiB in a 256 MiB cgroup reads about 75%, of a 256 MiB limit."""
    groups = make_cgroup("memory", memory_limit_in_bytes=str(256 * MiB))
    found = run_inside(groups, """
        from ragtrail.health._container import ResourceLevels
        held = bytearray(192 * 2**20)
        for i in range(0, len(held), 4096):
            held[i] = 1
        levels = ResourceLevels()
        percent = levels.memory_percent()
        print(json.dumps({"percent": percent, "limit": levels.memory_limit_bytes}))
    """)
    assert found["limit"] == 256 * MiB
    assert 70 <= float(found["percent"]) <= 100  # type: ignore[arg-type]


def test_cpu_is_a_share_of_a_real_v1_cpu_quota(make_cgroup: CgroupFactory) -> None:
    """A process spinning under a 0.2-CPU quota reads close to 100% of its limit (the host's
    CPU, with one core of two a fifth busy, would read about 10%)."""
    groups = make_cgroup("cpu", "cpuacct", cpu_cfs_quota_us="20000", cpu_cfs_period_us="100000")
    found = run_inside(groups, """
        from ragtrail.health._container import ResourceLevels
        levels = ResourceLevels()
        levels.cpu_percent()
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            pass
        percent = levels.cpu_percent()
        print(json.dumps({"percent": percent, "cores": levels.cpu_limit_cores}))
    """)
    assert found["cores"] == 0.2
    assert float(found["percent"]) >= 60  # type: ignore[arg-type]


def test_a_sampler_in_a_real_memory_cgroup_records_against_its_limit(
        make_cgroup: CgroupFactory, tmp_path: Path) -> None:
    """End to end in a real cgroup: the sampler's stored sample and its threshold event."""
    groups = make_cgroup("memory", memory_limit_in_bytes=str(256 * MiB))
    found = run_inside(groups, f"""
        from ragtrail import Settings
        from ragtrail.health import MetricsSampler
        from ragtrail.instrument import Monitor
        monitor = Monitor(Settings(store_url="sqlite:///{tmp_path / 'audit.db'}",
                                   memory_warn_percent=40, memory_fail_percent=99))
        held = bytearray(128 * 2**20)
        for i in range(0, len(held), 4096):
            held[i] = 1
        sample = MetricsSampler(monitor, interval=3600).sample()
        # Near its limit the group reclaims page cache: the writer can take seconds here.
        flushed = monitor.store.flush(30.0)
        events = [e.description for e in monitor.store.events(event_type="resource_threshold")
                  if e.metadata["metric"] == "memory"]  # a busy host's CPU may rise too
        print(json.dumps({{"stored": monitor.store.metrics(limit=1)[0].memory_percent,
                          "percent": sample.memory_percent, "events": events,
                          "flushed": flushed}}))
        monitor.shutdown()
    """)
    assert found["flushed"] is True
    assert found["stored"] == found["percent"]
    assert 50 <= float(found["percent"]) <= 100, found  # type: ignore[arg-type]
    (event,) = found["events"]  # type: ignore[misc]
    assert "of the container's 256 MiB limit reached the warn threshold" in event


def test_the_first_sample_after_start_raises_no_cpu_alarm_under_a_quota(
        make_cgroup: CgroupFactory, tmp_path: Path) -> None:
    """The first reading came milliseconds after priming, while start-up kept a thread busy:
    under a 0.5-CPU quota it read 100% and recorded a high event at every pod start."""
    groups = make_cgroup("cpu", "cpuacct", cpu_cfs_quota_us="50000", cpu_cfs_period_us="100000")
    found = run_inside(groups, f"""
        from ragtrail import Settings
        from ragtrail.health import MetricsSampler
        from ragtrail.instrument import Monitor
        monitor = Monitor(Settings(store_url="sqlite:///{tmp_path / 'audit.db'}"))
        sampler = MetricsSampler(monitor, interval=3600)
        sampler.start()  # as HealthService.start() does
        deadline = time.monotonic() + 30
        while sampler.latest is None and time.monotonic() < deadline:
            time.sleep(0.01)
        monitor.store.flush(30.0)
        events = [e.description for e in monitor.store.events(event_type="resource_threshold")
                  if e.metadata["metric"] == "cpu"]
        print(json.dumps({{"first": sampler.latest.cpu_percent, "events": events,
                          "cores": sampler.levels.cpu_limit_cores}}))
        sampler.stop()
        monitor.shutdown()
    """)
    assert (found["first"], found["events"], found["cores"]) == (0.0, [], 0.5)
