"""Several trials at once or one trial on every core? `--jobs N` against `--jobs 1`, on digits.

Each arm searches the demo's space (specs/digits.yaml: the plain CNN and `test_resnet` at 16 px,
TPE, successive halving under a time budget) for the same wall-clock `--budget`, from a fresh
study, in this process one after the other, alternating the arms over `--rounds` so a change in
the machine's load hits both. `--jobs 1` trains each trial with every core's threads; `--jobs N`
runs N trials at once (helper processes), the threads split between them. Printed per arm and
round: trials finished (pruned), epochs trained and epochs per second (the search's throughput),
and the best validation loss reached; then the ratio of epochs per second, N jobs over 1.

Evidence, not a test: wall-clock figures vary with the machine's load. Run:
`.venv/bin/python bench/jobs.py --budget 60 --rounds 3 --jobs 2`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import TrialState

from automl_clf.datasets import write_digits
from automl_clf.machine import usable_cpus
from automl_clf.search import run_search
from automl_clf.search.optuna_compat import quiet_optuna
from automl_clf.search.record import TrialRecord, trial_state
from automl_clf.spec.load import load_spec

REPO = Path(__file__).resolve().parents[1]


def spec_file(root: Path, folder: Path, name: str, budget: float) -> Path:
    raw: dict[str, Any] = yaml.safe_load((REPO / "specs" / "digits.yaml").read_text())
    raw["data"]["root"] = str(root)
    raw["study"] = {"name": name, "storage": f"sqlite:///{folder / 'jobs.db'}", "budget": budget}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_arm(root: Path, work: Path, jobs: int, budget: float, index: int) -> dict[str, Any]:
    folder = work / f"arm{index}-jobs{jobs}"
    folder.mkdir()
    spec = load_spec(spec_file(root, folder, f"jobs{jobs}", budget))
    started = time.perf_counter()
    result = run_search(spec, jobs=jobs)
    seconds = time.perf_counter() - started
    trials = result.study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    records = [TrialRecord.of(t) for t in finished]
    epochs = sum(r.epochs_run or 0 for r in records)
    losses = [r.val_loss for r in records if r.val_loss is not None]
    return {
        "jobs": jobs,
        "seconds": seconds,
        "finished": len(finished),
        "pruned": sum(trial_state(t) == "pruned" for t in finished),  # the pruner's stops
        "epochs": epochs,
        "epochs_per_s": epochs / seconds,
        "best_val_loss": min(losses) if losses else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per arm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=max(2, usable_cpus()), help="N of --jobs N")
    args = parser.parse_args()
    quiet_optuna()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="autoclf-jobs-") as tmp:
        work = Path(tmp)
        root = write_digits(work / "digits")
        run_search(load_spec(spec_file(root, work, "warm", 5)))  # decode cache, imports
        for round_ in range(args.rounds):
            order = (1, args.jobs) if round_ % 2 == 0 else (args.jobs, 1)
            for jobs in order:
                rows.append(run_arm(root, work, jobs, args.budget, len(rows)))
                row = rows[-1]
                print(
                    f"round {round_} jobs {jobs}: {row['finished']} finished "
                    f"({row['pruned']} pruned), {row['epochs']} epochs in {row['seconds']:.1f} s "
                    f"= {row['epochs_per_s']:.2f} epochs/s, best val loss "
                    f"{row['best_val_loss']:.4f}",
                    flush=True,
                )
    one = [r["epochs_per_s"] for r in rows if r["jobs"] == 1]
    many = [r["epochs_per_s"] for r in rows if r["jobs"] == args.jobs]
    ratios = [m / o for m, o in zip(many, one, strict=False)]
    print(
        f"epochs/s, {args.jobs} jobs over 1: median {statistics.median(ratios):.2f} "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    best_one = statistics.median(r["best_val_loss"] for r in rows if r["jobs"] == 1)
    best_many = statistics.median(r["best_val_loss"] for r in rows if r["jobs"] == args.jobs)
    print(f"median best val loss: 1 job {best_one:.4f}, {args.jobs} jobs {best_many:.4f}")


if __name__ == "__main__":
    main()
