"""The report's figures on real class names: they size themselves to 2, 4 long-named and 100
classes, and no text of theirs overlaps another or leaves the canvas; learning curves; the
augmented-batch preview; parameter importances only from enough complete trials."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from automl_clf.data import load_dataset
from automl_clf.data.preprocess import Decoding, Preprocessing
from automl_clf.report.content import AugmentedPreview, LearningCurve
from automl_clf.report.plots import (
    LABEL_WIDTH,
    draw_accuracy_coverage,
    draw_augmented,
    draw_confusion_matrix,
    draw_history,
    draw_image_grid,
    draw_importances,
    draw_learning_curves,
    draw_reliability,
    matrix_layout,
    shorten,
    text_size,
    wrap,
)
from automl_clf.report.preview import augmented_preview
from automl_clf.report.search import MIN_IMPORTANCE_TRIALS, summarise_search
from automl_clf.report.write import write_report
from automl_clf.search.record import TrialRecord
from automl_clf.spec import FixedParams, parse_spec, resolve
from automl_clf.train.metrics import summarise
from tests.conftest import Exported, tiny_spec
from tests.report.test_write import HOSTILE_CLASSES, hostile_content
from tests.report_helpers import LONG_NAMES, synthetic_class_names, text_problems

CLASS_SETS = {
    "2 classes": ["three", "eight"],
    "4 long names": list(LONG_NAMES.values()),
    "10 digits": [str(d) for d in range(10)],
    "30 classes": synthetic_class_names(30),
    "100 classes": synthetic_class_names(100),
    "markup": HOSTILE_CLASSES,
}
# constrained layout warns (and gives up) when the text leaves no room for the axes
no_layout_warnings = pytest.mark.filterwarnings("error::UserWarning")


def confusions(n: int, seed: int = 0) -> np.ndarray:
    """A confusion matrix with a strong diagonal and scattered mistakes (three-digit counts)."""
    rng = np.random.default_rng(seed)
    matrix = rng.integers(0, 4, size=(n, n)) * (rng.random((n, n)) < 0.3)
    return matrix + np.diag(rng.integers(90, 250, size=n))


@no_layout_warnings
@pytest.mark.parametrize("normalized", [False, True], ids=["counts", "normalised"])
@pytest.mark.parametrize("name", CLASS_SETS)
def test_a_confusion_matrix_leaves_its_texts_apart_and_inside(name: str, normalized: bool) -> None:
    classes = CLASS_SETS[name]
    fig = draw_confusion_matrix(confusions(len(classes)), classes, normalized=normalized)
    assert text_problems(fig) == []


def test_the_check_finds_overlapping_and_clipped_text() -> None:
    """The check above is not vacuous: it sees a text on a text, and one past the edge."""
    fig = draw_confusion_matrix(confusions(2), ["a", "b"])
    fig.set_layout_engine("none")  # keep the layout: it would make room for the new texts
    ax = fig.axes[0]
    ax.text(0, 0, "on top of the cell's number", ha="center", va="center")
    ax.text(1.5, 0.5, "past the right edge of the figure", transform=fig.transFigure)
    problems = text_problems(fig)
    assert any("overlaps" in p and "on top of" in p for p in problems)
    assert any("past the right edge" in p and "leaves the canvas" in p for p in problems)


def test_a_rotated_label_is_checked_as_the_rectangle_it_covers() -> None:
    """At 45 degrees neighbours' upright boxes overlap while the names do not touch."""
    classes = [f"a_rather_long_class_name_{i}" for i in range(12)]
    layout = matrix_layout(classes, [])
    assert layout.rotation == 45
    assert text_problems(draw_confusion_matrix(confusions(12), classes)) == []


def test_few_short_names_lie_flat_with_a_number_in_each_cell() -> None:
    layout = matrix_layout(["three", "eight"], ["250", "0.99"])
    assert layout.rotation == 0 and layout.every == 1 and layout.cell_font is not None


def test_a_hundred_classes_are_all_named_upright_without_cell_numbers() -> None:
    layout = matrix_layout(synthetic_class_names(100), [])
    assert layout.cell_font is None  # 10,000 numbers would be noise
    assert layout.every == 1 and layout.rotation == 90
    assert layout.tick_font < 9.0


def test_names_too_long_for_an_axis_are_shortened_in_the_middle() -> None:
    layout = matrix_layout([*LONG_NAMES.values(), "x" * 80, "x" * 79 + "y"], [])
    assert all(text_size(label, layout.tick_font)[0] <= LABEL_WIDTH for label in layout.labels)
    assert layout.labels[-2] != layout.labels[-1]  # their ends tell them apart
    assert layout.labels[-1].endswith("y") and "…" in layout.labels[-1]


def test_a_caption_wraps_to_its_width_and_says_when_it_was_cut() -> None:
    text = "true astronaut_eileen_collins_in_orbit → hubble_deep_field_galaxies\n(0.93)"
    fitted = wrap(text, 1.5, 7.0, max_lines=3)
    lines = fitted.splitlines()
    assert len(lines) == 3 and lines[-1].endswith("…")
    assert all(text_size(line, 7.0)[0] <= 1.5 for line in lines)
    assert wrap("short", 1.5, 7.0, max_lines=3) == "short"
    assert shorten("short", 1.5, 7.0) == "short"


def curves() -> list[LearningCurve]:
    """A trial's 12 epochs (an old checkpoint's first epoch without train accuracy), then its
    retrain on train+val: no validation."""
    losses = list(np.linspace(2.0, 0.3, 12))
    accuracies: list[float | None] = [None, *np.linspace(0.3, 0.9, 11)]
    trial = LearningCurve("trial #3 (search)", [*losses], accuracies, [*losses], [0.5] * 12, 9)
    retrain = LearningCurve("final retrain (train+val, seed 0)", losses[:9], [0.5] * 9, [], [])
    return [trial, retrain]


def preview(n: int = 16) -> AugmentedPreview:
    rng = np.random.default_rng(0)
    names = list(LONG_NAMES.values())
    return AugmentedPreview(
        originals=rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
        augmented=rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
        classes=[names[i % 4] for i in range(n)],
        mixes=[f"0.73 {names[i % 4]} + 0.27 {names[(i + 1) % 4]}" for i in range(n)],
        description="the first images",
    )


def searched(n_complete: int, name: str = "model.cnn.filters") -> optuna.Study:
    """A study of `n_complete` complete trials over two parameters (the first with a long
    name), one cut at the deadline, one pruned and one failed trial."""
    study = optuna.create_study()
    rng = np.random.default_rng(0)
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    width = optuna.distributions.IntDistribution(4, 64)
    for _ in range(n_complete):
        params = {"train.lr": float(10 ** rng.uniform(-4, -1)), name: int(rng.integers(4, 64))}
        value = abs(np.log10(params["train.lr"]) + 2.5) + rng.normal(0, 0.05)
        trial = optuna.trial.create_trial(
            params=params, distributions={"train.lr": lr, name: width}, value=value
        )
        study.add_trial(trial)
    cut = {"stopped_by": "deadline", "objective_value": 0.8}  # as the objective writes it
    for attrs in (cut, {}):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED,
                intermediate_values={1: 0.8, 2: 0.9} if attrs else {1: 1.0},
                user_attrs=attrs,
            )
        )
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    return study


LONG_PARAM = "augment.policy_of_a_custom_albumentations_list_with_a_long_name"
OTHER_FIGURES: dict[str, Any] = {
    "learning curves": lambda: draw_learning_curves(curves()),
    "one learning curve": lambda: draw_learning_curves(curves()[:1]),
    "augmented images": lambda: draw_augmented(preview()),
    "5 augmented images": lambda: draw_augmented(preview(5)),
    "importances": lambda: draw_importances({LONG_PARAM: 0.7, "train.lr": 0.3}, 25),
    "history": lambda: draw_history(summarise_search(searched(6))),
    "reliability": lambda: draw_reliability(hostile_content().metrics["calibration"], 0.0312),
    "reliability before": lambda: draw_reliability(
        hostile_content().metrics["calibration"], 0.2141, title="Before temperature scaling"
    ),
    "accuracy coverage": lambda: draw_accuracy_coverage(
        list(np.linspace(0.01, 1.0, 100)), list(np.linspace(1.0, 0.8, 100)), 0.99, (0.42, 0.991)
    ),
    "accuracy coverage, target missed": lambda: draw_accuracy_coverage(
        [0.5, 1.0], [0.6, 0.55], 0.99, None
    ),
    "mistakes": lambda: draw_image_grid(
        [np.zeros((8, 8), np.uint8)] * 16,
        [f"true {LONG_NAMES[0]} → {LONG_NAMES[9]}\n(0.93)"] * 16,
        title="Most confident mistakes (test split)",
    ),
}


@no_layout_warnings
@pytest.mark.parametrize("name", OTHER_FIGURES)
def test_every_other_figure_leaves_its_texts_apart_and_inside(name: str) -> None:
    assert text_problems(OTHER_FIGURES[name]()) == []


def test_importances_need_enough_complete_trials() -> None:
    few = summarise_search(searched(MIN_IMPORTANCE_TRIALS - 1))
    assert few.importances == {}
    assert f"not shown below {MIN_IMPORTANCE_TRIALS} complete trials" in few.importance_note
    assert f"this study has {MIN_IMPORTANCE_TRIALS - 1}" in few.importance_note
    enough = summarise_search(searched(MIN_IMPORTANCE_TRIALS))
    assert sum(enough.importances.values()) == pytest.approx(1.0)
    assert max(enough.importances, key=enough.importances.__getitem__) == "train.lr"


def preview_config(digits_root: Path, tmp_path: Path, **augment: Any) -> tuple[Any, Any]:
    spec = parse_spec(tiny_spec(digits_root, tmp_path, augment=augment), base_dir=tmp_path)
    fixed = {"model.dropout": 0.1, "model.cnn.filters": "[8]", "train.lr": 0.01}
    return resolve(spec, FixedParams(fixed, strict=False)), load_dataset(spec.data)


def normalisation(config: Any) -> Preprocessing:
    """Any mean and std: the preview must undo exactly the normalisation it is given."""
    return Preprocessing(decoding=Decoding.of(config.data), mean=(0.3,), std=(0.2,))


def test_the_preview_shows_the_images_the_training_augmented(
    digits_root: Path, tmp_path: Path
) -> None:
    config, dataset = preview_config(
        digits_root, tmp_path, policy=[{"name": "HorizontalFlip", "p": 1.0}]
    )
    shown = augmented_preview(
        config, dataset, normalisation(config), train_on=("train",), seed=config.train.seed
    )
    assert shown is not None and shown.originals.shape == (16, 8, 8, 1)
    np.testing.assert_array_equal(shown.augmented, shown.originals[:, :, ::-1])  # exactly
    train = {image.tobytes() for image in dataset.arrays(Decoding.of(config.data))["train"].pixels}
    assert all(image.tobytes() in train for image in shown.originals)  # training images
    assert set(shown.classes) <= set(dataset.classes) and shown.mixes == ["augmented"] * 16
    assert "HorizontalFlip" in shown.description and "seed 0" in shown.description
    again = augmented_preview(
        config, dataset, normalisation(config), train_on=("train",), seed=config.train.seed
    )
    assert again is not None and np.array_equal(again.augmented, shown.augmented)  # seeded


def test_a_mixed_batch_is_captioned_with_both_classes_and_shares(
    digits_root: Path, tmp_path: Path
) -> None:
    config, dataset = preview_config(digits_root, tmp_path, policy="light", mixup=1.0)
    shown = augmented_preview(
        config, dataset, normalisation(config), train_on=("train", "val"), seed=1
    )
    assert shown is not None and "MixUp on 100% of batches" in shown.description
    shares = [caption.split() for caption in shown.mixes]
    assert all(float(s[0]) + float(s[3]) == pytest.approx(1.0, abs=0.011) for s in shares)
    assert "train+val" in shown.description


def test_training_without_augmentation_has_no_preview(digits_root: Path, tmp_path: Path) -> None:
    config, dataset = preview_config(digits_root, tmp_path, policy="none")
    assert (
        augmented_preview(config, dataset, normalisation(config), train_on=("train",), seed=0)
        is None
    )


def test_a_report_of_100_classes_lists_its_most_frequent_confusions(tmp_path: Path) -> None:
    classes = synthetic_class_names(100)
    labels = np.repeat(np.arange(100), 3)
    probabilities = np.full((300, 100), 0.001)
    probabilities[np.arange(300), labels] = 0.9
    probabilities[7, 42] = 0.95  # two images of class 2 taken for class 42
    probabilities[8, 42] = 0.95
    base = hostile_content()
    content = dataclasses.replace(
        base,
        classes=classes,
        data=dataclasses.replace(base.data, counts={"test": [3] * 100}),
        test=summarise(0.1, probabilities, labels),
        test_paths=[Path(f"/data/{classes[k]}/{i}.png") for i, k in enumerate(labels)],
        test_pixels=np.zeros((300, 8, 8, 1), dtype=np.uint8),
        curves=curves(),
        augmented=preview(),
    )
    figures = write_report(content, tmp_path)
    assert {"confusion", "curves", "augmented"} <= set(figures)
    markdown = (tmp_path / "report.md").read_text()
    assert "100 classes: the counts are in metrics.json" in markdown  # not a 100-column table
    assert "| 002\\_silver\\_birch | 042\\_oak | 2 | 66.7% |" in markdown
    page = (tmp_path / "index.html").read_text()
    assert "Most frequent confusions" in page and "full size: <code>confusion_matrix.png" in page


def test_the_export_reports_the_trial_and_retrain_learning_curves(exported: Exported) -> None:
    report = exported.folder / "report"
    assert (report / "learning_curves.png").is_file()
    manifest = json.loads((exported.folder / "model.json").read_text())
    study = optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{exported.spec.parent / 'tiny.db'}"
    )
    trial = next(t for t in study.trials if t.number == manifest["trial"])
    record = TrialRecord.of(trial)
    n = record.epochs_run
    assert n and len(record.train_loss_history or []) == n == len(record.val_loss_history or [])
    accuracies = record.train_accuracy_history or []
    assert len(accuracies) == n and all(a is not None and 0.0 <= a <= 1.0 for a in accuracies)
    assert record.val_loss_history[(record.best_epoch or 0) - 1] == record.val_loss  # type: ignore[index]
    markdown = (report / "report.md").read_text()
    assert f"trial #{trial.number} (search): {n} epoch(s)" in markdown
    assert "final retrain (train, seed" in markdown  # the fixture retrains on train, 2 seeds
