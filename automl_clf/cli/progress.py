"""The live displays of `search`, `run` and `best --export`: what runs, how far it is, and when
it should end.

In a terminal, bars stay under the lines of finished trials:

    trials                             ━━━━━━━━━━╺━━━━━━━━━ 1/2     finished 0:03:11 ETA 36 s
    #1 cnn · val loss 0.4327 acc 0.872 ━━━━━━━━━━╺━━━━━━━━━ 1/2     epochs   0:01:36 ~36 s left
      epoch 2                          ━━━━━━━━╺━━━━━━━━━━  61/135 batches  0:00:27
       dropout=0.1251 lr=0.005252 policy=light

the study's finished trials (every worker's: the display reads the study every few seconds, so
`--jobs` helpers and other machines count) with the search's ETA; the running trial's backbone,
epochs, its own elapsed time and time left, its parameters; and, once an epoch has run two
seconds, the epoch's batches. The ETAs are search/eta.py's arithmetic over measured times.

Piped (a log file, CI), there are no bars: each trial's start with its parameters, its end, and
for a long trial a line at most every 30 s (epochs, batches, ETA), each an unwrapped line.

The final step (`FinalProgress`) shows the retrain's epochs over all its runs (members × seeds)
with an ETA, the batches of a long epoch, then the test and the export.

`search_with_display` and `job_with_display` are `autoclf search` and `autoclf run` as they show
on a console, the lines before and after the displays included: the CLI prints them on stdout,
the Python API (`automl_clf.search`, `automl_clf.run`) on stderr, one code for both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.text import Text

from automl_clf.budget_plan import BudgetPlan
from automl_clf.cli.tables import (
    STATE_STYLE,
    best_line,
    budget_plan_lines,
    budget_table,
    final_plan_line,
    final_summary,
    fold_line,
    format_params,
    formats_summary,
    print_warnings,
    study_counts,
)
from automl_clf.final.retrain import RetrainProgress
from automl_clf.job import JobResult, run_job
from automl_clf.search.budget import Budget
from automl_clf.search.eta import Eta, RunPace, search_eta, typical_trial_s
from automl_clf.search.objective import QuietObserver
from automl_clf.search.record import STATES, TrialRecord, trial_state
from automl_clf.search.run import SearchResult, run_search
from automl_clf.search.samplers import random_start_warnings, search_warnings
from automl_clf.search.study import FINISHED, fail_reason, ranked_trials, trial_value
from automl_clf.spec.config import TrialConfig
from automl_clf.spec.duration import format_duration
from automl_clf.spec.models import ResolvedSpec
from automl_clf.train.trainer import EpochResult

Clock = Callable[[], float]
POLL_S = 5.0  # how often the display reads the study for other workers' trials
PIPED_EVERY_S = 30.0  # piped, a running trial's sign of life comes at most this often
LONG_EPOCH_S = 2.0  # an epoch running this long gets a bar of its batches


def is_live(console: Console) -> bool:
    """Whether `console` can redraw bars (a terminal); else it gets plain lines."""
    return console.is_terminal and not console.is_dumb_terminal


class _Eta(ProgressColumn):
    """The task's `eta` field, a callable evaluated at every refresh, so a countdown moves
    between the events that change it."""

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta")
        return Text(eta() if eta is not None else "", style="progress.remaining")


class _Elapsed(ProgressColumn):
    """Time since the task (re)started, still counting once its bar is full: a trial whose
    epochs are all done is still running (its latency is measured, its artifacts written),
    where rich's own column would freeze."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        if elapsed is None:
            return Text("-:--:--", style="progress.elapsed")
        return Text(str(timedelta(seconds=max(0, int(elapsed)))), style="progress.elapsed")


class _Bars(Progress):
    """Bars with a line of text under them (the running trial's parameters)."""

    def __init__(self, console: Console, clock: Clock) -> None:
        self.footer = Text()  # before Progress builds its first frame
        super().__init__(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            _Elapsed(),
            _Eta(),
            console=console,
            transient=True,
            get_time=clock,
            disable=not is_live(console),
        )

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.footer:
            yield self.footer

    def row(self, unit: str, eta: Callable[[], str] | None = None) -> TaskID:
        return self.add_task("", total=None, visible=False, unit=unit, eta=eta)


@dataclass
class _Running:
    """The trial this process runs, as the display follows it."""

    number: int
    backbone: str
    params: dict[str, Any]
    started: float  # display clock
    pace: RunPace
    last_line: float  # when a piped line last spoke of it
    batch_epoch: int = 0  # the epoch whose batches the batch bar shows (0: none yet)


def sampled_params(params: dict[str, Any]) -> str:
    """The trial's parameters but the backbone, which the display names on its own."""
    return format_params({k: v for k, v in params.items() if k.rsplit(".", 1)[-1] != "backbone"})


def eta_text(eta: Eta | None, budget: Budget | None = None) -> str:
    """`ETA 2 m 10 s`, `(time budget)` when the deadline ends the search; under `run`'s budget
    also when the whole job ends (the final step after the search)."""
    text = "ETA ?" if eta is None else f"ETA {format_duration(eta.seconds)}"
    if eta is not None and eta.by_budget:
        text += " (time budget)"
    if budget is not None and budget.final_estimate is not None:
        text += f", job ends in {format_duration(budget.left_s)}"
    return text


class SearchProgress(QuietObserver):
    """A `SearchObserver` (search/objective.py): see the module docstring.

    `clock` (monotonic seconds) and `wall` (for the start times Optuna stores) are injectable,
    so a test drives the display without training or waiting.
    """

    def __init__(
        self,
        console: Console,
        *,
        target: int | None,
        clock: Clock = time.monotonic,
        wall: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.console, self.target, self.clock, self.wall = console, target, clock, wall
        self.live = is_live(console)
        self.bars = _Bars(console, clock)
        self.study_task = self.bars.row("finished", self.study_eta_text)
        self.trial_task = self.bars.row("epochs", self.trial_eta_text)
        self.batch_task = self.bars.row("batches")
        self.bars.update(self.study_task, description="trials", total=target, visible=True)
        self.study: optuna.Study | None = None
        self.budget: Budget | None = None
        self.workers = 1
        self.finished: set[int] = set()  # COMPLETE and PRUNED trials of the study
        self.reported: set[int] = set()  # ended trials already shown (or ended before)
        self.durations: dict[int, float] = {}  # seconds of each finished trial
        self.others: list[datetime | None] = []  # starts of other workers' running trials
        self.polled = -math.inf
        self.running: _Running | None = None
        self.waiting = False  # only other workers' trials are missing

    def __enter__(self) -> SearchProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the bars (again is harmless): the final step's display comes next."""
        self.bars.stop()

    def renderable(self) -> RenderableType:
        """What the terminal shows under the finished trials' lines."""
        return self.bars.get_renderable()

    def print(self, line: str) -> None:
        """A line above the bars; piped, one line however long (a log's line is a record)."""
        self.console.print(line, soft_wrap=not self.live)

    def search_started(
        self, study: optuna.Study, target: int | None, *, budget: Budget | None, workers: int
    ) -> None:
        self.study, self.target, self.budget, self.workers = study, target, budget, workers
        self.poll(quiet=True, force=True)
        self.bars.update(self.study_task, total=target)

    def trial_started(self, number: int, params: dict[str, Any], config: TrialConfig) -> None:
        now = self.clock()
        backbone = config.model.backbone
        pace = RunPace(config.train.epochs, now)
        self.running = _Running(number, backbone, params, now, pace, now)
        self.bars.reset(
            self.trial_task,
            total=config.train.epochs,
            description=f"#{number} {backbone}",
            visible=True,
        )
        self.bars.footer = Text(f"   {sampled_params(params)}", style="dim")
        if self.waiting:  # another worker's trial failed: this one replaces it
            self.waiting = False
            self.bars.update(self.study_task, description="trials")
        if not self.live:
            self.print(
                f"#{number:<3} started  {backbone}  {sampled_params(params)}  "
                f"[{self.study_line()}]"
            )

    def steps_done(self, number: int, step: int, n_steps: int) -> None:
        running, now = self.running, self.clock()
        if running is None or running.number != number:
            return
        running.pace.steps_done(step, n_steps, now)
        if now - running.pace.epoch_started >= LONG_EPOCH_S:
            epoch = running.pace.done + 1
            if running.batch_epoch != epoch:  # its elapsed time is the epoch's
                running.batch_epoch = epoch
                self.bars.reset(self.batch_task, total=n_steps, description=f"  epoch {epoch}")
            self.bars.update(self.batch_task, completed=step, total=n_steps, visible=True)
        epochs = f"epoch {running.pace.done + 1}/{running.pace.epochs}"
        self._sign_of_life(running, now, f"{epochs}: batch {step}/{n_steps}")
        self.poll()

    def epoch_done(self, number: int, epoch: EpochResult, max_epochs: int) -> None:
        running, now = self.running, self.clock()
        if running is None or running.number != number:
            return
        running.pace.epochs = max_epochs
        running.pace.epoch_done(epoch.seconds, now)
        val = epoch.val
        metrics = f"val loss {val.loss:.4f} acc {val.accuracy:.3f}" if val is not None else ""
        self.bars.update(
            self.trial_task,
            completed=epoch.epoch,
            total=max_epochs,
            description=f"#{number} {running.backbone} · {metrics}",
        )
        self.bars.update(self.batch_task, visible=False)
        self._sign_of_life(running, now, f"epoch {epoch.epoch}/{max_epochs}: {metrics}")
        self.poll()

    def _sign_of_life(self, running: _Running, now: float, what: str) -> None:
        """Piped, a line on the running trial (`what`, its times, the study's), at most every
        `PIPED_EVERY_S`: a long trial shows it is alive; short ones stay at two lines."""
        if self.live or now - running.last_line < PIPED_EVERY_S:
            return
        running.last_line = now
        self.print(
            f"#{running.number:<3} {what}; trial {self._trial_times(running)}  "
            f"[{self.study_line()}]"
        )

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.running = None
        self.bars.update(self.trial_task, visible=False)
        self.bars.update(self.batch_task, visible=False)
        self.bars.footer = Text()
        self._ended(study, trial, worker=None)
        self.poll()

    def waiting_for_others(self) -> None:
        if not self.waiting:
            self.waiting = True
            self.bars.update(self.study_task, description="trials (waiting for other workers)")
            if not self.live:
                self.print("waiting: the last trials run in other workers")
        self.poll()

    def notice(self, text: str) -> None:
        self.print(f"[yellow]note[/yellow]: {text}")

    def poll(self, *, quiet: bool = False, force: bool = False) -> None:
        """Read the study's trials, at most every `POLL_S` seconds: other workers' ended
        trials get their line (unless `quiet`: those that ended before this search), and their
        running ones and finished times feed the count and the ETA.

        A display must never be what stops a search: a failed read keeps what was known (the
        search's own storage calls report a broken storage).
        """
        now = self.clock()
        if self.study is None or (not force and now - self.polled < POLL_S):
            return
        self.polled = now
        try:
            trials = self.study.get_trials(deepcopy=False)
        except Exception:
            return
        own = self.running.number if self.running is not None else None
        self.others = [
            t.datetime_start for t in trials if t.state == TrialState.RUNNING and t.number != own
        ]
        for trial in trials:
            if trial.state.is_finished() and trial.number not in self.reported:
                if quiet:
                    self._count(trial)
                else:
                    self._ended(self.study, trial, worker=TrialRecord.of(trial).worker or "?")

    def _count(self, trial: FrozenTrial) -> None:
        self.reported.add(trial.number)
        if trial.state in FINISHED:
            self.finished.add(trial.number)
            start, end = trial.datetime_start, trial.datetime_complete
            if start is not None and end is not None:
                self.durations[trial.number] = (end - start).total_seconds()
        self.bars.update(self.study_task, completed=len(self.finished))

    def _ended(self, study: optuna.Study, trial: FrozenTrial, worker: str | None) -> None:
        """Count an ended trial and print its line (`worker`: another worker ran it)."""
        if trial.number in self.reported:
            return
        self._count(trial)
        first, params = trial_line(study, trial).split("\n", 1)
        if worker is not None:
            first += f"  [dim](worker {worker})[/dim]"
        if not self.live:
            first += f"  [{self.study_line()}]"
        self.print(f"{first}\n{params}")

    def study_eta(self) -> Eta | None:
        """When the search should end (search/eta.py), from what the display knows now."""
        now = self.clock()
        trial_s = typical_trial_s(list(self.durations.values()))
        running_left: list[float | None] = []
        running = self.running
        if running is not None:
            elapsed = now - running.started
            left = running.pace.left_s(now)
            if left is None and trial_s is not None:
                left = max(trial_s - elapsed, 0.0)
            if trial_s is None and left is not None:
                trial_s = elapsed + left  # the first trial: its own pace is all there is
            running_left.append(left)
        wall = self.wall()
        for start in self.others:
            if trial_s is None or start is None:
                running_left.append(None)
            else:
                running_left.append(max(trial_s - (wall - start).total_seconds(), 0.0))
        return search_eta(
            n_left=None if self.target is None else self.target - len(self.finished),
            trial_s=trial_s,
            running_left_s=running_left,
            workers=max(self.workers, len(running_left)),
            budget_left_s=None if self.budget is None else self.budget.search_left_s(),
        )

    def study_eta_text(self) -> str:
        if self.target is not None and len(self.finished) >= self.target:
            return "target reached"
        return eta_text(self.study_eta(), self.budget)

    def study_line(self) -> str:
        """`3/10 finished, ETA 2 m 10 s`: the study's count and ETA in one piece of a line."""
        target = "" if self.target is None else f"/{self.target}"
        return f"{len(self.finished)}{target} finished, {self.study_eta_text()}"

    def trial_eta_text(self) -> str:
        running = self.running
        if running is None:
            return ""
        if running.pace.done >= running.pace.epochs:
            return "finishing"  # its last epoch is done: latency, metrics, artifacts
        left = running.pace.left_s(self.clock())
        return "" if left is None else f"~{format_duration(left)} left"

    def _trial_times(self, running: _Running) -> str:
        elapsed = format_duration(self.clock() - running.started)
        left = self.trial_eta_text()
        return f"{elapsed}" + (f", {left}" if left else "")


def trial_line(study: optuna.Study, trial: FrozenTrial) -> str:
    """An ended trial: its state, metrics (or why it failed), the best so far; then its
    parameters on a second line."""
    state = trial_state(trial)
    record = TrialRecord.of(trial)
    if trial.state == TrialState.FAIL:
        detail = f"[red]{fail_reason(trial)}[/red]"
    else:
        loss = math.nan if record.val_loss is None else record.val_loss
        accuracy = math.nan if record.val_accuracy is None else record.val_accuracy
        epochs = "?" if record.epochs_run is None else record.epochs_run
        detail = (
            f"val loss {loss:.4f} acc {accuracy:.3f} "
            f"({epochs} ep, {record.train_seconds or 0:.1f}s)"
        )
    best = ""
    if len(study.directions) == 1:  # the final model's ranking: a cut trial's best epoch counts
        ranked = ranked_trials(study)
        if ranked:
            best = f"  best #{ranked[0].number} {trial_value(ranked[0]):.4g}"
    style = STATE_STYLE[state]
    return (
        f"#{trial.number:<3} [{style}]{STATES[state]:<8}[/{style}] {detail}{best}\n"
        f"     [dim]{format_params(trial.params)}[/dim]"
    )


class FinalProgress:
    """The final step's display, fed `RetrainProgress` (final/retrain.py) by calling it: the
    retrain's epochs over all its runs with elapsed time and ETA, the batches of a long epoch,
    then the test and the export. Its bars start with the first report (a search's bars must
    be gone by then: a terminal shows one live display at a time)."""

    def __init__(self, console: Console, *, clock: Clock = time.monotonic) -> None:
        self.console, self.clock = console, clock
        self.live = is_live(console)
        self.bars = _Bars(console, clock)
        self.task = self.bars.row("epochs", self.eta_text)
        self.batch_task = self.bars.row("batches")
        self.pace: RunPace | None = None
        self.started = False
        self.last_line = -math.inf
        self.stage = ""
        self.batch_epoch = -1  # the epoch (epochs done before it) the batch bar shows

    def __enter__(self) -> FinalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.bars.stop()

    def renderable(self) -> RenderableType:
        return self.bars.get_renderable()

    def print(self, line: str) -> None:
        self.console.print(line, soft_wrap=not self.live)

    def __call__(self, where: RetrainProgress) -> None:
        if where.stage == "train":
            self._train(where)
        else:
            self._stage(where.stage)
        if not self.started:  # the bars start once they have something to show
            self.started = True
            self.bars.start()

    def _train(self, where: RetrainProgress) -> None:
        now = self.clock()
        if self.pace is None:
            self.pace = RunPace(where.total, now)
        pace = self.pace
        run = f"retraining trial #{where.trial} (seed {where.seed})"
        if where.epoch_s is not None:
            pace.epoch_done(where.epoch_s, now)
            self.bars.update(self.batch_task, visible=False)
        elif where.n_steps:
            pace.steps_done(where.step, where.n_steps, now)
            if now - pace.epoch_started >= LONG_EPOCH_S:
                if self.batch_epoch != pace.done:  # its elapsed time is the epoch's
                    self.batch_epoch = pace.done
                    epoch = f"  epoch {where.epoch + 1}/{where.epochs}"
                    self.bars.reset(self.batch_task, total=where.n_steps, description=epoch)
                self.bars.update(
                    self.batch_task, completed=where.step, total=where.n_steps, visible=True
                )
        else:  # a run starts
            pace.restart(now)
            self.print(f"final: {run}, {where.epochs} epochs")
            self.last_line = now
        self.bars.update(
            self.task,
            completed=where.done,
            total=where.total,
            description=f"final: {run}",
            visible=True,
        )
        if not self.live and now - self.last_line >= PIPED_EVERY_S:
            self.last_line = now
            batch = f", batch {where.step}/{where.n_steps}" if where.n_steps else ""
            self.print(
                f"final: {where.done}/{where.total} epochs{batch}; {self.eta_text() or 'ETA ?'}"
            )

    def _stage(self, stage: str) -> None:
        if stage == self.stage:
            return
        self.stage = stage
        what = {
            "test": "testing the final model on the test split",
            "export": "writing the export: formats, parity checks, report",
        }[stage]
        self.bars.update(self.batch_task, visible=False)
        self.bars.reset(self.task, total=None, description=f"final: {what}", unit="", visible=True)
        self.pace = None
        if not self.live:  # in a terminal the bar says it
            self.print(f"final: {what}")

    def eta_text(self) -> str:
        if self.pace is None:
            return ""
        left = self.pace.left_s(self.clock())
        return "" if left is None else f"ETA {format_duration(left)}"


def search_with_display(
    console: Console,
    spec: ResolvedSpec,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    force: bool = False,
    jobs: int | None = None,
) -> SearchResult:
    """`run_search` as `autoclf search` shows it on `console`: the study and its aim, the
    spec's warnings, the live display, then the study's counts and best trial. The Python API's
    `search(progress=True)` shows the same."""
    target = n_trials or spec.study.trial_cap
    goals = ", ".join(
        f"{name} ({direction})"
        for name, direction in zip(spec.study.objectives, spec.study.directions, strict=True)
    )
    aim = f"target {target} finished trials" if target else "as many trials as time allows"
    console.print(f"study {spec.study.name!r} in {spec.study.storage}: {aim}, objective {goals}")
    print_warnings(console, search_warnings(spec, target))
    with SearchProgress(console, target=target) as progress:
        from automl_clf.report.trial import record_trial_report

        result = run_search(
            spec,
            n_trials=n_trials,
            timeout=timeout,
            observer=progress,
            force=force,
            jobs=jobs,
            reporter=record_trial_report,
        )
    study = result.study
    if result.space_changed:
        console.print("[yellow]the search space changed[/yellow]; resumed anyway (--force)")
    if result.grid_size is not None and result.target != target:
        console.print(f"the grid has {result.grid_size} configurations: target lowered to it")
    if result.n_ran == 0 and result.complete:
        console.print(
            f"study already holds {result.n_finished} finished trials (target "
            f"{result.target}); raise --n-trials to extend it"
        )
    console.print(f"study {study.study_name!r}: {study_counts(study)}")
    print_warnings(console, random_start_warnings(spec, result.n_finished, result.target))
    if not result.complete and result.target is not None:
        why = "timeout" if result.timed_out else "stopped"
        console.print(
            f"[yellow]{result.n_finished}/{result.target} finished[/yellow] ({why}); rerun to "
            "continue"
        )
    console.print(best_line(study, spec.study.objectives))
    return result


def job_with_display(
    console: Console,
    spec: ResolvedSpec,
    out: Path,
    *,
    n_trials: int | None = None,
    force: bool = False,
    jobs: int | None = None,
    started: float | None = None,
) -> JobResult:
    """`run_job` as `autoclf run` shows it on `console`: the study, budget and export folder,
    the spec's warnings, the search's live display, the final step's, then the test metrics,
    the formats, the budget's use and where the export is. The Python API's
    `run(progress=True)` shows the same."""
    total = spec.study.budget
    aim = f"budget {total:g} s in all" if total is not None else "no time budget"
    console.print(f"study {spec.study.name!r} in {spec.study.storage}: {aim}, export to {out}")
    target = n_trials or spec.study.trial_cap
    print_warnings(console, search_warnings(spec, target))
    searching = SearchProgress(console, target=target)

    fitted = [spec]  # the spec as study.fit_budget fitted it (the plan says what changed)

    def planned(plan: BudgetPlan) -> None:
        if plan.spec is not None:
            fitted[0] = plan.spec
        for line in budget_plan_lines(plan, spec.study.sampler.kind):
            console.print(line)

    def final_started(retrains: int, estimate: Any) -> None:
        searching.close()  # one live display at a time: the final step's comes next
        console.print(final_plan_line(fitted[0], retrains, estimate))

    with searching, FinalProgress(console) as finishing:
        job = run_job(
            spec,
            out,
            n_trials=n_trials,
            observer=searching,
            planned=planned,
            final_started=final_started,
            on_final=finishing,
            on_audit=lambda fold: console.print(fold_line(fold)),
            force=force,
            jobs=jobs,
            started=started,
        )
    searched = job.search
    print_warnings(console, random_start_warnings(fitted[0], searched.n_finished, searched.target))
    console.print(final_summary(job.final))
    console.print(formats_summary(job.export))
    if job.budget is not None:
        console.print(budget_table(job.budget))
    if job.audit is not None:
        console.print(
            f"label audit: {len(job.audit.issues)} of {job.audit.n_audited} audited images look "
            f"mislabelled: {job.export.report / 'label_issues.csv'}"
        )
    console.print(
        f"exported to {job.export.folder}\nreport: {job.export.report / 'index.html'} "
        f"(and report.md beside it)"
    )
    return job
