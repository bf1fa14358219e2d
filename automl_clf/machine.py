"""What this process may use of the machine: CPUs and memory, as the kernel enforces them.

`os.cpu_count()` and `SC_PHYS_PAGES` describe the host. Inside a container, or under a job
scheduler, a process may use less: its CPU affinity (`taskset`, `docker --cpuset-cpus`), a
cgroup CPU quota (`docker --cpus`, Kubernetes CPU limits) and a cgroup memory limit (`docker
--memory`, Kubernetes memory limits). Threads sized for the host then wait on each other for
CPU time the quota does not grant, and a data set loaded into memory the limit does not allow
gets the process killed (the OOM killer, not an error). Every thread, worker and job count in
autoclf and the in-memory / memory-mapped / sharded choice read these two functions instead.

Both cgroup versions are read: v2 (`cpu.max`, `memory.max` in the unified hierarchy) and v1
(`cpu.cfs_quota_us` / `cpu.cfs_period_us`, `memory.limit_in_bytes` under each controller's
mount). The process's cgroup comes from /proc/self/cgroup; every ancestor's limit applies as
well, so the tightest one along the path counts. A container usually sees its own cgroup as
the mount's root (cgroup namespaces, or Docker's v1 bind mounts), where the path named in
/proc/self/cgroup does not exist under the mount: the walk up to the root then finds the
limits there. Missing or unreadable files mean no limit. The roots are parameters so that tests
write cgroup-shaped trees in a temporary folder.

`cpu_contention` measures what the limits do not say: how busy the CPUs are with other programs
right now (the time budget's plan, job.py, counts on no thread gain when they are).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
UNKNOWN_MEMORY = 8 << 30  # bytes assumed when the host's RAM cannot be read (8 GiB)
# cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit value
# (9223372036854771712 with 4 KiB pages); anything from 2**62 bytes on is no limit.
V1_UNLIMITED = 1 << 62
CONTENTION_SAMPLE_S = 0.2  # `cpu_contention` spins this long: several scheduler slices
MAX_CONTENTION = 10.0


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may keep busy: its affinity mask, capped by its cgroup CPU quota
    rounded up to whole CPUs (a quota of 1.5 CPUs: 2 threads each get 75 %), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this OS (macOS, Windows)
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def usable_memory(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """Bytes of memory this process may use: the host's RAM, capped by its cgroup memory limit."""
    limit = cgroup_memory_limit(root, proc_cgroup)
    ram = physical_memory()
    return ram if limit is None else min(ram, limit)


def physical_memory() -> int:
    """The host's RAM in bytes (8 GiB when it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return UNKNOWN_MEMORY


def cpu_wait_seconds(schedstat: Path = Path("/proc/thread-self/schedstat")) -> float:
    """Seconds the calling thread has spent runnable but waiting for a CPU (the run queue)
    since it started: how contended the machine is, as this thread sees it. From Linux's
    schedstat (its second field, in nanoseconds); 0.0 where there is none."""
    try:
        return int(schedstat.read_bytes().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_contention(
    sample_s: float = CONTENTION_SAMPLE_S,
    *,
    wall: Callable[[], float] = time.perf_counter,
    cpu: Callable[[], float] = time.thread_time,
) -> float:
    """How many times longer than on an idle CPU one thread's work takes here, now: the wall
    time over this thread's CPU time while it spins for `sample_s` (a spinning thread is
    always runnable, so the difference is the time the scheduler gave to others: busy
    programs, or a cgroup quota's throttling). 1.0 on an idle machine; 2.5 for one thread
    beside 4 busy loops on 2 cores. Between 1 and `MAX_CONTENTION`."""
    wall0, cpu0 = wall(), cpu()
    while wall() - wall0 < sample_s:
        pass
    spun, ran = wall() - wall0, cpu() - cpu0
    if ran <= 0.0:
        return MAX_CONTENTION if spun > 0.0 else 1.0
    return min(max(spun / ran, 1.0), MAX_CONTENTION)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota on this process's cgroups, in CPUs (quota / period); None: none."""
    quotas = [
        *(_v2_cpu(folder / "cpu.max") for folder in _folders(root, proc_cgroup, None)),
        *(_v1_cpu(folder) for folder in _folders(root, proc_cgroup, "cpu")),
    ]
    return min((q for q in quotas if q is not None), default=None)


def cgroup_memory_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """The tightest memory limit on this process's cgroups, in bytes; None: none."""
    limits = [
        *(_read_int(folder / "memory.max") for folder in _folders(root, proc_cgroup, None)),
        *(_read_int(f / "memory.limit_in_bytes") for f in _folders(root, proc_cgroup, "memory")),
    ]
    return min((n for n in limits if n is not None and n < V1_UNLIMITED), default=None)


def _folders(root: Path, proc_cgroup: Path, controller: str | None) -> list[Path]:
    """The folders holding this process's cgroup and its ancestors, innermost first: under the
    v2 mount (`root`, or `root/unified` on a hybrid v1/v2 host) when `controller` is None, else
    under the v1 mount of `controller` (`root/cpu`, also `root/cpu,cpuacct`)."""
    if controller is None:
        mounts = [root, root / "unified"]
    else:
        mounts = [p for p in root.glob("*") if controller in p.name.split(",")]
    path = _cgroup_path(proc_cgroup, controller)
    if path is None:
        return []
    parts = [p for p in path.split("/") if p]
    folders = []
    for mount in mounts:
        for depth in range(len(parts), -1, -1):  # the cgroup, then each ancestor, then the root
            folder = mount.joinpath(*parts[:depth])
            if folder.is_dir():
                folders.append(folder)
    return folders


def _cgroup_path(proc_cgroup: Path, controller: str | None) -> str | None:
    """This process's cgroup path in the v2 hierarchy (controller None: the `0::` line) or in
    the v1 hierarchy of `controller` (the line listing it); None when there is no such line."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, path = fields
        if controller is None and hierarchy == "0" and controllers == "":
            return path
        if controller is not None and controller in controllers.split(","):
            return path
    return None


def _v2_cpu(path: Path) -> float | None:
    """`cpu.max`: "QUOTA PERIOD" in microseconds, or "max PERIOD" for none."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_cpu(folder: Path) -> float | None:
    """`cpu.cfs_quota_us` / `cpu.cfs_period_us`; a quota of -1 is none."""
    quota = _read_int(folder / "cpu.cfs_quota_us")
    period = _read_int(folder / "cpu.cfs_period_us")
    if quota is None or period is None or quota <= 0 or period <= 0:
        return None
    return quota / period


def _read_int(path: Path) -> int | None:
    """The integer in a one-value cgroup file; None when it is missing, "max" or not a number."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None
