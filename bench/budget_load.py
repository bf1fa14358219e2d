"""Does `autoclf run --time B` keep its budget on a busy machine, and what does the final step
do? Digits and RGB photographs, at several budgets, with 0, 2 and 4 busy background processes.

Method. Two data sets, made here from real images that ship inside installed packages (nothing
is downloaded):

- digits: scikit-learn's 1,797 handwritten digits (`autoclf datasets digits`), searched with
  specs/digits.yaml as `make demo` runs it;
- photos: 6 classes of 100 crops each, 160 px, from the three photographs scikit-learn and
  matplotlib ship (china.jpg, flower.jpg, grace_hopper.jpg): a class is one half of one
  photograph, a crop a random square of 30-60 % of that half's short side (seeded). The spec is
  what `autoclf init DIR --time B` writes for it (128 px), as a new user would run it.

Each cell is one fresh `autoclf run SPEC --time B --export DIR` in its own process (a new study
each time), timed from outside: wall / B is what the user waits for against what they asked.
The busy processes are plain CPU loops (`python -c "while True: pass"`) at normal priority,
started before the run and killed after it. Printed per cell: wall / budget, test accuracy,
the final step (members and how each was made, the ensemble's weights, what the time budget
left out), and the ensemble selection's validation numbers (best single vs the chosen mix) with
the test accuracy of both where the export measured them. Accuracy under load is compared with
the quiet run of the same data set and budget in the same invocation. Each run's whole output
is kept beside the results (`OUT-STEM-data-budget-load.log`).

    python bench/budget_load.py [--budgets 60,180,600] [--loads 0,2,4] [--data digits,photos]
        [--out bench/.results/budget_load.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
AUTOCLF = [sys.executable, "-m", "automl_clf.cli"]
PHOTOS_PER_CLASS, PHOTO_SIDE = 100, 160


def photographs() -> list[np.ndarray]:
    """The real photographs installed packages carry: scikit-learn's two, matplotlib's one."""
    import matplotlib.cbook
    from sklearn.datasets import load_sample_images

    hopper = matplotlib.cbook.get_sample_data("grace_hopper.jpg")
    with Image.open(hopper) as image:
        grace = np.asarray(image.convert("RGB"))
    return [*load_sample_images().images, grace]


def write_photos(root: Path, seed: int = 0) -> Path:
    """6 classes (each half of each photograph) of `PHOTOS_PER_CLASS` random square crops."""
    rng = np.random.default_rng(seed)
    for p, photo in enumerate(photographs()):
        width = photo.shape[1]
        halves = [photo[:, : width // 2], photo[:, width // 2 :]]
        for h, half in enumerate(halves):
            folder = root / f"photo{p}_{'left' if h == 0 else 'right'}"
            folder.mkdir(parents=True, exist_ok=True)
            short = min(half.shape[:2])
            for i in range(PHOTOS_PER_CLASS):
                side = int(short * rng.uniform(0.3, 0.6))
                top = rng.integers(0, half.shape[0] - side + 1)
                left = rng.integers(0, half.shape[1] - side + 1)
                crop = Image.fromarray(half[top : top + side, left : left + side])
                crop = crop.resize((PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.BILINEAR)
                crop.save(folder / f"{i:03d}.jpg", quality=92)
    return root


def busy(n: int) -> list[subprocess.Popen[bytes]]:
    """`n` plain CPU loops at normal priority."""
    loop = [sys.executable, "-c", "while True: pass"]
    return [subprocess.Popen(loop) for _ in range(n)]


def run_cell(spec: Path, budget: int, out: Path, name: str, log: Path) -> dict[str, Any]:
    """One `autoclf run` in its own process; what it took and what it exported. Its whole
    output goes to `log`: what the final step did and why is there, not in the table."""
    command = [*AUTOCLF, "run", str(spec), "--time", f"{budget}s", "--export", str(out)]
    command += ["--set", f"study.name={name}"]
    env = {**os.environ, "COLUMNS": "400", "NO_ALBUMENTATIONS_UPDATE": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=spec.parent)
    wall = time.perf_counter() - started
    log.write_text(done.stdout + done.stderr)
    cell: dict[str, Any] = {"wall_s": wall, "budget_s": budget, "exit": done.returncode}
    if done.returncode != 0:
        cell["error"] = (done.stderr or done.stdout)[-600:]
        return cell
    manifest = json.loads((out / "model.json").read_text())
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    cell["test_accuracy"] = metrics["accuracy"]
    members = manifest.get("members") or [manifest]
    cell["members"] = [
        {
            "trial": m["trial"],
            "retrained": m.get("retrained", True),
            "weight": m.get("weight"),
        }
        for m in members
    ]
    cell["selection"] = manifest.get("selection")
    cell["single_test_accuracy"] = (metrics.get("single") or {}).get("accuracy")
    cell["left_out"] = _left_out(done.stdout)
    cell["plan"] = [line for line in done.stdout.splitlines() if line.startswith(("plan:", "fit"))]
    cell["budget_table"] = _budget_table(done.stdout)
    return cell


def _budget_table(stdout: str) -> list[str]:
    """The run's own "time budget" table (each phase planned and actual), as printed."""
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("time budget")), None)
    if start is None:
        return []
    table = lines[start : start + 8]
    end = next((i for i, line in enumerate(table) if line.lstrip().startswith("total")), None)
    return [line.rstrip() for line in table[: (end + 1) if end is not None else len(table)]]


def _left_out(stdout: str) -> str:
    found = re.search(r"left out to keep the time budget: (.*)", stdout)
    return found.group(1) if found else ""


def describe(cell: dict[str, Any]) -> str:
    """The final step in a few words: members (r: retrained, s: as searched) and weights."""
    if "members" not in cell:
        return f"failed (exit {cell['exit']})"
    parts = []
    for m in cell["members"]:
        weight = f" {m['weight']:.2f}" if m["weight"] is not None else ""
        parts.append(f"#{m['trial']}{'r' if m['retrained'] else 's'}{weight}")
    left = cell["left_out"]
    skipped = ", ".join(re.findall(r"(?:^|; )([^(;]+?) \(about", left)) if left else ""
    return " + ".join(parts) + (f"; left out: {skipped}" if skipped else "")


def selection_text(cell: dict[str, Any]) -> str:
    selection = cell.get("selection")
    if not selection:
        return ""
    objective = selection["objective"]
    single, mixed = selection["val_single"][objective], selection["val_ensemble"][objective]
    test = ""
    if cell.get("single_test_accuracy") is not None:
        single_test = cell["single_test_accuracy"]
        test = f"; test acc single {single_test:.4f} / ens {cell['test_accuracy']:.4f}"
    return f"val {objective} single {single:.4f} / chosen {mixed:.4f}{test}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="60,180,600")
    parser.add_argument("--loads", default="0,2,4")
    parser.add_argument("--data", default="digits,photos")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/.results/budget_load.json")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    loads = [int(n) for n in args.loads.split(",")]
    work = Path(tempfile.mkdtemp(prefix="autoclf-budget-load-"))
    specs: dict[str, Any] = {}
    for data in args.data.split(","):
        root = work / data
        if data == "digits":
            subprocess.run([*AUTOCLF, "datasets", "digits", str(root)], check=True)
            specs[data] = lambda budget, root=root: _digits_spec(root, work)
        else:
            write_photos(root)
            specs[data] = lambda budget, root=root, data=data: _init_spec(root, work, data, budget)
    results: list[dict[str, Any]] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{'data':7} {'budget':>6} {'load':>4} {'wall/B':>7} {'test acc':>8}  final step")
    for data, make_spec in specs.items():
        for budget in budgets:
            spec = make_spec(budget)
            for load in loads:
                loops = busy(load)
                try:
                    name = f"{data}-{budget}-{load}"
                    log = args.out.with_name(f"{args.out.stem}-{name}.log")
                    cell = run_cell(spec, budget, work / "exports" / name, name, log)
                finally:
                    for loop in loops:
                        loop.kill()
                cell.update(data=data, load=load)
                results.append(cell)
                args.out.write_text(json.dumps(results, indent=2))  # a stopped run keeps its cells
                accuracy = cell.get("test_accuracy")
                shown = f"{accuracy:.4f}" if accuracy is not None else "-"
                print(
                    f"{data:7} {budget:>6} {load:>4} {cell['wall_s'] / budget:>7.3f} "
                    f"{shown:>8}  {describe(cell)}",
                    flush=True,
                )
                if selection_text(cell):
                    print(f"{'':31}{selection_text(cell)}", flush=True)
                for line in [*cell.get("plan", []), *cell.get("budget_table", [])]:
                    print(f"{'':31}{line}", flush=True)
                if cell.get("error"):
                    print(cell["error"], flush=True)
    print(f"results: {args.out}")


def _digits_spec(root: Path, work: Path) -> Path:
    text = (ROOT / "specs" / "digits.yaml").read_text().replace("../data/digits", str(root))
    spec = work / "digits.yaml"
    spec.write_text(text)
    return spec


def _init_spec(root: Path, work: Path, data: str, budget: int) -> Path:
    spec = work / f"{data}-{budget}.yaml"
    command = [*AUTOCLF, "init", str(root), "--time", f"{budget}s", "-o", str(spec), "--force"]
    subprocess.run(command, check=True, capture_output=True)
    return spec


if __name__ == "__main__":
    main()
