"""The hand-written arm of bench/peers.py: what a practitioner writes with Optuna and timm alone.

No autoclf import: the images are loaded into tensors once, the search space is specs/digits.yaml's
(backbone: a plain conv/BN/ReLU/pool CNN with its filter choices, or timm's `test_resnet`; dropout;
lr, log scale; batch size; augmentation none or light, a random affine done with torch ops),
trained with AdamW + cosine and label smoothing 0.05, up to 15 epochs with early stopping
(patience 4), TPE + median pruning on validation loss.

    python bench/peers_optuna.py --data SPLIT_ROOT --budget 60 --result result.json

Budget: `study.optimize(timeout=…)` until `--search-share` (0.8) of `--budget` seconds after this
process started; a trial still running then stops after its current epoch and keeps its best
epoch so far. Then, if the rest of the budget fits it (estimated from the best trial's seconds per
epoch, scaled to the larger data, with a 1.25 margin), the best configuration is retrained on
train+val for the best trial's best epoch count, as a practitioner does to use the validation
images too; otherwise the best trial's kept model (its best epoch, by val loss) is tested. Either
way the test split is used once, at the end.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

STARTED = time.monotonic()  # the budget counts from here: imports and loading are part of it

HP: dict[str, Any] = {
    "epochs": 15,  # at most; early stopping on val loss
    "patience": 4,  # epochs without a better val loss
    "weight_decay": 1e-4,
    "label_smoothing": 0.05,
    "filters": {"a": [16, 32], "b": [32, 64], "c": [16, 32, 64]},  # one conv block per entry
    "fc_width": 128,
}


def load(root: Path) -> dict[str, Any]:
    """Every split as (float images (N, 1, H, W) in [0, 1], int labels), decoded once."""
    import numpy as np
    import torch
    from PIL import Image

    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    splits = {}
    for split in ("train", "val", "test"):
        images, labels = [], []
        for label, name in enumerate(classes):
            for path in sorted((root / split / name).iterdir()):
                images.append(np.asarray(Image.open(path).convert("L")))
                labels.append(label)
        x = torch.from_numpy(np.stack(images)).float().div(255).unsqueeze(1)
        splits[split] = (x, torch.tensor(labels))
    return splits


def build(params: dict[str, Any], n_classes: int) -> Any:
    import timm
    from torch import nn

    if params["backbone"] == "test_resnet":
        return timm.create_model(
            "test_resnet", num_classes=n_classes, in_chans=1, drop_rate=params["dropout"]
        )
    layers: list[nn.Module] = []
    channels = 1
    for filters in HP["filters"][params["filters"]]:
        layers += [nn.Conv2d(channels, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters)]
        layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        channels = filters
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.LazyLinear(HP["fc_width"]),
        nn.ReLU(inplace=True),
        nn.Dropout(params["dropout"]),
        nn.Linear(HP["fc_width"], n_classes),
    )


def light(x: Any) -> Any:
    """Random affine per image: ±10° rotation, ±10 % scale, ±2 px shift (of 16); no flips."""
    import math

    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    angle = (torch.rand(n) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2) * 2 - 1) * (2 * 2 / x.shape[-1])  # grid units: 2 px
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="border")


def evaluate(model: Any, x: Any, y: Any) -> tuple[float, Any]:
    import torch
    import torch.nn.functional as F

    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 512]) for i in range(0, len(x), 512)])
    return F.cross_entropy(logits, y).item(), logits.argmax(1)


def train(
    params: dict[str, Any],
    data: tuple[Any, Any],
    val: tuple[Any, Any] | None,
    epochs: int,
    deadline: float,
    trial: Any = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train; with `val`, early-stop on val loss, report it to `trial`, keep the best epoch."""
    import optuna
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    x, y = data
    model = build(params, int(y.max()) + 1)
    model(x[:2])  # materialise the lazy layer before the optimizer sees the parameters
    steps = epochs * -(-len(x) // params["batch_size"])
    opt = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=HP["weight_decay"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    best: dict[str, Any] = {"loss": float("inf"), "epoch": 0, "state": None}
    started = time.monotonic()
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in torch.randperm(len(x)).split(params["batch_size"]):
            xb = light(x[idx]) if params["augment"] == "light" else x[idx]
            loss = F.cross_entropy(model(xb), y[idx], label_smoothing=HP["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        if val is None:
            best.update(epoch=epoch, state=model.state_dict())
        else:
            val_loss, _ = evaluate(model, *val)
            if val_loss < best["loss"]:
                best.update(loss=val_loss, epoch=epoch, state=copy.deepcopy(model.state_dict()))
            if trial is not None:
                trial.report(val_loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            if epoch - best["epoch"] >= HP["patience"]:
                break
        if time.monotonic() > deadline:  # out of search time: keep what this trial has
            break
    model.load_state_dict(best["state"])
    return {**best, "model": model, "s_per_epoch": (time.monotonic() - started) / epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="root with train/ val/ test/")
    parser.add_argument("--budget", type=float, required=True, help="seconds, all included")
    parser.add_argument("--search-share", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()

    import optuna
    import torch
    from sklearn.metrics import f1_score

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    splits = load(args.data)
    mean, std = splits["train"][0].mean(), splits["train"][0].std()  # training split only
    splits = {k: ((x - mean) / std, y) for k, (x, y) in splits.items()}
    search_end = STARTED + args.search_share * args.budget
    kept: dict[str, Any] = {"loss": float("inf")}

    def objective(trial: optuna.Trial) -> float:
        params = {
            "backbone": trial.suggest_categorical("backbone", ["cnn", "test_resnet"]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
            "augment": trial.suggest_categorical("augment", ["none", "light"]),
        }
        if params["backbone"] == "cnn":
            params["filters"] = trial.suggest_categorical("filters", list(HP["filters"]))
        run = train(
            params,
            splits["train"],
            splits["val"],
            HP["epochs"],
            search_end,
            trial,
            seed=args.seed + trial.number,
        )
        if run["loss"] < kept["loss"]:
            kept.update(run, params=params)
        return float(run["loss"])

    sampler = optuna.samplers.TPESampler(seed=args.seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=3)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    study.optimize(objective, timeout=max(search_end - time.monotonic(), 0.0))
    searched_s = time.monotonic() - STARTED
    states = [t.state.name for t in study.trials]
    counts = {s: states.count(s) for s in sorted(set(states))}
    if "params" not in kept:  # no trial finished an epoch better than nothing: say so
        args.result.write_text(json.dumps({"accuracy": None, "trials": counts}) + "\n")
        return

    x_train, y_train = (torch.cat(t) for t in zip(splits["train"], splits["val"], strict=True))
    estimate = kept["s_per_epoch"] * kept["epoch"] * len(x_train) / len(splits["train"][0])
    end = STARTED + args.budget
    retrained = time.monotonic() + 1.25 * estimate < end
    if retrained:
        model = train(
            kept["params"], (x_train, y_train), None, kept["epoch"], end, seed=args.seed
        )["model"]
    else:
        model = kept["model"]
    _, predicted = evaluate(model, *splits["test"])
    y_test = splits["test"][1]
    args.result.write_text(json.dumps({
        "accuracy": float((predicted == y_test).float().mean()),
        "macro_f1": float(f1_score(y_test, predicted, average="macro")),
        "n_test": len(y_test),
        "trials": counts,
        "best_params": kept["params"],
        "best_epoch": kept["epoch"],
        "best_val_loss": kept["loss"],
        "retrained_on_train_val": retrained,
        "search_s": searched_s,
        "threads": torch.get_num_threads(),
    }, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
