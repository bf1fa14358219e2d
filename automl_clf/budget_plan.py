"""What a time budget buys, told before the first trial, and a spec fitted to it
(`study.fit_budget`).

After the probe (a few real training steps of the first trial, train/session.py) the job knows
what an epoch costs here, now. From that and the final step's reserve it works out how many
complete trials the search can afford on its workers, and whether the sampler will get past its
random start-up. Five minutes for 128 px photos fit about four epochs per worker: a search that
cannot finish a handful of trials is a random guess, and its ensemble a lottery.

So with `study.fit_budget: auto` (the default) a new study whose budget buys fewer than
`MIN_TRIALS` complete trials gets a spec that fits, as AutoGluon's presets shrink what they
try under a short `time_limit`. Each candidate is planned whole (the final step's reserve
shrinks with it), and each step is taken only while the plan is still short:

1. backbones markedly slower than the fastest are dropped from `model.backbone`'s choices,
   slowest first (each choice is probed; the fastest always stays), but not the plain CNN
   beside from-scratch timm backbones: it learns from fewer epochs and smaller images;
2. `train.epochs` and `data.image_size` shrink in turn, whichever has kept more of what it was
   (a smaller image only while it makes an epoch at least a tenth cheaper: an epoch's cost is
   modelled as a fixed share plus the pixels' share, `_size_cost`), to no fewer than
   `MIN_EPOCHS` and no less than `MIN_SIZE` px — `TIMM_MIN_SIZE` while a timm backbone stays,
   as `autoclf init` sizes them; when that is still short, the plain CNN alone is fitted
   afresh. The size is never above `init`'s cap for the budget (128 px under 30 minutes), so
   that `init --time` and `run --time` agree. The fitted spec is probed again, and what it
   measured (the model's fixed share for this network, here, now) fits it once more from the
   spec as written, up or down; then its epochs are set from that measured pace: as many as
   still buy `MIN_TRIALS` (the pace of an epoch does not depend on how many);
3. TPE's random start-up (when the spec leaves it unset) is 5 under 30 minutes, as `init`
   writes it, and no more than half the trials;
4. `final.ensemble` is at most a quarter of the trials.

Every change is said, field by field, and stored with the study (`StudyRecord.budget_fit`):
a rerun resumes the same search space instead of fitting anew. `off` keeps the spec as written,
and an existing study keeps the space it was created with.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from automl_clf.data.dataset import Dataset
from automl_clf.search.budget import MARGIN, SLACK_S, Budget, DataSizes, estimate_export_s
from automl_clf.spec.load import apply_overrides
from automl_clf.spec.model import PLAIN_CNN, TIMM_MIN_SIZE
from automl_clf.spec.models import ResolvedSpec
from automl_clf.spec.resolve import resolve
from automl_clf.spec.space import Choice, FixedParams
from automl_clf.spec.warmstart import default_params

MIN_TRIALS = 8  # complete trials a search needs before its choice means much
MIN_EPOCHS = 4
MIN_STARTUP = 3  # random trials TPE starts from, at the least
SLOWER = 1.5  # a backbone this much slower than the fastest may be dropped
MIN_SIZE = 32  # pixels: below this, photos lose what tells classes apart
SHORT_BUDGET_S = 30 * 60  # `autoclf init`'s line between a short and a long budget
SHORT_CAP = 128  # … and its image-size cap under it
SHORT_STARTUP = 5  # … and TPE's random start-up under it
EPOCH_STEP = 0.8  # each fitting step keeps this share of the epochs …
SIZE_STEP = 0.875  # … or of the image side (about 0.77 of an epoch's pixels)
FIXED_SHARE = 0.3  # of an epoch's time that does not shrink with the image (`_size_cost`)
PROBE_SHARE = 0.01  # of the budget: timing one configuration's steps stops after this long
SIZE_SAVES = 0.9  # a smaller image is worth its loss only when an epoch costs this much less

Probe = Callable[[ResolvedSpec, dict[str, Any]], float]  # seconds per epoch of those params


@dataclass
class BudgetPlan:
    """What the budget buys (module docstring): the numbers behind the plan line."""

    budget_s: float
    search_s: float  # what the search can use, after the start and the final step's reserve
    workers: int
    epoch_s: float  # one epoch of the first trial, as probed
    epochs: int  # the most a trial trains
    startup: int | None  # the sampler's random start-up, when it has one
    changes: list[str] = field(default_factory=list)  # what fit_budget changed, field by field
    overrides: dict[str, Any] = field(default_factory=dict)  # the same, as `--set` would say
    refitted: bool = False  # the changes are this study's stored fit, reapplied
    spec: ResolvedSpec | None = None  # the spec the search runs: as fitted (or as written)
    paces: dict[str, float] = field(default_factory=dict)  # `spec`'s backbones, as probed
    # the first trial's epoch on all the threads, as the final step trains (the job probes it
    # for a new study): with `first_epoch_s` and what that trial measures beside the other
    # workers, a retrain's pace (final/plan.py)
    first_alone_epoch_s: float | None = None

    @property
    def trials(self) -> int:
        """About how many complete trials the search can afford on its workers."""
        trial_s = max(self.epoch_s * self.epochs, 1e-9)
        return int(self.workers * max(self.search_s, 0.0) / trial_s)

    @property
    def first_epoch_s(self) -> float | None:
        """One epoch of the first trial (the spec's defaults) on a trial's share of the
        threads, as probed."""
        if self.spec is None:
            return None
        first = default_params(self.spec).get("model.backbone", self.spec.model.backbone)
        return self.paces.get(str(first))

    @property
    def leaves_startup(self) -> bool | None:
        """Whether the sampler gets past its random start-up (None: it has none)."""
        return None if self.startup is None else self.trials > self.startup


def plan_budget(
    spec: ResolvedSpec,
    dataset: Dataset,
    sizes: DataSizes,
    budget: Budget,
    *,
    workers: int,
    probe: Probe,
    stored: dict[str, Any] | None,
    new_study: bool,
) -> tuple[ResolvedSpec, BudgetPlan]:
    """The spec to search under `budget` and its plan (module docstring).

    Args:
        probe: seconds per epoch of the spec with some params fixed (train/session.py's probe).
        stored: the fit an earlier run of this study made (`StudyRecord.budget_fit`), applied
            as it was; None when it made none.
        new_study: whether the study has no trials yet (only then is a new fit made).
    """
    if stored:
        spec = refit(spec, stored)
    paces = _paces(spec, probe)
    plan = _plan(spec, sizes, budget, workers, statistics.mean(paces.values()))
    plan.spec, plan.paces = spec, paces
    if stored:
        plan.overrides, plan.refitted = dict(stored), True
        plan.changes = [f"{key}: {value}" for key, value in stored.items()]
        return spec, plan
    if spec.study.fit_budget == "off" or not new_study or plan.trials >= MIN_TRIALS:
        return spec, plan
    fit = _choose(spec, sizes, budget, workers, paces)
    fitted, plan, measured = _fitted(spec, fit, sizes, budget, workers, paces, probe)
    if not plan.overrides:
        return fitted, plan
    # `_size_cost` guessed the fitted pace; what the fitted spec measured says how an epoch
    # scales here: once more from the spec as written, up or down (photos at 60 s: the plain
    # CNN at 32 px took 0.05 of its 128 px epoch, not the 0.34 guessed, and the first fit
    # bought 39 trials where 8 were asked for)
    share, calibrated = _calibrated(fit, spec.data.image_size, paces, measured)
    again = _choose(spec, sizes, budget, workers, calibrated, fixed_share=share)
    if (again.epochs, again.size, set(again.kept)) != (fit.epochs, fit.size, set(fit.kept)):
        fit, paces = again, calibrated
        fitted, plan, _ = _fitted(
            spec, fit, sizes, budget, workers, calibrated, probe, fixed_share=share
        )
    return _epochs_for_pace(spec, fit, plan, sizes, budget, workers, paces)


def _epochs_for_pace(
    spec: ResolvedSpec,
    fit: _Fit,
    plan: BudgetPlan,
    sizes: DataSizes,
    budget: Budget,
    workers: int,
    paces: dict[str, float],
) -> tuple[ResolvedSpec, BudgetPlan]:
    """The fitted spec with its epochs set from its own measured pace: as many as still buy
    `MIN_TRIALS` complete trials (at least `MIN_EPOCHS`, at most the spec's). An epoch's cost
    does not depend on how many there are, so no probe is needed. The size model's steps are
    coarse and a probe on a busy machine is noisy, both ways: photos at 180 s beside 4 busy
    loops were fitted to 5 epochs and the plan then bought 17 trials; photos at 60 s beside 2
    bought 4 trials of 9 epochs where 8 were asked for."""
    measured = plan.spec
    if measured is None:
        return spec, plan

    def trials(epochs: int) -> int:
        return _plan(measured, sizes, budget, workers, plan.epoch_s, epochs=epochs).trials

    epochs = fit.epochs
    while epochs > MIN_EPOCHS and trials(epochs) < MIN_TRIALS:
        epochs -= 1
    while epochs < spec.train.epochs and trials(epochs + 1) >= MIN_TRIALS:
        epochs += 1
    if epochs == fit.epochs:
        return measured, plan
    back = replace(fit, epochs=epochs)
    overrides, changes = _overrides(spec, back, trials(epochs), budget, paces)
    fitted = refit(spec, overrides)
    again = _plan(fitted, sizes, budget, workers, plan.epoch_s)
    again.overrides, again.changes, again.spec = overrides, changes, fitted
    again.paces = plan.paces  # an epoch's pace does not change with the epochs
    return fitted, again


def _calibrated(
    fit: _Fit, size0: int, paces: dict[str, float], measured: dict[str, float]
) -> tuple[float, dict[str, float]]:
    """The fixed share of an epoch (`_size_cost`) and the spec's paces at full size that
    explain what `fit` measured: two sizes give the share; one (only the epochs shrank) says
    the pace itself moved (load came or went)."""
    ratio = statistics.mean(measured[b] / paces[b] for b in fit.kept if b in measured)
    area = (fit.size / size0) ** 2
    share = FIXED_SHARE if area >= 1.0 else min(max((ratio - area) / (1.0 - area), 0.0), 1.0)
    scale = ratio / _size_cost(fit.size, size0, share)  # 1 unless the share was clipped
    return share, {b: pace * scale for b, pace in paces.items()}


def _fitted(
    spec: ResolvedSpec,
    fit: _Fit,
    sizes: DataSizes,
    budget: Budget,
    workers: int,
    paces: dict[str, float],
    probe: Probe,
    *,
    fixed_share: float = FIXED_SHARE,
) -> tuple[ResolvedSpec, BudgetPlan, dict[str, float]]:
    """`spec` refitted to `fit`, its plan and its backbones' paces from its own probe."""
    size_cost = _size_cost(fit.size, spec.data.image_size, fixed_share)
    guess = statistics.mean(paces[b] for b in fit.kept) * size_cost
    trials = _plan(spec, sizes, budget, workers, guess, epochs=fit.epochs).trials
    overrides, changes = _overrides(spec, fit, trials, budget, paces)
    if not overrides:
        plan = _plan(spec, sizes, budget, workers, statistics.mean(paces.values()))
        plan.spec, plan.paces = spec, paces
        return spec, plan, paces
    fitted = refit(spec, overrides)
    measured = _paces(fitted, probe)
    plan = _plan(fitted, sizes, budget, workers, statistics.mean(measured.values()))
    plan.overrides, plan.changes, plan.spec, plan.paces = overrides, changes, fitted, measured
    return fitted, plan, measured


def refit(spec: ResolvedSpec, overrides: dict[str, Any]) -> ResolvedSpec:
    """`spec` with `overrides` (dotted paths, as `--set`) applied and validated again."""
    raw = spec.model_dump(mode="json", exclude_unset=True)
    return ResolvedSpec.model_validate(apply_overrides(raw, overrides))


def _plan(
    spec: ResolvedSpec,
    sizes: DataSizes,
    budget: Budget,
    workers: int,
    epoch_s: float,
    *,
    epochs: int | None = None,
) -> BudgetPlan:
    """The plan of `spec` at `epoch_s` seconds per epoch (and `epochs` instead of the spec's,
    for a candidate fit): the search's time is what the final step's reserve leaves."""
    epochs = epochs if epochs is not None else spec.train.epochs
    final = spec.final
    scale = (sizes.n_train + sizes.n_val) / max(sizes.n_train, 1)
    retrain_s = epochs * epoch_s * scale if final.retrain != "never" else 0.0
    export_s = estimate_export_s(None, members=final.ensemble, budget_s=budget.total_s)
    reserve = (retrain_s + export_s) * (1.0 + MARGIN) + SLACK_S
    sampler = spec.study.sampler
    setting = sampler.random_start
    return BudgetPlan(
        budget_s=budget.total_s,
        search_s=budget.left_s - reserve,
        workers=workers,
        epoch_s=epoch_s,
        epochs=epochs,
        startup=getattr(sampler, setting) if setting is not None else None,
    )


def _paces(spec: ResolvedSpec, probe: Probe) -> dict[str, float]:
    """Seconds per epoch of each backbone the spec searches (the first trial's alone when it
    searches one): the sampler draws each about as often at first."""
    backbone = spec.model.backbone
    if isinstance(backbone, Choice) and len(backbone.choices) > 1:
        return {str(b): probe(spec, {"model.backbone": b}) for b in backbone.choices}
    return {str(backbone): probe(spec, {})}


@dataclass(frozen=True)
class _Fit:
    """A candidate fit: the backbones kept (fastest first), the epochs and the image side."""

    kept: list[str]
    epochs: int
    size: int


def _choose(
    spec: ResolvedSpec,
    sizes: DataSizes,
    budget: Budget,
    workers: int,
    paces: dict[str, float],
    *,
    fixed_share: float = FIXED_SHARE,
) -> _Fit:
    """The fit that brings the plan to `MIN_TRIALS` complete trials with as little taken away
    as that needs (module docstring).

    Each candidate is planned whole: the final step's reserve shrinks with the epochs and the
    pace, so a spec whose full-size retrain alone would eat the search is not cut to the bone
    on every axis at once (as the first version of this did: 128 px photos went to 32 px, 4
    epochs and the fastest backbone, and tested at 0.41)."""
    epochs0, size0 = spec.train.epochs, spec.data.image_size
    start = _Fit(
        sorted(paces, key=lambda b: paces[b]), epochs0, min(size0, _size_cap(budget, size0))
    )
    fastest = paces[start.kept[0]]
    keep_cnn = PLAIN_CNN in paces and not spec.model.pretrained

    def short(fit: _Fit) -> bool:
        size_cost = _size_cost(fit.size, size0, fixed_share)
        epoch_s = statistics.mean(paces[b] for b in fit.kept) * size_cost
        plan = _plan(spec, sizes, budget, workers, epoch_s, epochs=fit.epochs)
        return plan.trials < MIN_TRIALS

    def shrunk(fit: _Fit) -> _Fit:
        """Epochs and image size in turn, whichever keeps more of what it was, while short;
        timm backbones no smaller than `TIMM_MIN_SIZE` (`autoclf init`'s rule)."""
        timm = any(b != PLAIN_CNN for b in fit.kept)
        least = min(TIMM_MIN_SIZE if timm else MIN_SIZE, fit.size)
        while short(fit):
            epochs = max(MIN_EPOCHS, min(fit.epochs - 1, math.floor(fit.epochs * EPOCH_STEP)))
            size = max(least, min(fit.size - 8, _multiple_of_8(fit.size * SIZE_STEP)))
            saves = _size_cost(size, size0, fixed_share) < SIZE_SAVES * _size_cost(
                fit.size, size0, fixed_share
            )
            epochs_left = fit.epochs / epochs0 if fit.epochs > MIN_EPOCHS else 0.0
            size_left = fit.size / size0 if fit.size > least and saves else 0.0
            if epochs_left == size_left == 0.0:
                break  # as small as a search should be: the plan line says how few trials fit
            if epochs_left >= size_left:
                fit = replace(fit, epochs=epochs)
            else:
                fit = replace(fit, size=size)
        return fit

    # 1. backbones markedly slower than the fastest go, slowest first, while short; not the
    #    plain CNN beside from-scratch timm backbones: it learns in fewer epochs and from
    #    smaller images than they do (photos at 60 s: mobilenetv3 from scratch at 32 px,
    #    kept for its pace, tested at chance)
    fit = start
    while short(fit):
        slower = [b for b in fit.kept[1:] if paces[b] > SLOWER * fastest]
        slower = [b for b in slower if not (keep_cnn and b == PLAIN_CNN)]
        if not slower:
            break
        fit = replace(fit, kept=[b for b in fit.kept if b != slower[-1]])
    # 2. epochs and image size shrink in turn
    fit = shrunk(fit)
    # 3. still short at the timm backbones' least size: the plain CNN alone, fitted afresh
    if short(fit) and PLAIN_CNN in fit.kept and len(fit.kept) > 1:
        fit = shrunk(replace(start, kept=[PLAIN_CNN]))
    return fit


def _size_cap(budget: Budget, size0: int) -> int:
    """`autoclf init`'s image-size cap for this budget (none above 30 minutes)."""
    return SHORT_CAP if budget.total_s < SHORT_BUDGET_S else size0


def _overrides(
    spec: ResolvedSpec, fit: _Fit, trials: int, budget: Budget, paces: dict[str, float]
) -> tuple[dict[str, Any], list[str]]:
    """`fit` as `--set` overrides of `spec`, and what each changes, in words; the sampler's
    random start-up and the ensemble follow the `trials` it buys."""
    overrides: dict[str, Any] = {}
    changes: list[str] = []
    backbone = spec.model.backbone
    if isinstance(backbone, Choice) and len(fit.kept) < len(backbone.choices):
        left = [b for b in backbone.choices if b not in fit.kept]
        kept = [b for b in backbone.choices if b in fit.kept]  # the spec's order
        overrides["model.backbone"] = {"choices": kept} if len(kept) > 1 else kept[0]
        changes.append(
            f"model.backbone: dropped {', '.join(left)} (an epoch takes "
            f"{', '.join(f'{paces[b]:.1f} s' for b in left)}; "
            f"{', '.join(kept)} {max(paces[b] for b in kept):.1f} s at most)"
        )
    if fit.epochs < spec.train.epochs:
        overrides["train.epochs"] = fit.epochs
        changes.append(f"train.epochs: {spec.train.epochs} → {fit.epochs}")
    size0 = spec.data.image_size
    if fit.size < size0:
        overrides["data.image_size"] = fit.size
        changes.append(f"data.image_size: {size0} → {fit.size} px (a step costs about its square)")

    sampler = spec.study.sampler
    setting = sampler.random_start
    if setting is not None and setting not in sampler.model_fields_set:
        start = getattr(sampler, setting)
        fit_start = min(start, SHORT_STARTUP if budget.total_s < SHORT_BUDGET_S else start)
        fit_start = max(MIN_STARTUP, min(fit_start, trials // 2))
        if fit_start < start:
            overrides["study.sampler"] = {"kind": sampler.kind, setting: fit_start}
            changes.append(f"study.sampler.{setting}: {start} → {fit_start}")

    members = spec.final.ensemble
    fit_members = max(1, min(members, trials // 4))
    if fit_members < members:
        overrides["final.ensemble"] = fit_members
        changes.append(f"final.ensemble: {members} → {fit_members}")
    return overrides, changes


def _size_cost(size: int, size0: int, fixed_share: float = FIXED_SHARE) -> float:
    """An epoch's cost at `size` px as a share of its cost at `size0`: the pixels' share, plus
    what does not shrink with them (batch set-up, the optimizer step, the head). The share
    differs by model (on 2 cores mobilenetv3_small_100 at 32 px took 0.48 of its 128 px epoch,
    the plain CNN 0.05): `FIXED_SHARE` is the guess until the fitted spec measures its own."""
    return fixed_share + (1.0 - fixed_share) * (size / size0) ** 2


def _multiple_of_8(pixels: float) -> int:
    return max(8, int(pixels) // 8 * 8)


def probe_with(dataset: Dataset, epoch_seconds: Callable[..., float]) -> Probe:
    """A `Probe` over `dataset` from train/session.py's `probe_epoch_seconds`: the spec's first
    trial (its defaults) with `fixed` params replacing some of them."""

    def probe(spec: ResolvedSpec, fixed: dict[str, Any]) -> float:
        params = {**default_params(spec), **fixed}
        return float(epoch_seconds(resolve(spec, FixedParams(params, strict=False)), dataset))

    return probe
