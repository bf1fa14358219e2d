"""The classical arm of bench/peers.py: an RBF SVC on raw pixels, tuned by grid search.

What a practitioner tries first on small grey images: flatten the pixels (scaled to [0, 1]),
5-fold stratified cross-validation over a (C, gamma) grid on train+val (the validation split is
just more training data for cross-validation), refit the best on all of train+val, test once.
It has no time budget: the grid takes what it takes (seconds on digits), which bench/peers.py
reports beside the budget.

    python bench/peers_svc.py --data SPLIT_ROOT --result result.json [--threads 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC

GRID: dict[str, list[Any]] = {
    "C": [0.1, 1.0, 10.0, 100.0, 1000.0],
    "gamma": ["scale", 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],  # 1 / (features × variance) = "scale"
}


def load(root: Path, split: str, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / split / name).iterdir()):
            pixels.append(np.asarray(Image.open(path).convert("L"), dtype=np.float32).ravel())
            labels.append(label)
    return np.stack(pixels) / 255.0, np.array(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="root with train/ val/ test/")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2, help="parallel fits (processes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    classes = sorted(p.name for p in (args.data / "train").iterdir() if p.is_dir())
    fit = [load(args.data, split, classes) for split in ("train", "val")]
    x, y = np.concatenate([f[0] for f in fit]), np.concatenate([f[1] for f in fit])
    x_test, y_test = load(args.data, "test", classes)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=args.seed)
    search = GridSearchCV(SVC(kernel="rbf"), GRID, cv=folds, n_jobs=args.threads).fit(x, y)
    predicted = search.predict(x_test)
    result = {
        "accuracy": float(np.mean(predicted == y_test)),
        "macro_f1": float(f1_score(y_test, predicted, average="macro")),
        "n_test": len(y_test),
        "best_params": search.best_params_,
        "cv_accuracy": float(search.best_score_),
        "n_fits": 5 * len(GRID["C"]) * len(GRID["gamma"]) + 1,
        "features": int(x.shape[1]),
    }
    args.result.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
