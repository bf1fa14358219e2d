"""The report's account of the search (automl_clf/report/search.py, its tables and history
figure) on a real study a time budget cut: states by one name, and pruning's claims about the
pruner's stops only (issue 17)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from automl_clf.report.plots import draw_history
from automl_clf.report.search import SearchSummary, summarise_search
from automl_clf.report.tables import comparison_table, search_sentences, trials_table
from automl_clf.spec import load_spec
from tests.conftest import CUT_EPOCHS, DEADLINE_STUDY_EPOCHS


@pytest.fixture(scope="module")
def study(deadline_study: Path) -> optuna.Study:
    spec = load_spec(deadline_study)
    return optuna.load_study(study_name=spec.study.name, storage=spec.study.storage)


@pytest.fixture(scope="module")
def summary(study: optuna.Study) -> SearchSummary:
    return summarise_search(study)


def test_the_trial_table_names_the_cut_trial_apart_from_the_pruned_one(
    summary: SearchSummary, study: optuna.Study
) -> None:
    table = trials_table(summary)
    states = {row[0]: row[1] for row in table.rows}
    assert states == {"#0": "cut at the deadline", "#1": "pruned"}
    cut = table.rows[0]
    # its best epoch's value, as `best` and the final model rank it, not its last epoch's
    assert cut[2] == f"{study.trials[0].user_attrs['objective_value']:.4g}"
    assert cut[3] == f"{CUT_EPOCHS}/{DEADLINE_STUDY_EPOCHS}"


def test_pruning_claims_count_the_pruners_stops_and_the_cut_has_its_own_line(
    summary: SearchSummary,
) -> None:
    sentences = search_sentences(summary)
    assert sentences[0].startswith("2 trials (1 cut at the deadline, 1 pruned), optimising")
    (pruning,) = [s for s in sentences if s.startswith("Pruning stopped")]
    saved = DEADLINE_STUDY_EPOCHS - 1  # the pruned trial ran 1 epoch
    assert pruning == (
        f"Pruning stopped 1 trial(s) after 1 epochs in all, saving up to {saved} epochs (about "
        "12 s at those trials' own pace)."  # 4 epochs at its 3 s
    )
    (cut,) = [s for s in sentences if s.startswith("The time budget")]
    assert cut == (
        f"The time budget cut 1 trial(s) after {CUT_EPOCHS} epochs in all; each keeps its best "
        "epoch and can be the final model."
    )


def test_the_cut_trial_is_the_best_usable_one(summary: SearchSummary) -> None:
    assert [row.number for row in summary.ranked] == [0]
    table = comparison_table(summary)
    assert table is not None and table.header[1] == "#0 (best)"
    assert summary.n_complete == 0  # what the importances would be computed on


def test_the_history_legend_names_the_cut_trial(summary: SearchSummary) -> None:
    figure = draw_history(summary)
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert labels == ["cut at the deadline", "pruned", "best so far"]
