"""Several trials at once on one machine (`--jobs N`): helper processes on the same study.

A search with `jobs > 1` starts `jobs - 1` helper processes (new interpreters, so each has its
own torch, threads and CUDA context), each running `run_search` on the same storage with the same
budget: the monotonic clock is one clock for every process of a machine, so they share the
deadline, and `n_trials` counts across them under the study lock as it does across machines.
The CPU threads are split: each process trains with `cores // jobs` threads unless the spec
sets `train.threads`. On small models a step is too short to keep several threads busy, so
several one-thread trials get more done than one trial on every core (`bench/jobs.py` measures
it). On a machine with several GPUs, `train.device: auto` or `cuda` gives helper k GPU k (the
caller keeps GPU 0), so one process per GPU, the default, uses every GPU.

How a helper starts: `subprocess`, `python -P -c BOOT`, where BOOT reads the caller's
`sys.path` (one JSON line) and then its task (a pickled `HelperTask`: the spec as JSON data,
`n_trials`, the `Budget`, the `FinalPlanner`, its threads, the caller's trial reporter) from
its stdin. Not multiprocessing's
"spawn": spawn runs the caller's main script again in the child (as `__mp_main__`), so a plain
script calling `automl_clf.run(...)` without an `if __name__ == "__main__"` guard started the
search again inside its own helper, which died with multiprocessing's "bootstrapping phase"
RuntimeError while the caller carried on alone. Here nothing of the caller's program runs in a
helper: it imports autoclf from the caller's `sys.path` (as spawn would) and nothing else
(`-P`: not even a module in the working folder that shadows the standard library). Not "fork"
either: forking a process that has loaded torch (its thread pools, maybe CUDA) is unsafe.

Helpers say nothing but their errors: their stdout and stderr come to the caller through a pipe
and go on to the caller's `sys.stderr` (above a live display, in a notebook's cell), and the
caller keeps their last lines. A helper that ends with an error, at start or later, is reported
by the caller (`ended_helpers`, `join_helpers`: its exit code and last line), which goes on
without it. When the caller stops early (Ctrl-C, an error) it stops them: SIGTERM, which a
helper's search turns into an interrupted trial (FAIL, retried first next time), as for any
worker, then SIGKILL after `STOP_SECONDS`. A helper whose caller died without stopping it (its
stdin pipe closes) stops itself the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class HelperTask:
    """What a helper process is told (pickled on its stdin): the `Budget` and `FinalPlanner`
    pickle; the spec goes as its JSON, set fields only (generic pydantic models do not pickle,
    and what was left unset, a pruner or n_trials under a budget, keeps its meaning)."""

    spec_data: dict[str, Any]
    n_trials: int | None
    budget: Any
    plan_final: Callable[..., Any] | None
    threads: int | None  # torch threads; None: the spec's `train.threads`
    reporter: Callable[..., Any] | None = None  # a module-level function: pickled by name


# The helper's whole command line: the caller's sys.path first (so the same autoclf imports),
# then the helper's code. `-P`: the working folder is not put first on sys.path before that.
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.stdin.buffer.readline()); "
    "from automl_clf.search.workers import helper_main; helper_main()"
)
TAIL_LINES = 20  # the last lines of a helper's output the caller keeps, to say why it ended
RELAY_WAIT_S = 5.0  # how long an ended helper's last output may take to reach the caller


class Helper:
    """One helper process as its caller sees it: its output relayed to the caller's stderr
    (the last lines kept), its end noticed."""

    def __init__(self, index: int, task: HelperTask) -> None:
        self.index = index
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-c", _BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.stopped = False  # the caller ended it: its exit code says nothing
        self.reported = False
        self.relay = threading.Thread(
            target=self._relay, name=f"autoclf-helper-{index}-output", daemon=True
        )
        self.relay.start()
        assert self.process.stdin is not None
        try:  # the pipe stays open while the caller lives (see the module docstring)
            self.process.stdin.write(json.dumps(sys.path).encode() + b"\n")
            self.process.stdin.write(pickle.dumps(task))
            self.process.stdin.flush()
        except BrokenPipeError:  # it died at once: `failure` says so
            pass

    @property
    def pid(self) -> int:
        return self.process.pid

    def _relay(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for raw in self.process.stdout:
                line = raw.decode(errors="replace")
                self.tail.append(line.rstrip())
                with contextlib.suppress(Exception):  # a closed stderr must not stop the relay
                    sys.stderr.write(line)
                    sys.stderr.flush()

    def failure(self) -> str | None:
        """What to say about this helper once it has ended with an error (once); else None."""
        code = self.process.poll()
        if code is None or code == 0 or self.stopped or self.reported:
            return None
        self.reported = True
        self.relay.join(RELAY_WAIT_S)  # its last words, before quoting them
        if code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"ended with exit code {code}"
        last = last_words(list(self.tail))
        why = f" ({last})" if last else ""
        return (
            f"search helper {self.index} (pid {self.pid}) {how}{why}; the search goes on "
            "without it"
        )

    def join(self, timeout: float | None = None) -> None:
        """Wait for it to end (at most `timeout` seconds), then close its pipes."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        if self.process.returncode is None:
            return
        self.relay.join(RELAY_WAIT_S)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()


def last_words(lines: list[str]) -> str:
    """The line that says why a process ended: after a traceback, its exception's line (the
    first unindented line after the last `Traceback` header), else the last non-empty line
    (an `error: …` line)."""
    headers = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if headers:
        after = lines[headers[-1] + 1 :]
        found = next((line for line in after if line.strip() and not line[0].isspace()), None)
        if found is not None:
            return found.strip()
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def start_helpers(
    spec: ResolvedSpec,
    n: int,
    n_trials: int | None,
    budget: Any,
    plan_final: Callable[..., Any] | None,
    reporter: Callable[..., Any] | None = None,
) -> list[Helper]:
    """Start `n` helper searches on `spec`'s study (none when n < 1), each showing its trials
    with the caller's `reporter` (search/objective.py `TrialReporter`)."""
    if n < 1:
        return []
    from automl_clf.train.device import helper_device

    threads = None if spec.train.threads is not None else threads_per_job(n + 1)
    helpers: list[Helper] = []
    for index in range(1, n + 1):
        data = spec.model_dump(mode="json", exclude_unset=True)
        device = helper_device(spec.train.device, index)  # one GPU each, where there are several
        if device != spec.train.device:
            data["train"] = {**data.get("train", {}), "device": device}
        task = HelperTask(data, n_trials, budget, plan_final, threads, reporter)
        helpers.append(Helper(index, task))
    return helpers


def ended_helpers(helpers: list[Helper]) -> list[str]:
    """What to say about the helpers that have ended with an error since the last call."""
    return [text for text in (helper.failure() for helper in helpers) if text is not None]


def join_helpers(helpers: list[Helper]) -> list[str]:
    """Wait for the helpers (they stop at the same target or deadline as the caller); what to
    say about those that ended with an error and were not reported yet."""
    for helper in helpers:
        helper.join()
    return ended_helpers(helpers)


def stop_helpers(helpers: list[Helper]) -> None:
    """End the helpers now (the caller was interrupted or failed): SIGTERM, then SIGKILL."""
    for helper in helpers:
        if helper.process.poll() is None:
            helper.stopped = True
            helper.process.terminate()
    for helper in helpers:
        helper.join(STOP_SECONDS)
        if helper.process.poll() is None:
            helper.process.kill()
            helper.join()


def helper_main() -> None:
    """A helper process (started by `Helper`, after its boot line set `sys.path`): one more
    search worker, silent but for its errors."""
    task: HelperTask = pickle.load(sys.stdin.buffer)
    sys.unraisablehook = quiet_interrupts(sys.unraisablehook)
    threading.Thread(target=_stop_when_orphaned, name="autoclf-orphan", daemon=True).start()
    import torch

    from automl_clf.errors import AutoclfError
    from automl_clf.search.optuna_compat import quiet_optuna
    from automl_clf.search.run import run_search

    quiet_optuna()  # a fresh process: Optuna's log would speak for it
    if task.threads is not None:
        torch.set_num_threads(task.threads)
    code = 0
    try:
        spec = ResolvedSpec.model_validate(task.spec_data)  # already resolved by the caller
        run_search(
            spec,
            n_trials=task.n_trials,
            budget=task.budget,
            plan_final=task.plan_final,
            jobs=1,
            reporter=task.reporter,
        )
    except KeyboardInterrupt:
        code = 130
    except AutoclfError as exc:
        print(f"error: (search helper {os.getpid()}) {exc}", file=sys.stderr)
        code = exc.exit_code
    except Exception:  # a bug: its traceback, for the caller to relay
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown (1–2 s of unloading torch) inside the budget


def quiet_interrupts(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """`hook` (sys.unraisablehook) saying nothing of a KeyboardInterrupt: a helper stopped while
    idle gets SIGTERM, whose interrupt can land inside a finalizer (a weakref callback), where
    Python prints "Exception ignored in …" and its traceback, which the caller relays to the
    user's terminal. The interrupt is not lost: the search's flag stays set and stops it at its
    next check (search/interrupts.py). Anything else still goes to `hook`."""

    def quiet(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        hook(unraisable)

    return quiet


def _stop_when_orphaned() -> None:
    """The caller holds this helper's stdin open while it lives: the pipe's end means it died
    without stopping the helper, which then stops as SIGTERM stops it (its trial FAIL,
    interrupted) rather than search on for nobody."""
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)
