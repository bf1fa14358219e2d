"""The CPUs and memory this process may use: affinity, cgroup v1 and v2 limits, read from real
cgroup-shaped files in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from automl_clf.machine import (
    MAX_CONTENTION,
    cgroup_cpu_quota,
    cgroup_memory_limit,
    cpu_contention,
    cpu_wait_seconds,
    physical_memory,
    usable_cpus,
    usable_memory,
)

GIB = 1 << 30
V1_NO_LIMIT = "9223372036854771712"  # what cgroup v1 writes for "unlimited"


def write(root: Path, files: dict[str, str], proc: str) -> Path:
    """`files` (path under root -> content) and a /proc/self/cgroup holding `proc`."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    proc_file = root.parent / "proc-self-cgroup"
    proc_file.write_text(proc)
    return proc_file


def test_v2_cpu_max_is_rounded_up_to_whole_cpus(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = write(root, {"job.slice/cpu.max": "150000 100000"}, "0::/job.slice\n")
    assert cgroup_cpu_quota(root, proc) == pytest.approx(1.5)
    assert usable_cpus(root, proc) == min(2, len(os.sched_getaffinity(0)))


def test_v2_max_means_no_limit(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = write(
        root, {"job.slice/cpu.max": "max 100000", "job.slice/memory.max": "max"}, "0::/job.slice"
    )
    assert cgroup_cpu_quota(root, proc) is None
    assert cgroup_memory_limit(root, proc) is None
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))
    assert usable_memory(root, proc) == physical_memory()


def test_v2_memory_max_caps_the_physical_memory(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = write(root, {"job.slice/memory.max": str(2 * GIB)}, "0::/job.slice\n")
    assert cgroup_memory_limit(root, proc) == 2 * GIB
    assert usable_memory(root, proc) == min(2 * GIB, physical_memory())


def test_the_tightest_ancestor_limit_counts(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = write(
        root,
        {
            "kubepods/memory.max": str(1 * GIB),
            "kubepods/pod1/memory.max": "max",
            "kubepods/pod1/app/memory.max": str(3 * GIB),
            "kubepods/cpu.max": "max 100000",
            "kubepods/pod1/cpu.max": "100000 100000",
        },
        "0::/kubepods/pod1/app\n",
    )
    assert cgroup_memory_limit(root, proc) == 1 * GIB
    assert cgroup_cpu_quota(root, proc) == pytest.approx(1.0)
    assert usable_cpus(root, proc) == 1


def test_a_namespaced_container_reads_the_limits_at_the_mount_root(tmp_path: Path) -> None:
    """/proc/self/cgroup names the host's path, which does not exist in the container's mount
    of its own cgroup: the walk up reaches the root, where its limits are."""
    root = tmp_path / "cgroup"
    proc = write(
        root,
        {"memory.max": str(512 << 20), "cpu.max": "50000 100000"},
        "0::/docker/3f2a9c\n",
    )
    assert cgroup_memory_limit(root, proc) == 512 << 20
    assert usable_cpus(root, proc) == 1


def test_v1_limits_under_each_controller(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = write(
        root,
        {
            "memory/docker/abc/memory.limit_in_bytes": str(4 * GIB),
            "memory/memory.limit_in_bytes": V1_NO_LIMIT,
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
            "cpu,cpuacct/cpu.cfs_quota_us": "-1",
            "cpu,cpuacct/cpu.cfs_period_us": "100000",
        },
        "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
    )
    assert cgroup_memory_limit(root, proc) == 4 * GIB
    assert cgroup_cpu_quota(root, proc) == pytest.approx(2.5)
    assert usable_cpus(root, proc) == min(3, len(os.sched_getaffinity(0)))


def test_v1_unlimited_and_minus_one_mean_no_limit(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = write(
        root,
        {
            "memory/memory.limit_in_bytes": V1_NO_LIMIT,
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/cpu.cfs_period_us": "100000",
        },
        "5:memory:/\n3:cpu:/\n",
    )
    assert cgroup_memory_limit(root, proc) is None
    assert cgroup_cpu_quota(root, proc) is None


@pytest.mark.parametrize("proc_text", ["", "0::/gone\n", "garbage\n"])
def test_missing_files_mean_no_limit(tmp_path: Path, proc_text: str) -> None:
    root = tmp_path / "cgroup"
    proc = write(root, {"unrelated": "x"}, proc_text)
    assert cgroup_memory_limit(root, proc) is None
    assert cgroup_cpu_quota(root, proc) is None
    assert usable_memory(root, proc) == physical_memory()
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))


def test_no_cgroup_files_at_all(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    assert usable_cpus(missing, missing / "cgroup") == len(os.sched_getaffinity(0))
    assert usable_memory(missing, missing / "cgroup") == physical_memory()


def test_this_machine_gives_at_least_one_cpu_and_some_memory() -> None:
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
    assert 0 < usable_memory() <= physical_memory()


def test_cpu_wait_reads_the_run_queue_field_of_schedstat(tmp_path: Path) -> None:
    schedstat = tmp_path / "schedstat"
    schedstat.write_text("105607000 3295593000 12\n")  # on-CPU ns, run-queue ns, timeslices
    assert cpu_wait_seconds(schedstat) == pytest.approx(3.295593)
    assert cpu_wait_seconds(tmp_path / "missing") == 0.0
    assert cpu_wait_seconds() >= 0.0  # this thread's, where Linux has it


class _Spin:
    """Clocks for `cpu_contention`: each read of the wall clock moves it by `wall_step` and the
    thread's CPU clock by `cpu_step` (a thread that gets `cpu_step / wall_step` of a CPU)."""

    def __init__(self, wall_step: float, cpu_step: float) -> None:
        self.wall_now = self.cpu_now = 0.0
        self.wall_step, self.cpu_step = wall_step, cpu_step

    def wall(self) -> float:
        self.wall_now += self.wall_step
        self.cpu_now += self.cpu_step
        return self.wall_now

    def cpu(self) -> float:
        return self.cpu_now


@pytest.mark.parametrize(
    ("cpu_step", "contention"),
    [
        (0.01, 1.0),  # all of a CPU: idle
        (0.004, 2.5),  # 40 %: one thread beside 4 busy loops on 2 cores
        (0.02, 1.0),  # more CPU than wall (clock granularity): never below 1
        (0.0001, MAX_CONTENTION),  # starved: capped
        (0.0, MAX_CONTENTION),  # no CPU time at all
    ],
)
def test_cpu_contention_is_wall_time_over_the_spinning_thread_s_cpu_time(
    cpu_step: float, contention: float
) -> None:
    spin = _Spin(wall_step=0.01, cpu_step=cpu_step)
    assert cpu_contention(0.1, wall=spin.wall, cpu=spin.cpu) == pytest.approx(contention)
    assert spin.wall_now >= 0.1  # it spun for the sample


def test_this_machine_s_contention_is_in_range() -> None:
    assert 1.0 <= cpu_contention(0.02) <= MAX_CONTENTION
