"""How many complete trials before fANOVA's parameter ranking means something?

The report shows parameter importances only from report/search.py's MIN_IMPORTANCE_TRIALS complete
trials on; this is the evidence for that number. Each study is a random search over `--params`
parameters, uniform on [0, 1], of an objective one parameter dominates:

    objective = f(x0) + c * (x1 + ... + x_{k-1}) + noise

f a slope ("linear") or a valley with its floor at 0.3 ("valley", as a learning rate has an
optimum inside its range), c chosen so x0 explains 90 % of the variance; the noise sd is 0.05.

and the report's evaluator (Optuna's FanovaImportanceEvaluator, seed 0) ranks the parameters after
n complete trials. Printed: for each n, the share of `--studies` studies in which x0 comes out on
top (a fair coin among k parameters would put it there in 1/k of them), and x0's median share.

Evidence, not a test: no training, only Optuna's fANOVA on synthetic trials, seconds per row.
Run with `.venv/bin/python bench/importances.py` (a minute or two on a CPU).

Measured (40 studies per cell, 2026-11; "first": x0 ranked first, "share": x0's median share,
its true share 0.9):

    params  trials   linear: first  share   valley: first  share   (chance)
    3        5               75%    0.56            78%    0.50      33%
    3       10               98%    0.83            90%    0.79
    3       20              100%    0.95           100%    0.90
    6        5               32%    0.24            28%    0.21      17%
    6       10               98%    0.64            98%    0.62
    6       20              100%    0.92           100%    0.89
    10       5               28%    0.15            22%    0.14      10%
    10      10               92%    0.51            80%    0.40
    10      15              100%    0.77            95%    0.72
    10      20              100%    0.89           100%    0.87

With 5 complete trials x0 is often not first (22-78 %); from 10 the order is mostly right but
the bars are far too short (x0 shows 0.40-0.83 of a true 0.9, so the others look as if they
mattered); from 20 both the order and the lengths are right for 3-10 parameters. This is the
easy case (one parameter dominates, little noise, independent random samples); a real search
has noisier values, weaker effects and TPE's clustered samples, so 20 is a floor, not a margin.
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
import optuna

DOMINANT_SHARE = 0.9  # of the objective's variance, explained by x0
NOISE_SD = 0.05
VALLEY_SD = float(np.std((np.linspace(0.0, 1.0, 100_001) - 0.3) ** 2))  # of (x0 - 0.3)^2


def dominant(x0: float, shape: str) -> float:
    """x0's effect, scaled to variance 1/12 on [0, 1] (that of x0 itself): a slope, or a valley
    with its floor off-centre (as a learning rate has an optimum inside its range)."""
    if shape == "linear":
        return x0
    return (x0 - 0.3) ** 2 / VALLEY_SD * math.sqrt(1 / 12)


def study_of(n_trials: int, n_params: int, seed: int, shape: str) -> optuna.Study:
    """A finished random search of `n_trials` complete trials (no training: values computed)."""
    rng = np.random.default_rng(seed)
    others = math.sqrt((1 - DOMINANT_SHARE) / DOMINANT_SHARE / max(n_params - 1, 1))
    study = optuna.create_study()
    unit = optuna.distributions.FloatDistribution(0.0, 1.0)
    distributions = {f"x{i}": unit for i in range(n_params)}
    for _ in range(n_trials):
        x = rng.random(n_params)
        value = dominant(x[0], shape) + others * x[1:].sum() + rng.normal(0.0, NOISE_SD)
        params = {f"x{i}": float(v) for i, v in enumerate(x)}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=value)
        )
    return study


def ranks_first(study: optuna.Study) -> tuple[bool, float]:
    """Whether x0 is the most important parameter, and its share, as the report computes them."""
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return max(importances, key=importances.__getitem__) == "x0", float(importances["x0"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[3, 5, 10, 15, 20, 30])
    parser.add_argument("--params", type=int, nargs="+", default=[3, 6, 10])
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--shapes", nargs="+", default=["linear", "valley"])
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"x0 explains {DOMINANT_SHARE:.0%} of the variance; {args.studies} studies per cell")
    print("shape   params  trials  x0 ranked first  (chance)  x0's median share")
    for shape in args.shapes:
        for n_params in args.params:
            for n_trials in args.trials:
                studies = (study_of(n_trials, n_params, s, shape) for s in range(args.studies))
                results = [ranks_first(study) for study in studies]
                first = sum(r[0] for r in results) / len(results)
                share = statistics.median(r[1] for r in results)
                print(
                    f"{shape:6s}  {n_params:6d}  {n_trials:6d}  {first:15.0%}  "
                    f"{1 / n_params:8.0%}  {share:17.2f}"
                )


if __name__ == "__main__":
    main()
