"""Training throughput of autoclf's trainer against a bare PyTorch loop, in one process.

Two comparisons, each on the same model architecture, data, batch size and optimizer:

- trainer overhead: `fit` without augmentation vs a bare loop over preloaded, normalised
  tensors (target: ratio >= 0.95);
- full data pipeline: `fit` with the `light` augmentation policy (decoded uint8 pixels →
  [0, 1] → batched affine augmentation → normalise, every batch, as trials run it) vs the same
  bare loop (target: ratio >= 0.9).

Runs alternate between the two sides and the median of `--rounds` is reported, because these
machines are shared and noisy: only the ratio is meaningful, not the absolute numbers.

`--baseline REV` adds a third side, the trainer (automl_clf/train/trainer.py) as it was at git
revision REV, run in the same process on the same data, and a column `vs REV`: the median over
rounds of this tree's images/s over REV's (> 1: this tree is faster), and the ratio of the two
sides' fastest rounds (the least disturbed by other work on the machine). The sides run in a new
order each round, so drift in the machine's load falls on all of them alike.

    python bench/throughput.py [--rounds 5] [--epochs 2] [--baseline main]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl_clf.data import load_dataset
from automl_clf.data.augment import transform_list
from automl_clf.data.batches import TrainBatches
from automl_clf.data.dataset import Dataset, SplitArrays, pixels_for_stats
from automl_clf.data.preprocess import Decoding, Preprocessing, build_preprocessing, mean_std
from automl_clf.datasets import write_digits
from automl_clf.models.factory import backbone_mean_std, build_model
from automl_clf.spec import FixedParams, parse_spec, resolve
from automl_clf.spec.config import TrialConfig
from automl_clf.train.trainer import fit

REPO = Path(__file__).resolve().parents[1]
CASES = [("cnn", 16), ("test_resnet", 32)]
Fit = Callable[..., Any]  # automl_clf.train.trainer.fit, of this tree or of another revision


def fit_at(rev: str, folder: Path) -> Fit:
    """`fit` from automl_clf/train/trainer.py at git revision `rev`, importing the rest of the
    package from this tree (so the two trainers share data, model and optimizer code)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:automl_clf/train/trainer.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = folder / "trainer_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("trainer_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.fit


def make_config(
    root: Path, backbone: str, size: int, policy: str, epochs: int
) -> tuple[TrialConfig, Dataset]:
    raw = {
        "data": {"root": str(root), "image_size": size, "channels": 1},
        "model": {"backbone": backbone, "dropout": 0.1, "cnn": {"filters": [32, 64]}},
        "train": {
            "epochs": epochs,
            "batch_size": 64,
            "lr": 1e-3,
            "schedule": "constant",
            "early_stopping_patience": None,
        },
        "augment": {"policy": policy},
    }
    spec = parse_spec(raw, base_dir=root)
    return resolve(spec, FixedParams({})), load_dataset(spec.data)


def _setup(
    config: TrialConfig, dataset: Dataset
) -> tuple[SplitArrays, Preprocessing, torch.nn.Module]:
    """The training split, its preprocessing, and a freshly seeded model."""
    train = dataset.arrays(Decoding.of(config.data))["train"]
    stats = mean_std(pixels_for_stats(train.pixels))
    pre = build_preprocessing(config.data, backbone_mean_std(config.model.backbone), stats)
    torch.manual_seed(0)
    model = build_model(
        config.model,
        n_classes=dataset.n_classes,
        in_chans=config.data.channels,
        image_size=config.data.image_size,
    )
    return train, pre, model


def pipeline_seconds(
    config: TrialConfig, dataset: Dataset, epochs: int, trainer: Fit = fit
) -> tuple[float, int]:
    """Wall time of `trainer` (`fit`; training only, no validation) for `epochs` epochs."""
    train, pre, model = _setup(config, dataset)
    batches = TrainBatches(
        train,
        config.train.batch_size,
        pre,
        transform_list(config.augment),
        0,
        n_classes=dataset.n_classes,
        batched=True,  # the named policy, as trials run it
    )
    started = time.perf_counter()
    trainer(model, batches, None, config.train, pre, max_epochs=epochs)
    return time.perf_counter() - started, epochs * len(train)


def bare_seconds(config: TrialConfig, dataset: Dataset, epochs: int) -> tuple[float, int]:
    """The same model, optimizer and batch size over preloaded normalised tensors."""
    train, pre, model = _setup(config, dataset)
    assert isinstance(train.pixels, np.ndarray)  # the digits are small: in memory
    images, labels = pre.to_tensor(train.pixels), torch.from_numpy(train.labels)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = config.train.batch_size
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels))
        for i in range(0, len(labels), batch):
            index = order[i : i + batch]
            if len(index) < 2:
                break
            loss = loss_fn(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - started, epochs * len(labels)


def compare(
    config: TrialConfig, dataset: Dataset, rounds: int, epochs: int, baseline: Fit | None
) -> dict[str, list[float]]:
    """Images/s of each side per round: ours, bare, and the baseline's when there is one."""
    sides: dict[str, Callable[[int], tuple[float, int]]] = {
        "ours": lambda n: pipeline_seconds(config, dataset, n),
        "bare": lambda n: bare_seconds(config, dataset, n),
    }
    if baseline is not None:
        sides["baseline"] = lambda n: pipeline_seconds(config, dataset, n, baseline)
    for run in sides.values():  # warm-up every path
        run(1)
    speeds: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            seconds, n = sides[name](epochs)
            speeds[name].append(n / seconds)
    return speeds


def main() -> None:
    import os

    if os.environ.get("FLUSH_DENORMAL"):
        torch.set_flush_denormal(True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--baseline", metavar="REV", help="also time the trainer at git REV")
    args = parser.parse_args()
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_digits(Path(tmp) / "digits")
        baseline = fit_at(args.baseline, Path(tmp)) if args.baseline else None
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{args.rounds} rounds × {args.epochs} epochs, digits (1,257 training images)"
        )
        vs = f" vs {args.baseline}" if args.baseline else ""
        print(
            f"{'comparison':<30} {'model':<12} {'px':>3} {'autoclf img/s':>14} "
            f"{'bare img/s':>11} {'ratio':>6} target{vs}"
        )
        for label, policy, target in (
            ("trainer overhead (no aug.)", "none", 0.95),
            ("full pipeline (light aug.)", "light", 0.9),
        ):
            for backbone, size in CASES:
                config, dataset = make_config(root, backbone, size, policy, args.epochs)
                speeds = compare(config, dataset, args.rounds, args.epochs, baseline)
                ours = speeds["ours"]
                ratios = [o / b for o, b in zip(ours, speeds["bare"], strict=True)]
                ratio = statistics.median(ratios)
                line = (
                    f"{label:<30} {backbone:<12} {size:>3} {statistics.median(ours):>14.0f} "
                    f"{statistics.median(speeds['bare']):>11.0f} {ratio:>6.3f} >= {target} "
                    f"{'ok' if ratio >= target else 'BELOW'}"
                )
                if baseline is not None:
                    against = [o / b for o, b in zip(ours, speeds["baseline"], strict=True)]
                    best = max(ours) / max(speeds["baseline"])
                    line += f" {statistics.median(against):.3f} (fastest rounds {best:.3f})"
                    line += f"  (round ratios vs {args.baseline} {_listed(against)})"
                print(f"{line}  (round ratios {_listed(ratios)})")
    np.random.seed(0)


def _listed(ratios: list[float]) -> str:
    return ", ".join(f"{r:.2f}" for r in ratios)


if __name__ == "__main__":
    main()
