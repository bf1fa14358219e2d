"""Several trials at once on one machine (`--jobs N`): helper processes on the same study.

A search with `jobs > 1` starts `jobs - 1` helper processes (spawned, so each has its own
torch, threads and CUDA context), each running `run_search` on the same storage with the same
budget: the monotonic clock is one clock for every process of a machine, so they share the
deadline, and `n_trials` counts across them under the study lock as it does across machines.
The CPU threads are split: each process trains with `cores // jobs` threads unless the spec
sets `train.threads`. On small models a step is too short to keep several threads busy, so
several one-thread trials get more done than one trial on every core (`bench/jobs.py` measures
it). On a machine with several GPUs, `train.device: auto` or `cuda` gives helper k GPU k (the
caller keeps GPU 0), so one process per GPU, the default, uses every GPU.

Helpers say nothing but their errors (on stderr); the calling process shows the search. When
it stops early (Ctrl-C, an error) it stops them: SIGTERM, which a helper's search turns into
an interrupted trial (FAIL, retried first next time), as for any worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from typing import Any

from automl_clf.machine import usable_cpus
from automl_clf.spec.models import ResolvedSpec, Spec

STOP_SECONDS = 60  # how long a stopped helper may take to end its trial before it is killed


def default_jobs(timed: bool) -> int:
    """How many trials at once when `--jobs` is not given: one per usable CPU (each on one
    thread) for a search under a time budget on the CPU, where bench/jobs.py measured 2 jobs
    at 1.9–2.1× the epochs per second of 1 job on 2 threads (2 cores, the demo's space); one
    per GPU on CUDA; and 1 without a time budget, where a study stays reproducible in one
    process (trial n draws from seed + n in a fixed order)."""
    if not timed:
        return 1
    import torch

    if torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    cores = usable_cpus()
    return cores if cores <= 4 else cores // 2


def threads_per_job(jobs: int) -> int:
    """CPU threads each of `jobs` processes trains with: its share of the CPUs this process
    may use (affinity and cgroup quota, machine.py), not of the host's."""
    return max(1, usable_cpus() // max(jobs, 1))


@contextlib.contextmanager
def threads_split(spec: Spec, jobs: int) -> Iterator[None]:
    """This process's share of the CPU threads while the search runs (restored after it, so a
    final retrain uses every core)."""
    if jobs <= 1 or spec.train.threads is not None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads_per_job(jobs))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def start_helpers(
    spec: ResolvedSpec,
    n: int,
    n_trials: int | None,
    budget: Any,
    plan_final: Callable[..., Any] | None,
) -> list[BaseProcess]:
    """Start `n` helper searches on `spec`'s study (none when n < 1)."""
    if n < 1:
        return []
    from automl_clf.train.device import helper_device

    threads = None if spec.train.threads is not None else threads_per_job(n + 1)
    context = multiprocessing.get_context("spawn")
    helpers: list[BaseProcess] = []
    for index in range(1, n + 1):
        # the spec as its JSON, set fields only: generic pydantic models do not pickle, and
        # what was left unset (a pruner, n_trials under a budget) keeps its meaning
        data = spec.model_dump(mode="json", exclude_unset=True)
        device = helper_device(spec.train.device, index)  # one GPU each, where there are several
        if device != spec.train.device:
            data["train"] = {**data.get("train", {}), "device": device}
        process = context.Process(
            target=_helper_main,
            args=(
                data,
                n_trials,
                budget,
                plan_final,
                threads,
            ),
            name="autoclf-search-helper",
        )
        process.start()
        helpers.append(process)
    return helpers


def join_helpers(helpers: list[BaseProcess]) -> None:
    """Wait for the helpers: they stop at the same target or deadline as the caller."""
    for process in helpers:
        process.join()


def stop_helpers(helpers: list[BaseProcess]) -> None:
    """End the helpers now (the caller was interrupted or failed): SIGTERM, then SIGKILL."""
    for process in helpers:
        if process.is_alive():
            process.terminate()
    for process in helpers:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


def _helper_main(
    spec_data: dict[str, Any],
    n_trials: int | None,
    budget: Any,
    plan_final: Callable[..., Any] | None,
    threads: int | None,
) -> None:
    """A helper process: one more search worker, silent but for its errors."""
    import torch

    from automl_clf.errors import AutoclfError
    from automl_clf.search.optuna_compat import quiet_optuna
    from automl_clf.search.run import run_search

    quiet_optuna()  # a fresh process: Optuna's log would speak for it
    if threads is not None:
        torch.set_num_threads(threads)
    spec = ResolvedSpec.model_validate(spec_data)  # already resolved by the parent
    code = 0
    try:
        run_search(spec, n_trials=n_trials, budget=budget, plan_final=plan_final, jobs=1)
    except KeyboardInterrupt:
        code = 130
    except AutoclfError as exc:
        print(f"error: (search helper {os.getpid()}) {exc}", file=sys.stderr)
        code = exc.exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown (1–2 s of unloading torch) inside the budget
