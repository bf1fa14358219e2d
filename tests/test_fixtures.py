"""What every release left on its users' disks stays usable: each release's frozen fixture
(tests/fixtures/autoclf-*/, written once by that release) is copied to a new place, and with
today's code its study resumes and exports, and its export predicts what it predicted the day it
was written. Then the next change is simulated, a new trial config field with its migration
(automl_clf/versions.py), and the same old study still exports and the old export still predicts.

The copy is in a new folder on purpose: every absolute path the study recorded (its trials'
weights files) points nowhere, as for a study moved to another disk or machine.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from pydantic.fields import FieldInfo
from typer.testing import CliRunner

import automl_clf
from automl_clf.cli import app
from automl_clf.final.manifest import read_manifest
from automl_clf.final.retrain import trial_config
from automl_clf.search.record import TrialRecord
from automl_clf.versions import MODEL_JSON, TRIAL_CONFIG

FIXTURES = Path(__file__).parent / "fixtures"
RELEASES = sorted(path.name for path in FIXTURES.glob("autoclf-*") if path.is_dir())
runner = CliRunner()
pytestmark = pytest.mark.slow


@pytest.fixture(params=RELEASES)
def release(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of one release's fixture in a new folder (see the module docstring)."""
    copied = shutil.copytree(FIXTURES / request.param, tmp_path / request.param)
    return Path(copied)


def recorded_predictions(folder: Path) -> dict[str, tuple[str, float]]:
    """The release's own predictions.csv: relative path -> (class, probability)."""
    rows = csv.DictReader(io.StringIO((folder / "predictions.csv").read_text()))
    return {row["path"]: (row["predicted"], float(row["probability"])) for row in rows}


def predictions(export: Path, folder: Path) -> dict[str, tuple[str, float]]:
    """What `export` answers for the images under folder/data, keyed as predictions.csv is."""
    found = automl_clf.load(export).predict_paths([folder / "data"])
    assert all(p.error is None and p.probability is not None for p in found)
    return {
        p.path.relative_to(folder).as_posix(): (str(p.predicted), float(p.probability or 0))
        for p in found
    }


def assert_same_answers(now: dict[str, tuple[str, float]], then: dict[str, tuple[str, float]]):
    assert now.keys() == then.keys()
    for path, (predicted, probability) in then.items():
        assert now[path][0] == predicted, path
        assert now[path][1] == pytest.approx(probability, abs=2e-6), path  # printed to 6 places


def study_of(folder: Path) -> optuna.Study:
    spec = automl_clf.load_spec(folder / "spec.yaml")
    return optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_the_old_export_predicts_what_it_predicted_when_written(release: Path) -> None:
    manifest = read_manifest(release / "export" / "model.json")  # through the migrations
    assert manifest.format_version == MODEL_JSON.version
    assert manifest.config_version == TRIAL_CONFIG.version
    assert_same_answers(predictions(release / "export", release), recorded_predictions(release))


def test_the_old_study_resumes(release: Path) -> None:
    before = {t.number: t.params for t in study_of(release).trials}
    invoke("search", str(release / "spec.yaml"), "--set", f"study.n_trials={len(before) + 2}")
    trials = study_of(release).trials
    assert len(trials) == len(before) + 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {t.number: t.params for t in trials[: len(before)]} == before  # left as they were
    new = TrialRecord.of(trials[-1])
    assert new.config_version == TRIAL_CONFIG.version and new.config is not None


def test_the_old_study_exports_over_its_old_export(release: Path) -> None:
    """`best --export` retrains the old study's best trials and replaces the old export (whose
    marker it recognises); the new export predicts."""
    spec, export = release / "spec.yaml", release / "export"
    invoke("best", str(spec), "--export", str(export))
    manifest = json.loads((export / "model.json").read_text())
    assert manifest["format_version"] == MODEL_JSON.version and manifest["retrained"] is True
    answers = predictions(export, release)
    classes = set(read_manifest(export / "model.json").classes)
    assert answers.keys() == recorded_predictions(release).keys()
    assert {predicted for predicted, _ in answers.values()} <= classes


def test_the_old_study_exports_its_trials_as_searched_from_where_it_moved(release: Path) -> None:
    """final.retrain never: the trials' own best-epoch weights, recorded at their old absolute
    paths, are found in the study's artifacts folder where it is now."""
    out = release / "as-searched"
    invoke(
        "best", str(release / "spec.yaml"), "--export", str(out), "--set", "final.retrain=never"
    )
    manifest = read_manifest(out / "model.json")
    assert manifest.retrained is False and all(not m.retrained for m in manifest.members)
    assert predictions(out, release).keys() == recorded_predictions(release).keys()


# --- the next change, simulated ------------------------------------------------------------------


@pytest.fixture
def beta2(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """The change issue 19 tried: `train.beta2` (Adam's second-moment decay) added to the spec
    (default 0.999) and to the trial config, without a default there (a stored config says
    everything), with the trial config step that gives every older config the value it trained
    with. Yields that value.

    Adding a field to a pydantic model after the fact: the field goes into the model's
    `__pydantic_fields__` and every model that holds it is rebuilt; both are undone after."""
    from automl_clf.final.manifest import ExportManifest, MemberRecord
    from automl_clf.spec.config import TrainConfig, TrialConfig
    from automl_clf.spec.fields import Fraction
    from automl_clf.spec.models import ResolvedSpec, Spec
    from automl_clf.spec.space import Tunable
    from automl_clf.spec.train import TrainSpec

    old_default = 0.999

    def trial_config_2(config: dict[str, object]) -> dict[str, object]:
        """Trial config 2 adds train.beta2; version 1 trained with Adam's default."""
        train = config["train"]
        assert isinstance(train, dict)
        train["beta2"] = old_default
        return config

    monkeypatch.setattr(TRIAL_CONFIG, "steps", [*TRIAL_CONFIG.steps, trial_config_2])
    added = {
        TrainSpec: FieldInfo.from_annotated_attribute(Tunable[Fraction], old_default),
        TrainConfig: FieldInfo.from_annotation(float),
    }
    holders = (Spec, ResolvedSpec, TrialConfig, MemberRecord, ExportManifest)
    before = {model: model.__pydantic_fields__ for model in added}
    try:
        for model, info in added.items():
            model.__pydantic_fields__ = {**before[model], "beta2": info}
        for model in (*added, *holders):
            model.model_rebuild(force=True)
        yield old_default
    finally:
        for model in added:
            model.__pydantic_fields__ = before[model]
        for model in (*added, *holders):
            model.model_rebuild(force=True)


def test_after_a_new_trial_config_field_the_old_export_still_predicts(
    release: Path, beta2: float
) -> None:
    manifest = read_manifest(release / "export" / "model.json")
    assert manifest.config_version == 2 and manifest.config.train.beta2 == beta2
    assert all(m.config.train.beta2 == beta2 for m in manifest.members)
    assert_same_answers(predictions(release / "export", release), recorded_predictions(release))


def test_after_a_new_trial_config_field_the_old_study_resumes_and_exports(
    release: Path, beta2: float
) -> None:
    spec = automl_clf.load_spec(release / "spec.yaml")
    study = study_of(release)
    assert all(trial_config(t).train.beta2 == beta2 for t in study.trials)
    automl_clf.search(spec, n_trials=len(study.trials) + 1)  # a trial of the new version
    newest = study_of(release).trials[-1]
    assert TrialRecord.of(newest).config_version == 2
    assert TrialRecord.of(newest).config["train"]["beta2"] == beta2  # type: ignore[index]
    out = release / "new-export"
    automl_clf.export_best(spec, out)
    written = json.loads((out / "model.json").read_text())
    assert written["config_version"] == 2 and written["config"]["train"]["beta2"] == beta2
    assert predictions(out, release).keys() == recorded_predictions(release).keys()
