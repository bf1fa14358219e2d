"""Is my data OK, and can each prediction be trusted? The data-quality checks measured on real
images: near-duplicate leakage, label errors, calibration and "unsure" answers.

Data, made here from real images installed packages ship (nothing is downloaded):
- digits: scikit-learn's 1,797 handwritten digits (8x8, upscaled to 16 px by specs/digits.yaml);
- photos: 6 classes of 100 crops, 160 px, from the photographs scikit-learn and matplotlib ship
  (bench/budget_load.py `write_photos`), searched with the spec `autoclf init --time` writes.

(a) Leakage. A copy of 20 % of the images, each made one of the four ways real data sets get
    them (resize, JPEG re-encode, 5-10 % crop, brightness; `automl_clf.datasets.near_copy`),
    is put beside its original, so the plain split scatters pairs across train/val/test.
    Precision and recall of the leakage check over the (copy, original) pairs that straddle
    splits; then the same `autoclf run --time` with `data.near_duplicates: warn` (the plain,
    leaky split) and `group` (each cluster in one split): how much the test accuracy moves.
(b) Label errors. 3 % and 10 % of the digits' labels flipped at random (files moved to another
    class folder, seeded); `audit_labels(spec, time_s=...)` (what `autoclf audit` runs):
    precision and recall of the flagged images against the flipped ones, and its wall time.
(c) Calibration. `autoclf run --time` on each data set: the test ECE and log loss before and
    after temperature scaling (the export's report/metrics.json).
(d) Unsure answers: the test accuracy when the model answers 90 % and 95 % of the images (the
    most confident ones), from the same exports.

    python bench/data_quality.py [--time 120] [--audit-time 120] [--parts a,b,c]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from budget_load import write_photos  # the same photographs, the same crops

ROOT = Path(__file__).resolve().parent.parent
AUTOCLF = [sys.executable, "-m", "automl_clf.cli"]
COPY_SHARE = 0.2


def digits(folder: Path) -> Path:
    from automl_clf.datasets import write_digits

    return write_digits(folder)


def with_copies(root: Path, seed: int = 0) -> dict[Path, Path]:
    """A near-copy of `COPY_SHARE` of the images beside each original; copy -> original."""
    from automl_clf.datasets import COPY_KINDS, near_copy

    rng = np.random.default_rng(seed)
    files = sorted(p for p in root.rglob("*") if p.suffix in (".png", ".jpg"))
    chosen = rng.choice(len(files), int(COPY_SHARE * len(files)), replace=False)
    copies = {}
    for k, index in enumerate(chosen):
        original = files[index]
        with Image.open(original) as image:
            copy = near_copy(image.convert("RGB"), COPY_KINDS[k % len(COPY_KINDS)], rng)
        path = original.with_name(f"copy{k}-{original.stem}.png")
        copy.save(path)
        copies[path] = original
    return copies


def spec_for(data: str, root: Path, work: Path, budget: int, **sets: str) -> Path:
    """The spec a user would run on `data` (digits: specs/digits.yaml; photos: `init`'s)."""
    spec = work / f"{data}-{budget}-{len(sets)}.yaml"
    if data == "digits":
        text = (ROOT / "specs" / "digits.yaml").read_text().replace("../data/digits", str(root))
        spec.write_text(text)
    else:
        init = [*AUTOCLF, "init", str(root), "--time", f"{budget}s", "-o", str(spec), "--force"]
        subprocess.run(init, check=True, capture_output=True)
    return spec


def run(spec: Path, budget: int, out: Path, name: str, *sets: str) -> dict[str, Any]:
    """One `autoclf run`; the export's metrics.json and model.json."""
    command = [*AUTOCLF, "run", str(spec), "--time", f"{budget}s", "--export", str(out)]
    for value in (f"study.name={name}", *sets):
        command += ["--set", value]
    env = {**os.environ, "COLUMNS": "300", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=spec.parent)
    if done.returncode != 0:
        raise SystemExit(f"autoclf run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    return {"metrics": metrics, "manifest": json.loads((out / "model.json").read_text())}


def part_a(work: Path, budget: int) -> None:
    from automl_clf.data import load_dataset
    from automl_clf.spec import load_spec

    print("(a) near-duplicate leakage: 20 % of the images copied beside their originals")
    for data in ("digits", "photos"):
        root = work / f"{data}-copies"
        digits(root) if data == "digits" else write_photos(root)
        copies = with_copies(root)
        spec_path = spec_for(data, root, work, budget)
        spec = load_spec(spec_path, overrides={"data.near_duplicates": "warn"})
        started = time.perf_counter()
        dataset = load_dataset(spec.data)
        seconds = time.perf_counter() - started
        report = dataset.near_duplicates
        assert report is not None
        where = {s.path: name for name, part in dataset.splits.by_name().items() for s in part}
        truth = {frozenset(p) for p in copies.items() if where.get(p[0]) != where.get(p[1])}
        found = {frozenset((a, b)) for a, _, b, _ in report.leaks()}
        hits = len(found & truth)
        precision = hits / len(found) if found else float("nan")
        recall = hits / len(truth) if truth else float("nan")
        print(
            f"  {data}: {len(copies)} copies, {len(truth)} straddle splits; flagged "
            f"{len(found)} pairs: precision {precision:.3f}, recall {recall:.3f} "
            f"({seconds:.1f} s to load and check the data set)"
        )
        accuracy = {}
        for mode in ("warn", "group"):
            out = work / "exports" / f"{data}-{mode}"
            name = f"{data}-dups-{mode}"
            done = run(spec_path, budget, out, name, f"data.near_duplicates={mode}")
            accuracy[mode] = done["metrics"]["accuracy"]
        print(
            f"  {data}: test accuracy {accuracy['warn']:.4f} on the leaky split (warn), "
            f"{accuracy['group']:.4f} with clusters grouped (group): "
            f"{accuracy['group'] - accuracy['warn']:+.4f}"
        )


def part_b(work: Path, audit_time: int) -> None:
    from automl_clf.final.audit import audit_labels
    from automl_clf.spec import load_spec

    print("(b) label errors: digits with labels flipped at random")
    for share in (0.03, 0.10):
        root = digits(work / f"digits-flip-{share}")
        flipped = flip(root, share, seed=1)
        spec_path = spec_for("digits", root, work, audit_time)
        spec = load_spec(spec_path, overrides={"study.name": f"flip{share}"})
        started = time.perf_counter()
        result = audit_labels(spec, time_s=audit_time)
        seconds = time.perf_counter() - started
        flagged = {issue.path for issue in result.issues}
        hits = len(flagged & flipped)
        precision = hits / len(flagged) if flagged else float("nan")
        print(
            f"  {share:.0%} flipped ({len(flipped)} images): flagged {len(flagged)}, precision "
            f"{precision:.3f}, recall {hits / len(flipped):.3f}, {seconds:.0f} s "
            f"({len(result.folds)} folds x {result.epochs} epochs, --time {audit_time}s)"
        )


def flip(root: Path, share: float, seed: int) -> set[Path]:
    """Move `share` of the images to another class folder (seeded); their new paths."""
    rng = np.random.default_rng(seed)
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    files = sorted(root.rglob("*.png"))
    chosen = rng.choice(len(files), round(share * len(files)), replace=False)
    moved = set()
    for index in chosen:
        path = files[index]
        others = [c for c in classes if c != path.parent]
        target = others[rng.integers(len(others))] / f"flipped-{path.name}"
        shutil.move(path, target)
        moved.add(target)
    return moved


def part_c(work: Path, budget: int) -> None:
    print("(c, d) calibration and unsure answers on the test split")
    for data in ("digits", "photos"):
        root = work / f"{data}-plain"
        digits(root) if data == "digits" else write_photos(root)
        spec = spec_for(data, root, work, budget)
        done = run(spec, budget, work / "exports" / f"{data}-plain", f"{data}-plain")
        metrics = done["metrics"]
        scaling = metrics.get("temperature_scaling") or {}
        at = (metrics.get("coverage") or {}).get("at") or []
        members = len(done["manifest"].get("members") or []) or 1
        print(
            f"  {data} ({members} member(s)): T {scaling.get('temperature', 1.0):.3f}; ECE "
            f"{scaling.get('test_expected_calibration_error_before', float('nan')):.4f} -> "
            f"{scaling.get('test_expected_calibration_error_after', float('nan')):.4f}; log "
            f"loss {scaling.get('test_log_loss_before', float('nan')):.4f} -> "
            f"{scaling.get('test_log_loss_after', float('nan')):.4f}; accuracy "
            f"{metrics['accuracy']:.4f} all, {_at(at, '0.9')} at 90 % answered, "
            f"{_at(at, '0.95')} at 95 %"
        )


def _at(at: list[dict[str, Any]], share: str) -> str:
    """The accuracy at `share` answered, from metrics.json's coverage.at."""
    for point in at:
        if abs(point["coverage"] - float(share)) < 1e-9:
            return f"{point['accuracy']:.4f}"
    return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", type=int, default=120, help="each autoclf run's budget, s")
    parser.add_argument("--audit-time", type=int, default=120)
    parser.add_argument("--parts", default="a,b,c")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="autoclf-data-quality-"))
    parts = args.parts.split(",")
    if "a" in parts:
        part_a(work, args.time)
    if "b" in parts:
        part_b(work, args.audit_time)
    if "c" in parts:
        part_c(work, args.time)


if __name__ == "__main__":
    main()
