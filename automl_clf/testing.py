"""Shared conformance checks for extension authors: every sampler, study storage and export
format autoclf registers passes the same checks, as Optuna's `optuna/testing/pytest_samplers.py`
and `pytest_storages.py` run one suite over each of theirs.

Add a kind to its registry (spec/samplers.py `SAMPLERS`, search/storage.py `STORAGES`,
final/formats.py `FORMATS`) and autoclf's tests run these checks on it, parametrised over the
registry (tests/test_testing.py); an extension's own tests can call them the same way::

    @pytest.mark.parametrize("kind", SAMPLERS.kinds)
    def test_sampler(kind: str, tmp_path: Path) -> None:
        check_sampler(kind, tmp_path)

Each check runs the real thing, small: a SQLite study, a tiny timm `test_*` model on 16 px
images, a few trials; none trains, so each takes about a second (an ONNX export a few). A
failure is an AssertionError saying what the extension got wrong.

This module is for tests: nothing in automl_clf imports it (tests/test_testing.py holds that),
so it may import from every room.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from automl_clf.final.formats import FORMATS, PARITY_TOLERANCE
from automl_clf.search.record import StudyRecord, TrialRecord
from automl_clf.search.samplers import build_sampler
from automl_clf.search.storage import StudyLock, open_storage
from automl_clf.search.study import load_existing_study
from automl_clf.spec.load import parse_spec
from automl_clf.spec.models import Spec
from automl_clf.spec.resolve import resolve
from automl_clf.spec.samplers import SAMPLERS
from automl_clf.spec.space import FixedParams

__all__ = ["check_export_format", "check_sampler", "check_storage", "sampler_check_spec"]

N_TRIALS = 4  # trials asked in each session of `check_sampler`


def sampler_check_spec(kind: str, folder: Path, *, seed: int = 0) -> Spec:
    """A spec whose study uses sampler `kind` over a small space of every kind of value (a
    stepped and a log float range, an integer range, choices of lists and of strings), finite
    so that a grid can take it too. Its data root is an empty folder: nothing is trained."""
    root = folder / "data"
    root.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {
        "study": {
            "name": f"check-{kind}",
            "storage": f"sqlite:///{folder / f'check-{kind}.db'}",
            "sampler": kind,
            "seed": seed,
            "pruner": "none",
        },
        "data": {"root": str(root), "image_size": 8, "channels": 1},
        "model": {
            "backbone": "cnn",
            "dropout": {"low": 0.0, "high": 0.5, "step": 0.05},
            "cnn": {"filters": {"choices": [[4], [8], [4, 8]]}, "fc_width": 16},
        },
        "train": {
            "epochs": 2,
            "batch_size": {"low": 8, "high": 64, "step": 8},
            "lr": {"choices": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]},
            "early_stopping_patience": None,
        },
        "augment": {"policy": {"choices": ["none", "light"]}},
    }
    return parse_spec(raw, base_dir=folder)


def _value(params: dict[str, Any]) -> float:
    """A fixed function of a trial's params: what `check_sampler` tells, so two runs of a
    sampler see the same history."""
    return sum(float(v) for v in params.values() if isinstance(v, int | float))


def _ask(study: optuna.Study, spec: Spec, n: int) -> list[dict[str, Any]]:
    """Ask `n` trials, resolve each (checking it lies in the space), tell `_value`; their
    params."""
    proposed = []
    for _ in range(n):
        trial = study.ask()
        config = resolve(spec, trial)
        for name, value in trial.params.items():
            distribution = trial.distributions[name]
            inside = distribution._contains(distribution.to_internal_repr(value))
            assert inside, f"{name}={value!r} is outside its space {distribution}"
        replayed = resolve(spec, FixedParams(trial.params))
        assert replayed == config, "the trial's params do not replay into the config it trained"
        study.tell(trial, [_value(trial.params)] * len(study.directions))
        proposed.append(trial.params)
    return proposed


def check_sampler(kind: str, folder: Path) -> None:
    """Sampler `kind` (a key of `SAMPLERS`) builds from a spec, proposes configurations within
    the space that replay into the config trained, is reproducible from its seed, and resumes
    a study from its storage without replaying the first trials.

    Args:
        kind: the sampler's registered kind.
        folder: an empty folder for the check's SQLite studies.
    """
    assert kind in SAMPLERS, SAMPLERS.unknown(kind)
    spec = sampler_check_spec(kind, folder)
    sampler = build_sampler(spec)
    assert isinstance(sampler, optuna.samplers.BaseSampler), type(sampler)
    storage = str(spec.study.storage)
    directions = spec.study.directions

    def session(name: str, spec: Spec, n: int) -> list[dict[str, Any]]:
        """`n` more trials of study `name`, with a sampler built afresh (as a new process)."""
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=directions,
            sampler=build_sampler(spec),
            load_if_exists=True,
        )
        return _ask(study, spec, n)

    first = session("a", spec, N_TRIALS)
    assert session("b", spec, N_TRIALS) == first, f"{kind}: the same seed proposed other trials"
    other = sampler_check_spec(kind, folder / "other-seed", seed=1)
    assert session("c", other, N_TRIALS) != first, f"{kind}: another seed proposed the same"
    resumed = session("a", spec, N_TRIALS)
    study = optuna.load_study(study_name="a", storage=storage)
    assert len(study.trials) == 2 * N_TRIALS, "the resumed study lost trials"
    assert resumed != first, f"{kind}: a resumed study replayed its first trials"


def check_storage(url: str, name: str) -> None:
    """A study storage at `url` (of a scheme in `STORAGES`) opens under the study lock, keeps a
    trial (its params, intermediate values, value and user attributes) and the study's own
    attributes, and gives them back when the study is read again by name.

    Args:
        url: where the study lives (`sqlite:///…`, `journal:…`, a database URL).
        name: a study name not yet used in that storage.
    """
    lock = StudyLock(url, name)
    with lock.held():
        study = optuna.create_study(storage=open_storage(url), study_name=name)
    with warnings.catch_warnings():  # the search runs the heartbeat itself (search/run.py)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        trial = study.ask()
    lr = trial.suggest_float("train.lr", 1e-4, 1e-1, log=True)
    trial.report(0.9, step=1)
    trial.report(0.7, step=2)
    TrialRecord(val_loss=0.7, epochs_run=2, lr_history=[lr, lr]).save(trial)
    study.tell(trial, 0.7)
    StudyRecord(classes=["a", "b"], space=["train.lr float"]).save(study)
    with lock.held():  # released: a second worker takes it in turn
        reopened = load_existing_study(url, name)
    (kept,) = reopened.trials
    assert kept.state == optuna.trial.TrialState.COMPLETE, kept.state
    assert kept.value == 0.7 and kept.params == {"train.lr": lr}, (kept.value, kept.params)
    assert kept.intermediate_values == {1: 0.9, 2: 0.7}, kept.intermediate_values
    record = TrialRecord.of(kept)
    assert (record.val_loss, record.epochs_run, record.lr_history) == (0.7, 2, [lr, lr]), record
    study_record = StudyRecord.of(reopened)
    assert study_record.classes == ["a", "b"] and study_record.space == ["train.lr float"]


def check_export_format(name: str, folder: Path) -> None:
    """Export format `name` (a key of `FORMATS`) writes a tiny timm model to its file in
    `folder`, loads it back with its own runtime, and gives the eager model's logits (within
    `PARITY_TOLERANCE`) for batches of any size, from the file alone.

    Args:
        name: the format's registered name.
        folder: an empty folder for the file.
    """
    from automl_clf.models.factory import build_model
    from automl_clf.spec.config import ModelConfig

    assert name in FORMATS, FORMATS.unknown(name)
    form = FORMATS[name]
    model = build_model(
        ModelConfig.plain_timm("test_resnet"), n_classes=3, in_chans=1, image_size=16
    ).eval()
    images = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    path = folder / form.file
    form.write(model, images[:2], path)
    assert path.is_file(), f"{name}: write() did not create {form.file}"
    run = form.load(path)  # from the file alone
    for n in (1, 2, 5):
        with torch.no_grad():
            reference = model(images[:n]).numpy()
        logits = np.asarray(run(images[:n]))
        assert logits.shape == (n, 3), f"{name}: logits of shape {logits.shape} for {n} images"
        diff = float(np.abs(logits - reference).max())
        assert math.isfinite(diff) and diff <= PARITY_TOLERANCE, (
            f"{name}: logits differ from the eager model by {diff:.3g} > {PARITY_TOLERANCE:g} "
            f"for a batch of {n}"
        )
