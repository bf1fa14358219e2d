"""Training throughput of autoclf's trainer against a bare PyTorch loop, in one process.

Two comparisons, each on the same model architecture, data, batch size and optimizer:

- trainer overhead: `fit` without augmentation vs a bare loop over preloaded, normalised
  tensors (target: ratio >= 0.95);
- full data pipeline: `fit` with the `light` augmentation policy (decoded uint8 pixels →
  [0, 1] → batched affine augmentation → normalise, every batch, as trials run it) vs the same
  bare loop (target: ratio >= 0.9).

Runs alternate between the two sides and the median of `--rounds` is reported, because these
machines are shared and noisy: only the ratio is meaningful, not the absolute numbers.

    python bench/throughput.py [--rounds 5] [--epochs 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl_clf.data import load_dataset
from automl_clf.data.augment import transform_list
from automl_clf.data.batches import TrainBatches
from automl_clf.data.dataset import pixels_for_stats
from automl_clf.data.preprocess import Decoding, build_preprocessing, mean_std
from automl_clf.datasets import write_digits
from automl_clf.models.factory import backbone_mean_std, build_model
from automl_clf.spec import FixedParams, parse_spec, resolve
from automl_clf.spec.config import TrialConfig
from automl_clf.train.trainer import fit

CASES = [("cnn", 16), ("test_resnet", 32)]


def make_config(root: Path, backbone: str, size: int, policy: str, epochs: int) -> tuple:  # type: ignore[type-arg]
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


def _setup(config: TrialConfig, dataset) -> tuple:  # type: ignore[no-untyped-def,type-arg]
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


def pipeline_seconds(config: TrialConfig, dataset, epochs: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Wall time of `fit` (training only, no validation) for `epochs` epochs."""
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
    fit(model, batches, None, config.train, pre, max_epochs=epochs)
    return time.perf_counter() - started, epochs * len(train)


def bare_seconds(config: TrialConfig, dataset, epochs: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """The same model, optimizer and batch size over preloaded normalised tensors."""
    train, pre, model = _setup(config, dataset)
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


def main() -> None:
    import os

    if os.environ.get("FLUSH_DENORMAL"):
        torch.set_flush_denormal(True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_digits(Path(tmp) / "digits")
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{args.rounds} rounds × {args.epochs} epochs, digits (1,257 training images)"
        )
        print(
            f"{'comparison':<30} {'model':<12} {'px':>3} {'autoclf img/s':>14} "
            f"{'bare img/s':>11} {'ratio':>6} target"
        )
        for label, policy, target in (
            ("trainer overhead (no aug.)", "none", 0.95),
            ("full pipeline (light aug.)", "light", 0.9),
        ):
            for backbone, size in CASES:
                config, dataset = make_config(root, backbone, size, policy, args.epochs)
                pipeline_seconds(config, dataset, 1)  # warm-up both paths
                bare_seconds(config, dataset, 1)
                ours, bare = [], []
                for _ in range(args.rounds):
                    seconds, n = pipeline_seconds(config, dataset, args.epochs)
                    ours.append(n / seconds)
                    seconds, n = bare_seconds(config, dataset, args.epochs)
                    bare.append(n / seconds)
                ratios = [o / b for o, b in zip(ours, bare, strict=True)]
                ratio = statistics.median(ratios)
                print(
                    f"{label:<30} {backbone:<12} {size:>3} {statistics.median(ours):>14.0f} "
                    f"{statistics.median(bare):>11.0f} {ratio:>6.3f} >= {target} "
                    f"{'ok' if ratio >= target else 'BELOW'}"
                    f"  (round ratios {', '.join(f'{r:.2f}' for r in ratios)})"
                )
    np.random.seed(0)


if __name__ == "__main__":
    main()
