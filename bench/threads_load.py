"""CPU threads under load: training images/s at 0, 2 and 4 busy background loops.

Real autoclf training (train/session.py `train_config`, the plain CNN of specs/digits.yaml at
16 px, batch 64, the `light` policy, training only) on scikit-learn's digits, in one arm per
way of choosing torch's CPU threads:

- `fixed N`: `train.threads: N` with N the CPUs this process may use (2 on a 2-core machine:
  what a final retrain used before the governor);
- `fixed 1`: one thread;
- `governor`: no `train.threads`, under a time budget, so the thread governor
  (train/threads.py) picks between 1 and N by measured step time;
- `+spin1000`, `+passive` (`--env`): `fixed N` and `governor` with libgomp told to spin less
  before sleeping (GOMP_SPINCOUNT=1000) or not at all (OMP_WAIT_POLICY=PASSIVE).

Each arm runs in a fresh process (the OpenMP variables are read when torch loads), decodes and
trains one untimed epoch first, then `--epochs` timed ones; images/s counts training steps
only (`EpochResult.seconds`). The busy loops are plain `while True: pass` processes at normal
priority, started before and killed after each load level. Arms run in a new order each round,
and each round's ratios are against that round's `fixed N` (the baseline measured in the same
run, under the same load); the median over `--rounds` is printed, and the ratio of the fastest
rounds (those least disturbed by other work on the machine).

Evidence, not a test: wall-clock figures vary with the machine's load. Run:
`.venv/bin/python bench/threads_load.py [--rounds 3] [--epochs 3] [--loads 0 2 4] [--env]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


ENV_ARMS = {"+spin1000": {"GOMP_SPINCOUNT": "1000"}, "+passive": {"OMP_WAIT_POLICY": "PASSIVE"}}


def arms(share: int, env: bool) -> dict[str, dict[str, Any]]:
    """Arm name -> its `train.threads`, whether it trains under a budget, its OpenMP variables."""
    plain = {
        f"fixed {share}": {"threads": share, "budget": False, "env": {}},
        "fixed 1": {"threads": 1, "budget": False, "env": {}},
        "governor": {"threads": None, "budget": True, "env": {}},
    }
    chosen = dict(plain)
    for suffix, variables in ENV_ARMS.items() if env else ():
        for name in (f"fixed {share}", "governor"):
            chosen[f"{name} {suffix}"] = {**plain[name], "env": variables}
    return chosen


def child(arm: dict[str, Any], root: Path, epochs: int) -> dict[str, Any]:
    """One arm's images/s (in its own process); what `--child` prints as JSON."""
    from throughput import make_config  # bench/throughput.py: the same model and data

    from automl_clf.search.budget import Budget
    from automl_clf.train.session import train_config

    config, dataset = make_config(root, "cnn", 16, "light", epochs)
    train = config.train.model_copy(update={"threads": arm["threads"]})
    config = config.model_copy(update={"train": train})
    deadline = Budget.start(10**9) if arm["budget"] else None  # a budget that never ends
    train_config(config, dataset, validate_on=None, max_epochs=1, deadline=deadline)  # warm-up
    trained = train_config(config, dataset, validate_on=None, deadline=deadline)
    seconds = sum(e.seconds for e in trained.fit.history)
    n_images = len(dataset.splits.by_name()["train"]) * len(trained.fit.history)
    return {"images_per_s": n_images / seconds, "threads": trained.fit.threads}


def run_arm(name: str, arm: dict[str, Any], root: Path, epochs: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    env.update(arm["env"])
    command = [sys.executable, __file__, "--child", json.dumps(arm), "--root", str(root)]
    out = subprocess.run(
        [*command, "--epochs", str(epochs)],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"arm {name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def busy_loops(n: int) -> list[subprocess.Popen[bytes]]:
    """`n` plain CPU-bound processes at normal priority."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(loops: list[subprocess.Popen[bytes]]) -> None:
    for process in loops:
        process.kill()
        process.wait()


def summary(runs: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> str:
    """An arm's median images/s, its median ratio to the baseline's run of the same round, the
    ratio of the two arms' fastest rounds (the least disturbed by other work on the machine),
    each round's images/s, and the thread counts each run trained on."""
    speeds = [r["images_per_s"] for r in runs]
    base = [b["images_per_s"] for b in baseline]
    ratios = [s / b for s, b in zip(speeds, base, strict=True)]
    return (
        f"{statistics.median(speeds):>9.0f} {statistics.median(ratios):>10.2f} "
        f"{max(speeds) / max(base):>8.2f}  ({', '.join(f'{s:.0f}' for s in speeds)} images/s; "
        f"threads set: {'; '.join(_counts(r['threads']) for r in runs)})"
    )


def _counts(threads: list[int]) -> str:
    """The counts a run trained on, in order, shortened: `1 2 1` or `1 2 1 … (14 changes)`."""
    shown = " ".join(str(t) for t in threads[:3])
    return shown if len(threads) <= 3 else f"{shown} … ({len(threads) - 1} changes)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per arm")
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 2, 4], help="busy loops")
    parser.add_argument("--env", action="store_true", help="also the OpenMP variable arms")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), Path(args.root), args.epochs)))
        return

    from automl_clf.datasets import write_digits
    from automl_clf.machine import usable_cpus

    random.seed(0)
    share = usable_cpus()
    chosen = arms(share, args.env)
    baseline = f"fixed {share}"
    print(
        f"{share} usable CPUs, {os.cpu_count()} on the host; load average before: "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.rounds} rounds × "
        f"{args.epochs} epochs per arm; digits, plain CNN [32, 64] at 16 px, batch 64, light"
    )
    print(
        f"{'busy loops':>10} {'arm':<20} {'images/s':>9} {'vs ' + baseline:>10} {'fastest':>8}"
        "  rounds"
    )
    with tempfile.TemporaryDirectory(prefix="autoclf-threads-") as tmp:
        root = write_digits(Path(tmp) / "digits")
        for load in args.loads:
            loops = busy_loops(load)
            try:
                time.sleep(1.0)  # let the loops start
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
                order = list(chosen)
                for _ in range(args.rounds):
                    random.shuffle(order)
                    for name in order:
                        runs[name].append(run_arm(name, chosen[name], root, args.epochs))
            finally:
                stop(loops)
            for name in chosen:
                print(f"{load:>10} {name:<20} {summary(runs[name], runs[baseline])}", flush=True)


if __name__ == "__main__":
    main()
