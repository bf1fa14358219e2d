"""The summary lines the CLI prints (automl_clf/cli/tables.py), on a real final result."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml

import automl_clf
from automl_clf.cli.tables import final_summary
from automl_clf.final.retrain import retrain
from tests.conftest import Ensembled, write_spec


def test_an_ensemble_partly_retrained_says_which_members_were(
    ensembled: Ensembled, tmp_path: Path
) -> None:
    """`final.retrain: auto` under a budget retrains the best members that fit; the summary
    names them, not 'each retrained'."""
    raw = yaml.safe_load(ensembled.spec.read_text())
    raw["final"] = {"ensemble": 2, "retrain": "auto"}
    spec = automl_clf.load_spec(write_spec(ensembled.spec.with_name("partly.yaml"), raw))
    study = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)
    final = retrain(spec, study, retrain_members=1)
    assert [m.retrained for m in final.members] == [True, False]
    line = " ".join(final_summary(final).split())
    assert "the best 1 retrained on train+val, the rest as searched" in line
    assert "each retrained" not in line
