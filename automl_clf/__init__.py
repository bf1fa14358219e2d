"""autoclf: declarative hyperparameter search for CNN image classifiers.

The path a spec takes: spec → data → model → trial → study → final model → report/export →
predict. The public API mirrors the CLI, one function per command:

    from automl_clf import load_spec, run, load

    spec = load_spec("specs/digits.yaml")                  # autoclf validate (the spec part)
    run(spec, time="2m", export="exports/digits")          # autoclf run --time 2m --export …
    load("exports/digits").predict(["data/digits/3/0003.png"])   # autoclf predict

or step by step: `search(spec)` (autoclf search), then `export_best(spec, "exports/digits")`
(autoclf best --export). Every error a user can cause is an `AutoclfError` with the CLI's
one-line message.

A plain script needs no `if __name__ == "__main__":` guard: the `jobs` helper processes start
autoclf alone, never the caller's script (search/workers.py). `run` and `search` show the CLI's
progress on stderr when it is a terminal (`progress=` forces it on or off), and Optuna's
experimental-API warnings and log lines stay quiet during a call only: importing autoclf or
calling it changes no logging or warning settings of the caller's.
"""

from __future__ import annotations

import os

# albumentations asks the network for a newer version when imported, unless told not to (it
# reads this once, at import). Pretrained weights are the one thing autoclf may download, the
# way timm does, and HF_HUB_OFFLINE=1 forbids that too (models/pretrained.py).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import contextlib
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl_clf.errors import (
    AutoclfError,
    DataError,
    ExportError,
    SpecError,
    StorageError,
    StudyError,
    TrialFailed,
)
from automl_clf.versions import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from automl_clf.final.predictor import Predictor
    from automl_clf.job import JobResult
    from automl_clf.search.run import SearchResult
    from automl_clf.spec.models import ResolvedSpec


__all__ = [
    "AutoclfError",
    "DataError",
    "ExportError",
    "SpecError",
    "StorageError",
    "StudyError",
    "TrialFailed",
    "__version__",
    "export_best",
    "load",
    "load_spec",
    "run",
    "search",
]


def load_spec(
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    budget: str | float | None = None,
    device: str | None = None,
) -> ResolvedSpec:
    """Read and validate a spec file, as every command that takes a SPEC does.

    Args:
        overrides: spec values replaced before validation (the CLI's `--set`), by dotted path:
            `{"train.epochs": 3, "train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}`.
        storage, study_name: `study.storage` and `study.name` (`--storage`, `--study-name`).
        budget: `study.budget`, e.g. "15m" (`--time`).
        device: `train.device`, e.g. "cuda:1" (`--device`): where training runs.

    Raises:
        SpecError: the file or an override breaks a rule of the spec; the message names the
            field, the value and how to fix it.
    """
    from automl_clf.spec.load import load_spec as _load_spec

    return _load_spec(
        path,
        overrides=overrides,
        storage=storage,
        study_name=study_name,
        budget=budget,
        device=device,
    )


def search(
    spec: ResolvedSpec,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    force: bool = False,
    jobs: int | None = None,
    progress: bool | None = None,
) -> SearchResult:
    """Create or resume the spec's study and run trials until it holds `n_trials` finished
    ones (`autoclf search`); calling it again resumes.

    Args:
        n_trials: finished trials the study should hold in all (default `study.n_trials`).
        timeout: seconds for this call (default `study.timeout`).
        force: resume even though the search space changed since the study was made.
        jobs: trials at once on this machine (default: one per core under a time budget on
            a CPU, else 1): this process and `jobs - 1` helper processes.
        progress: show what `autoclf search` shows (the live display, then the study's
            counts and best trial) on stderr; default: when stderr is a terminal. Piped, or
            in a notebook, with `progress=True`: one line per trial event instead of bars.

    Returns:
        The study (`.study`, an `optuna.Study`) and how the call went (`.n_ran`, `.complete`).

    Raises:
        DataError, StudyError, StorageError: as the CLI reports them; Ctrl-C raises
            KeyboardInterrupt after recording the running trial as FAIL (interrupted).
    """
    from automl_clf.search.run import run_search

    with _api_call(progress) as console:
        if console is None:
            from automl_clf.report.trial import record_trial_report

            return run_search(
                spec,
                n_trials=n_trials,
                timeout=timeout,
                force=force,
                jobs=jobs,
                reporter=record_trial_report,
            )
        from automl_clf.cli.progress import search_with_display

        return search_with_display(
            console, spec, n_trials=n_trials, timeout=timeout, force=force, jobs=jobs
        )


def export_best(spec: ResolvedSpec, out_dir: str | Path, trial: int | None = None) -> Path:
    """Retrain the best trial (or trial number `trial`), test it once and write the export to
    `out_dir` (`autoclf best --export`).

    `out_dir` must be new, empty or an earlier autoclf export left as it was: anything else is
    refused before the retrain (ExportError) and left untouched.

    Returns:
        The export's report folder (`metrics.json`, `index.html`, `report.md`).
    """
    from automl_clf.final.export import write_export
    from automl_clf.final.folder import check_export_folder
    from automl_clf.final.retrain import retrain
    from automl_clf.report.final import final_report
    from automl_clf.search.study import load_existing_study

    check_export_folder(Path(out_dir), spec.data.root)  # before the retrain, not after it
    with _api_call(progress=False):
        study = load_existing_study(spec.study.storage, spec.study.name)
        final = retrain(spec, study, trial)
        report = final_report(final, spec, study)
        return write_export(final, Path(out_dir), spec, report=report).report


def run(
    spec: ResolvedSpec,
    *,
    time: str | float | None = None,
    export: str | Path | None = None,
    n_trials: int | None = None,
    force: bool = False,
    jobs: int | None = None,
    progress: bool | None = None,
) -> JobResult:
    """The whole job (`autoclf run`): search, retrain the best configuration, test it once and
    export it, everything within `time` when given.

    Args:
        time: the budget, e.g. "15m", "1h30m" or seconds (default `study.budget`; none:
            search `study.n_trials`, then export). It counts from this call.
        export: the export folder (default `exports/<study name>`).
        n_trials: cap the finished trials (under a budget, none unless given).
        jobs: trials at once while searching, as for `search`.
        progress: show what `autoclf run` shows (the search's and the final step's live
            displays, then the test metrics, the budget's use and the export) on stderr;
            default: when stderr is a terminal. Piped, or in a notebook, with
            `progress=True`: one line per event instead of bars.

    Returns:
        `.export.folder` and `.export.report` (where it wrote), `.final.test` (the test
        metrics), `.search.study`, and `.budget` (the planned and actual split of the time).

    Raises:
        SpecError: the budget cannot fit one epoch and the export; ExportError: `export` is
            not new, empty or an unchanged autoclf export; as `search` raises otherwise.
    """
    from automl_clf.job import run_job
    from automl_clf.spec.duration import parse_duration

    if time is not None:
        study = spec.study.model_copy(update={"budget": parse_duration(time)})
        spec = spec.model_copy(update={"study": study})
    out = Path(export) if export is not None else Path("exports") / str(spec.study.name)
    with _api_call(progress) as console:
        if console is None:
            return run_job(spec, out, n_trials=n_trials, force=force, jobs=jobs)
        from automl_clf.cli.progress import job_with_display

        return job_with_display(console, spec, out, n_trials=n_trials, force=force, jobs=jobs)


@contextlib.contextmanager
def _api_call(progress: bool | None) -> Iterator[Console | None]:
    """An API call that works on a study: Optuna quiet while it runs (only then: the caller's
    settings are its own), and the console to show progress on (stderr), or None."""
    from automl_clf.search.optuna_compat import optuna_quieted

    console = None
    if progress is not False:
        from automl_clf.cli.console import output_console

        console = output_console(stderr=True)
        if progress is None and not console.is_terminal:
            console = None
    with optuna_quieted():
        yield console


class _PublicAPI(types.ModuleType):
    """`automl_clf.search` is both the API function and the search room's package, and Python
    binds a subpackage onto its parent when it is first imported, which replaced the function
    after its first call (`automl_clf.search(spec)` then failed: 'module' object is not
    callable). This module keeps the function; the package is `sys.modules["automl_clf.search"]`,
    which `from automl_clf.search.run import …` reads."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "search" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicAPI


def load(export_dir: str | Path, device: str = "cpu") -> Predictor:
    """Load an export (`best --export`, `run`) as a `Predictor`: `predict(paths)` gives class
    names, `predict_proba(paths)` probabilities in `classes_` order, with exactly the
    training-time preprocessing, run on `device` (`cpu`, `cuda`, `cuda:N` or `auto`). Loading
    reads tensors and JSON only: no code runs.

    Raises:
        ExportError: the folder is not a readable export; the message names the file.
        DeviceError: `device` is not on this machine.
    """
    from automl_clf.final.predictor import load as _load

    return _load(export_dir, device)
