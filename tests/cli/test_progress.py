"""The live displays (automl_clf/cli/progress.py), driven event by event on a recording rich
Console and a clock the test moves: what a terminal shows under the trial lines, and what a
piped log gets instead. One real search and one real export through the CLI show the lines
arrive from real training."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.cli.progress import POLL_S, FinalProgress, SearchProgress
from automl_clf.data import batches
from automl_clf.final.retrain import RetrainProgress
from automl_clf.search.budget import Budget
from automl_clf.spec import load_spec
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.resolve import resolve
from automl_clf.spec.space import FixedParams
from automl_clf.spec.warmstart import default_params
from automl_clf.train.metrics import EvalResult
from automl_clf.train.trainer import EpochResult
from tests.conftest import CUT_EPOCHS, Ensembled, tiny_spec, write_spec
from tests.search.test_eta import Clock

runner = CliRunner()
PARAMS = {"model.dropout": 0.125, "train.lr": 0.0032, "augment.policy": "light"}


def terminal() -> Console:
    """A terminal the live bars draw on (into a buffer); `shown` reads what they show."""
    return Console(file=io.StringIO(), width=150, force_terminal=True, color_system=None)


def piped(width: int = 80) -> Console:
    return Console(record=True, width=width, force_terminal=False, color_system=None)


def shown(display: SearchProgress | FinalProgress) -> str:
    """What the terminal shows now under the printed lines, as text."""
    screen = Console(record=True, width=150, color_system=None)
    screen.print(display.renderable())
    return screen.export_text()


@pytest.fixture
def config(spec_file: Path) -> TrialConfig:
    spec = load_spec(spec_file)  # the tiny spec: the plain CNN, 3 epochs
    return resolve(spec, FixedParams(default_params(spec), strict=False))


def running(
    console: Console,
    config: TrialConfig,
    clock: Clock,
    target: int | None = 3,
    budget: Budget | None = None,
) -> SearchProgress:
    """A display whose search has started (on an empty study) and runs trial #0."""
    display = SearchProgress(console, target=target, clock=clock)
    display.search_started(optuna.create_study(), target, budget=budget, workers=1)
    display.trial_started(0, PARAMS, config)
    return display


def epoch(number: int, seconds: float, loss: float = 0.5) -> EpochResult:
    val = EvalResult(loss, 0.8, 0.8, 0.8, np.zeros((0, 0)), np.zeros(0, dtype=np.int64))
    return EpochResult(number, loss, val, 0.01, seconds)


def finished_trial(study: optuna.Study, value: float) -> FrozenTrial:
    """A real trial of `study`, told COMPLETE with what the search would have stored."""
    trial = study.ask()
    trial.set_user_attr("val_loss", value)
    trial.set_user_attr("val_accuracy", 0.8)
    return study.tell(trial, value)


def test_the_running_trial_shows_its_backbone_params_and_own_elapsed(
    config: TrialConfig,
) -> None:
    clock, console = Clock(), terminal()
    display = SearchProgress(console, target=3, clock=clock)
    study = optuna.create_study()
    display.search_started(study, 3, budget=None, workers=1)
    display.trial_started(0, PARAMS, config)
    clock.now += 90
    first = shown(display)
    assert "#0 cnn" in first and "0:01:30" in first
    assert "dropout=0.125 lr=0.0032 policy=light" in first  # its parameters, under the bars

    display.trial_finished(study, finished_trial(study, 0.4))
    clock.now += 5
    display.trial_started(1, PARAMS, config)
    clock.now += 7
    second = shown(display).split("#0   complete")[-1]
    assert "#1 cnn" in second
    assert "0:00:07" in second  # trial #1's own time, not trial #0's 1:30 nor the search's
    assert "0:01:42" in second  # the search's, on the trials' row
    assert "1/3 finished" in second


def test_the_trial_row_counts_epochs_and_its_time_left(config: TrialConfig) -> None:
    clock, console = Clock(), terminal()
    display = running(console, config, clock)
    clock.now += 10
    display.epoch_done(0, epoch(1, seconds=10.0, loss=0.4321), max_epochs=3)
    text = shown(display)
    assert "val loss 0.4321" in text and "1/3 epochs" in text
    assert "~20 s left" in text  # two more epochs of 10 s
    assert "ETA 1 m 20 s" in text  # this trial's 20 s left, then two more of 30 s


def test_a_trial_past_its_last_epoch_keeps_counting_its_time(config: TrialConfig) -> None:
    """After its last epoch a trial still measures latency and writes artifacts: its elapsed
    time goes on (rich's own column freezes on a full bar) and it says it is finishing."""
    clock, console = Clock(), terminal()
    display = running(console, config, clock)
    for number in (1, 2, 3):
        clock.now += 10
        display.epoch_done(0, epoch(number, seconds=10.0), max_epochs=3)
    clock.now += 25
    text = shown(display)
    assert "3/3 epochs" in text and "0:00:55" in text and "finishing" in text


def test_batches_show_inside_a_long_epoch_only(config: TrialConfig) -> None:
    clock, console = Clock(), terminal()
    display = running(console, config, clock)
    clock.now += 1
    display.steps_done(0, 40, 390)
    assert "batches" not in shown(display).replace("│", "")  # a short epoch so far
    clock.now += 9
    display.steps_done(0, 120, 390)
    text = shown(display)
    assert "epoch 1" in text and "120/390 batches" in text
    assert "ETA" in text and "ETA ?" not in text  # paced by its batches before any epoch ends
    display.epoch_done(0, epoch(1, seconds=30.0), max_epochs=3)
    assert "batches" not in shown(display).split("1/3 epochs")[-1]


def test_under_a_time_budget_the_study_eta_is_the_search_deadline(config: TrialConfig) -> None:
    clock, console = Clock(), terminal()
    budget = Budget.start(600.0, clock)
    display = running(console, config, clock, target=None, budget=budget)
    clock.now += 180
    assert "ETA 7 m 00 s (time budget)" in shown(display)


def test_piped_lines_are_never_wrapped(config: TrialConfig) -> None:
    """A log gets one line per start and end, whatever the console's width (80 when piped)."""
    clock, console = Clock(), piped(width=80)
    params = {f"model.param_{i}": 0.001 * i for i in range(12)}
    display = SearchProgress(console, target=2, clock=clock)
    study = optuna.create_study()
    with display:
        display.search_started(study, 2, budget=None, workers=1)
        display.trial_started(0, params, config)
        display.trial_finished(study, finished_trial(study, 0.3))
    lines = console.export_text().splitlines()
    started = [line for line in lines if line.startswith("#0   started")]
    assert len(started) == 1 and len(started[0]) > 80
    assert "param_0=0" in started[0] and "param_11=0.011" in started[0]
    assert "[0/2 finished, ETA ?]" in started[0]
    (ended,) = [line for line in lines if line.startswith("#0   complete")]
    assert "[1/2 finished" in ended


def test_a_long_trial_speaks_in_a_piped_log_every_half_minute(config: TrialConfig) -> None:
    clock, console = Clock(), piped()
    display = running(console, config, clock, target=2)
    clock.now += 10
    display.steps_done(0, 10, 100)  # too soon after the start line: silent
    clock.now += 25
    display.steps_done(0, 35, 100)
    clock.now += 5
    display.steps_done(0, 40, 100)  # 5 s after the last: silent
    lines = [line for line in console.export_text().splitlines() if "batch" in line]
    assert lines == [
        "#0   epoch 1/3: batch 35/100; trial 35 s, ~4 m 25 s left  [0/2 finished, ETA 9 m 25 s]"
    ]


def test_other_workers_trials_are_read_from_the_study(config: TrialConfig) -> None:
    """`--jobs` helpers and other machines run trials this process never hears of: the display
    reads them from the study, so their lines, the count and the ETA include them."""
    clock, console = Clock(), piped()
    study = optuna.create_study()
    finished_trial(study, 0.9)  # before this search: counted, not printed again
    display = SearchProgress(console, target=3, clock=clock)
    display.search_started(study, 3, budget=None, workers=2)
    display.trial_started(1, PARAMS, config)
    study.ask()  # our trial #1, running
    other = study.ask()  # another worker's, which finishes
    other.set_user_attr("worker", "elsewhere:42")
    other.set_user_attr("val_loss", 0.2)
    study.tell(other, 0.2)
    clock.now += POLL_S
    display.epoch_done(1, epoch(1, seconds=5.0), max_epochs=3)
    lines = console.export_text().splitlines()
    (line,) = [line for line in lines if line.startswith("#2 ")]
    assert "complete" in line and "(worker elsewhere:42)" in line and "[2/3 finished" in line
    assert not [line for line in lines if line.startswith("#0 ")]
    assert display.finished == {0, 2}


def test_a_trial_cut_at_the_deadline_is_not_shown_as_pruned(deadline_study: Path) -> None:
    """Issue 17: the live line said PRUNED for a trial the time budget cut, which keeps its best
    epoch; only the pruner's stop is 'pruned'."""
    spec = load_spec(deadline_study)
    stored = optuna.load_study(study_name=spec.study.name, storage=spec.study.storage).trials
    clock, console = Clock(), piped()
    study = optuna.create_study()
    display = SearchProgress(console, target=None, clock=clock)
    display.search_started(study, None, budget=None, workers=2)
    study.add_trials(stored)  # ended in another worker as the display watched
    clock.now += POLL_S
    display.poll()
    lines = console.export_text().splitlines()
    (cut,) = [line for line in lines if line.startswith("#0 ")]
    (pruned,) = [line for line in lines if line.startswith("#1 ")]
    assert cut.startswith("#0   cut at the deadline val loss") and "pruned" not in cut
    assert f"({CUT_EPOCHS} ep," in cut
    assert pruned.startswith("#1   pruned   val loss")
    assert display.finished == {0, 1}


def test_the_final_retrain_shows_its_epochs_over_every_run_with_an_eta() -> None:
    clock = Clock()
    with FinalProgress(terminal(), clock=clock) as display:
        final_retrain_events(display, clock)


def final_retrain_events(display: FinalProgress, clock: Clock) -> None:
    display(RetrainProgress("train", trial=3, seed=0, epochs=4, total=8))
    clock.now += 10
    display(
        RetrainProgress("train", trial=3, seed=0, epoch=1, epochs=4, done=1, total=8, epoch_s=10.0)
    )
    text = shown(display)
    assert "final: retraining trial #3 (seed 0)" in text
    assert "1/8 epochs" in text and "ETA 1 m 10 s" in text
    clock.now += 3
    display(
        RetrainProgress(
            "train", trial=3, seed=0, epoch=1, epochs=4, done=1, total=8, step=50, n_steps=200
        )
    )
    text = shown(display)
    assert "epoch 2/4" in text and "50/200 batches" in text
    display(RetrainProgress("test"))
    assert "testing the final model" in shown(display)


def test_retrain_on_step_reaches_the_batches(
    monkeypatch: pytest.MonkeyPatch, config: TrialConfig, spec_file: Path
) -> None:
    """The trainer's batch hook, throttled to every 0 s here so that one tiny epoch shows it."""
    from automl_clf.data.dataset import load_dataset
    from automl_clf.train.session import train_config

    monkeypatch.setattr(batches, "STEP_REPORT_S", 0.0)
    heard: list[tuple[int, int]] = []
    dataset = load_dataset(load_spec(spec_file).data)
    train_config(config, dataset, max_epochs=1, on_step=lambda s, n: heard.append((s, n)))
    n_steps = heard[0][1]
    assert [s for s, _ in heard] == list(range(n_steps))
    assert {n for _, n in heard} == {n_steps} and n_steps > 1


def test_steps_are_reported_at_most_every_half_second() -> None:
    ticks = iter(np.arange(0.0, 100.0, 0.2))  # each batch takes 0.2 s
    heard: list[int] = []
    out = list(
        batches.reporting_steps(
            iter(range(10)), 10, lambda s, n: heard.append(s), clock=lambda: float(next(ticks))
        )
    )
    assert out == list(range(10))  # the batches themselves go through untouched
    assert heard == [2, 5, 8]  # at 0.6 s, 1.2 s and 1.8 s: the batches done by then


def test_a_real_search_prints_each_trials_params_when_it_starts(
    tmp_path: Path, digits_root: Path
) -> None:
    raw = tiny_spec(digits_root, tmp_path, study={"n_trials": 2}, train={"epochs": 1})
    path = write_spec(tmp_path / "spec.yaml", raw)
    result = runner.invoke(app, ["search", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for number in (0, 1):
        (started,) = [line for line in lines if line.startswith(f"#{number}   started  cnn  ")]
        for name in ("dropout=", "filters=", "lr=", "policy="):
            assert name in started
        assert f"[{number}/2 finished, ETA" in started
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    assert study.metric_names == ["val_loss"]  # optuna-dashboard's label, not "Objective 0"
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}


def test_an_export_prints_the_final_steps_progress(ensembled: Ensembled) -> None:
    """Piped, `best --export` says what it does: retrained members get epoch lines, this
    ensemble (taken as searched) is loaded, tested and written."""
    lines = ensembled.output.splitlines()
    assert "final model: loading the top 4 trials' best-epoch weights (not retraining)" in lines
    assert "final: testing the final model on the test split" in lines
    assert "final: writing the export: formats, parity checks, report" in lines
