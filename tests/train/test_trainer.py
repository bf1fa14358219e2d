"""The trainer on tiny real data: optimizers, schedules, early stopping, checkpoints and resume,
determinism, failure on NaN, class weights, and flat memory across many trials."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automl_clf.data import load_dataset
from automl_clf.errors import TrialFailed
from automl_clf.spec import FixedParams, parse_spec, resolve
from automl_clf.spec.config import TrialConfig
from automl_clf.train import train_config
from automl_clf.train.trainer import class_weights
from tests.conftest import tiny_spec

FIXED = {
    "model.dropout": 0.1,
    "model.cnn.filters": "[8]",
    "train.lr": 0.01,
    "augment.policy": "light",
}


def config_of(root: Path, tmp_path: Path, **sections: dict[str, Any]) -> tuple[TrialConfig, Any]:
    spec = parse_spec(tiny_spec(root, tmp_path, **sections), base_dir=tmp_path)
    return resolve(spec, FixedParams(FIXED, strict=False)), load_dataset(spec.data)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle", "step", "plateau"])
def test_every_optimizer_and_schedule_trains(
    digits_root: Path, tmp_path: Path, optimizer: str, schedule: str
) -> None:
    config, dataset = config_of(
        digits_root,
        tmp_path,
        train={
            "optimizer": optimizer,
            "schedule": schedule,
            "step_size": 1,
            "gamma": 0.5,
            "plateau_patience": 1,
            "nesterov": True,
            "epochs": 3,
        },
    )
    trained = train_config(config, dataset)
    history = trained.fit.history
    assert len(history) == 3
    assert all(math.isfinite(e.train_loss) for e in history)
    lrs = [e.lr for e in history]
    if schedule == "constant":
        assert lrs == [pytest.approx(0.01)] * 3
    if schedule == "cosine":
        assert lrs[0] > lrs[1] > lrs[2] > 0
    if schedule == "step":  # × 0.5 every epoch
        assert lrs == [pytest.approx(0.01), pytest.approx(0.005), pytest.approx(0.0025)]
    if schedule == "onecycle":
        assert max(lrs) > lrs[0]  # warms up from a fraction of lr


def test_warmup_ramps_the_learning_rate_up(digits_root: Path, tmp_path: Path) -> None:
    config, dataset = config_of(
        digits_root, tmp_path, train={"schedule": "constant", "warmup_epochs": 2, "epochs": 3}
    )
    lrs = [e.lr for e in train_config(config, dataset).fit.history]
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(0.01)


def test_early_stopping_keeps_the_best_epoch(digits_root: Path, tmp_path: Path) -> None:
    from automl_clf.data.preprocess import Decoding
    from automl_clf.train import evaluate

    config, dataset = config_of(
        digits_root, tmp_path, train={"epochs": 30, "early_stopping_patience": 2, "lr": 0.3}
    )
    config = config.model_copy(update={"train": config.train.model_copy(update={"lr": 0.3})})
    fit = train_config(config, dataset).fit
    losses = [e.val.loss for e in fit.history if e.val is not None]
    assert fit.best_epoch == int(np.argmin(losses)) + 1
    assert fit.epochs_run <= fit.best_epoch + 2  # stopped after `patience` epochs
    val = dataset.arrays(Decoding.of(config.data))["val"]
    returned = evaluate(fit.model, val, train_config_preprocessing(config, dataset), "cpu")
    assert returned.loss == pytest.approx(min(losses), rel=1e-5)  # the best weights came back


def train_config_preprocessing(config: TrialConfig, dataset: Any) -> Any:
    from automl_clf.data.dataset import pixels_for_stats
    from automl_clf.data.preprocess import Decoding, build_preprocessing, mean_std
    from automl_clf.models.factory import backbone_mean_std

    train = dataset.arrays(Decoding.of(config.data))["train"]
    stats = mean_std(pixels_for_stats(train.pixels))
    return build_preprocessing(config.data, backbone_mean_std("cnn"), stats)


def test_same_config_and_seed_give_the_same_run(digits_root: Path, tmp_path: Path) -> None:
    config, dataset = config_of(
        digits_root, tmp_path, augment={"mixup": 0.5}, model={"dropout": 0.3}
    )
    first, second = train_config(config, dataset).fit, train_config(config, dataset).fit
    assert [e.train_loss for e in first.history] == [e.train_loss for e in second.history]
    assert [e.val.loss for e in first.history] == [e.val.loss for e in second.history]  # type: ignore[union-attr]
    other = config.model_copy(update={"train": config.train.model_copy(update={"seed": 1})})
    third = train_config(other, dataset).fit
    assert [e.train_loss for e in third.history] != [e.train_loss for e in first.history]


def test_a_resumed_run_continues_exactly_where_it_stopped(
    digits_root: Path, tmp_path: Path
) -> None:
    config, dataset = config_of(digits_root, tmp_path, train={"epochs": 4, "schedule": "cosine"})
    whole = train_config(config, dataset).fit
    folder = tmp_path / "checkpoint"
    cut = train_config(config, dataset, checkpoint_dir=folder, max_epochs=2).fit  # "killed"
    assert cut.epochs_run == 2 and (folder / "last.pt").is_file()
    seen: list[int] = []
    resumed = train_config(
        config, dataset, checkpoint_dir=folder, on_epoch=lambda e: seen.append(e.epoch)
    ).fit
    assert resumed.resumed_from_epoch == 2
    assert seen == [1, 2, 3, 4]  # epochs 1-2 are reported from the checkpoint, not re-run
    assert [e.train_loss for e in resumed.history] == [e.train_loss for e in whole.history]
    accuracies = [e.train_accuracy for e in resumed.history]  # kept in the checkpoint too
    assert accuracies == [e.train_accuracy for e in whole.history]
    assert all(a is not None and 0.0 <= a <= 1.0 for a in accuracies)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_diverging_loss_fails_with_its_reason(digits_root: Path, tmp_path: Path) -> None:
    config, dataset = config_of(digits_root, tmp_path, train={"optimizer": "sgd"})
    huge = config.model_copy(update={"train": config.train.model_copy(update={"lr": 1e12})})
    with pytest.raises(TrialFailed, match=r"loss became (nan|inf).*lower train\.lr"):
        train_config(huge, dataset)


def test_class_weights() -> None:
    labels = np.array([0] * 80 + [1] * 20)
    balanced = class_weights(labels, 2, "balanced")
    assert balanced is not None
    assert balanced.tolist() == pytest.approx([100 / (2 * 80), 100 / (2 * 20)])
    effective = class_weights(labels, 2, "effective_number")
    assert effective is not None
    raw = [(1 - 0.999) / (1 - 0.999**n) for n in (80, 20)]
    assert effective.tolist() == pytest.approx([2 * r / sum(raw) for r in raw])
    assert effective[1] > effective[0]
    assert class_weights(labels, 2, "none") is None


@pytest.mark.slow
def test_memory_stays_flat_across_many_trials(digits_root: Path, tmp_path: Path) -> None:
    import gc

    config, dataset = config_of(digits_root, tmp_path, train={"epochs": 2})

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

    for _ in range(3):  # warm-up: allocator pools, lazy imports, the decode cache
        train_config(config, dataset)
    gc.collect()
    start = rss_mb()
    for _ in range(25):
        train_config(config, dataset)
    gc.collect()
    assert rss_mb() - start < 40, f"RSS grew from {start:.0f} MB to {rss_mb():.0f} MB"


class StepDeadline:
    """A deadline that passes after `steps` training steps, or refuses any further epoch once
    `epochs_fit` epochs ran: a budget on a counter instead of a clock, so the test is exact."""

    def __init__(self, steps: int = 10**9, epochs_fit: int = 10**9) -> None:
        self.steps, self.epochs_fit, self.asked = steps, epochs_fit, 0

    def fits(self, seconds: float) -> bool:
        self.asked += 1
        return self.asked < self.epochs_fit

    def passed(self) -> bool:
        self.steps -= 1
        return self.steps < 0


def test_a_deadline_mid_epoch_keeps_the_best_finished_epoch(
    digits_root: Path, tmp_path: Path
) -> None:
    config, dataset = config_of(digits_root, tmp_path, train={"epochs": 5})
    steps_per_epoch = math.ceil(54 / 16)  # 60% of 90 images train, 16 a batch
    trained = train_config(config, dataset, deadline=StepDeadline(steps=2 * steps_per_epoch + 1))
    fit = trained.fit
    assert fit.stopped_by == "deadline"
    assert fit.epochs_run == 2  # the third epoch was abandoned, not recorded
    assert 1 <= fit.best_epoch <= 2 and fit.best.val is not None

    full = train_config(config, dataset, max_epochs=2).fit  # the same two epochs, uncut
    assert [e.val.loss for e in fit.history if e.val] == pytest.approx(
        [e.val.loss for e in full.history if e.val]
    )
    assert fit.best_epoch == full.best_epoch
    mine, theirs = fit.model.state_dict(), full.model.state_dict()
    for name in theirs:
        torch.testing.assert_close(mine[name], theirs[name])


def test_an_epoch_that_would_end_past_the_deadline_is_not_started(
    digits_root: Path, tmp_path: Path
) -> None:
    config, dataset = config_of(digits_root, tmp_path, train={"epochs": 5})
    deadline = StepDeadline(epochs_fit=3)  # the third question is answered "no"
    fit = train_config(config, dataset, deadline=deadline).fit
    assert (fit.stopped_by, fit.epochs_run) == ("deadline", 3)
    assert train_config(config, dataset).fit.stopped_by == "epochs"


def test_a_deadline_before_the_first_epoch_ends_leaves_nothing_to_keep(
    digits_root: Path, tmp_path: Path
) -> None:
    from automl_clf.errors import DeadlineReached

    config, dataset = config_of(digits_root, tmp_path, train={"epochs": 5})
    with pytest.raises(DeadlineReached):
        train_config(config, dataset, deadline=StepDeadline(steps=1))


class NaNAt(torch.nn.Module):
    """A linear classifier whose training loss turns NaN at one step (counted across epochs,
    1-based) and, its weights then NaN too, at every later one."""

    def __init__(self, n_in: int, n_classes: int, bad_step: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(n_in, n_classes)
        self.bad_step, self.steps = bad_step, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1))
        if self.training:
            self.steps += 1
            if self.steps == self.bad_step:
                return logits * float("nan")
        return logits


def fit_nan_at(root: Path, tmp_path: Path, *, epoch: int, step: int, deadline: Any = None) -> Any:
    """`fit` on the tiny digits with a model whose loss turns NaN at (epoch, step)."""
    from automl_clf.data.batches import TrainBatches
    from automl_clf.data.preprocess import Decoding
    from automl_clf.train import fit

    config, dataset = config_of(root, tmp_path, train={"epochs": 3}, augment={"policy": "none"})
    splits = dataset.arrays(Decoding.of(config.data))
    pre = train_config_preprocessing(config, dataset)
    batches = TrainBatches(splits["train"], 16, pre, [], 0, n_classes=dataset.n_classes)
    bad_step = (epoch - 1) * len(batches) + step
    model = NaNAt(8 * 8, dataset.n_classes, bad_step)
    return fit(model, batches, splits["val"], config.train, pre, deadline=deadline)


def test_a_non_finite_loss_names_the_epoch_and_step_it_first_appeared(
    digits_root: Path, tmp_path: Path
) -> None:
    # Steps leave their losses on the device; the epoch's end reads them, and the step with them.
    # The lr is that step's: cosine over 3 epochs of 4 steps is at half of 0.01 after 6 steps.
    with pytest.raises(TrialFailed, match=r"loss became nan at epoch 2, step 3 \(lr 0\.005\)"):
        fit_nan_at(digits_root, tmp_path, epoch=2, step=3)


def test_a_non_finite_loss_before_the_deadline_still_fails_the_trial(
    digits_root: Path, tmp_path: Path
) -> None:
    # 4 steps an epoch: the deadline passes before epoch 2's fourth step, after its NaN
    with pytest.raises(TrialFailed, match=r"at epoch 2, step 2"):
        fit_nan_at(digits_root, tmp_path, epoch=2, step=2, deadline=StepDeadline(steps=7))


def test_evaluation_on_the_cpu_is_float32_whatever_mixed_precision_says(
    digits_root: Path, tmp_path: Path
) -> None:
    from automl_clf.data.preprocess import Decoding
    from automl_clf.train import evaluate

    config, dataset = config_of(digits_root, tmp_path, train={"epochs": 1})
    model = train_config(config, dataset).fit.model
    val = dataset.arrays(Decoding.of(config.data))["val"]
    pre = train_config_preprocessing(config, dataset)
    mixed = evaluate(model, val, pre, "cpu", mixed_precision=True)
    plain = evaluate(model, val, pre, "cpu")
    assert mixed.loss == plain.loss
    assert np.array_equal(mixed.probabilities, plain.probabilities)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_training_step_never_waits_for_the_cuda_device(
    digits_root: Path, tmp_path: Path
) -> None:
    from automl_clf.data.batches import TrainBatches
    from automl_clf.data.preprocess import Decoding
    from automl_clf.models.factory import build_model
    from automl_clf.train.mix import BatchMixer
    from automl_clf.train.trainer import _Loop

    config, dataset = config_of(
        digits_root,
        tmp_path,
        train={"device": "cuda", "grad_clip": 1.0, "label_smoothing": 0.1},
        augment={"mixup": 0.5, "cutmix": 0.5},
    )
    train = dataset.arrays(Decoding.of(config.data))["train"]
    pre = train_config_preprocessing(config, dataset)
    batches = TrainBatches(train, 16, pre, [], 0, n_classes=dataset.n_classes)
    model = build_model(config.model, n_classes=dataset.n_classes, in_chans=1, image_size=8)
    weights = class_weights(train.labels, dataset.n_classes, "balanced")
    loop = _Loop.build(
        model, batches, None, config.train, pre, None, weights, BatchMixer(config.augment), None
    )
    if loop.precision.dtype == torch.float16:
        pytest.skip("float16 loss scaling reads the device at each step (GradScaler.step)")
    on_device = [(x.cuda(), y.cuda()) for x, y in batches.epoch(1)]
    loop.step(*on_device[0])  # lazy initialisation (cuDNN, optimizer state) may wait: once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in on_device[1:]:
            loop.step(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
