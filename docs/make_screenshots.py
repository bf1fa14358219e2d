"""Make the report screenshots in docs/ from three small real exports (run by hand, not in CI):

    python docs/make_screenshots.py [--work DIR]

- 2 classes: scikit-learn's digits 3 and 8 as `three` / `eight`, 22 trials (enough for the
  parameter importances: report/search.py's MIN_IMPORTANCE_TRIALS)
- 4 classes with long names: digits 0, 1, 7, 9 as `astronaut_eileen_collins_in_orbit`, … ;
  6 trials (the importances caveat), the `medium` augmentation policy
- 100 classes: synthetic 8 px patterns with noise (tests/report_helpers.py)

Each is searched, retrained on train+val and exported with `run_search` and `export_best`, as
`autoclf search` and `autoclf best --export` do. Headless Chromium renders the top of a report
or one section of it (tests/report_helpers.py: `section_page`), the empty page below is cut
off, and the PNGs are reduced to 256 colours (each under 300 KB). A few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/report_helpers.py

from tests.report_helpers import (  # noqa: E402
    LONG_NAMES,
    TWO_NAMES,
    chromium,
    screenshot,
    section_page,
    write_named_digits,
    write_synthetic_classes,
)

WIDTH = 1280  # pixels: the page's width in every screenshot
SHOTS = {  # docs file -> (data set, section id or "" for the top, most pixels high)
    "report_2_classes.png": ("two", "", 1500),
    "report_search.png": ("two", "search", 1800),
    "report_4_classes.png": ("four", "confusion", 1400),
    "report_training.png": ("four", "training", 2000),
    "report_100_classes.png": ("hundred", "confusion", 2200),
}


def spec_for(root: Path, work: Path, name: str, n_trials: int, policy: str) -> dict[str, Any]:
    """A small real spec: a plain CNN at 16 px, a few epochs, retrained on train+val."""
    return {
        "study": {
            "name": name,
            "storage": f"sqlite:///{work / f'{name}.db'}",
            "n_trials": n_trials,
            "seed": 0,
            "pruner": "none",
        },
        "data": {"root": str(root), "image_size": 16, "channels": 1},
        "model": {
            "backbone": "cnn",
            "dropout": {"low": 0.0, "high": 0.5},
            "cnn": {"filters": {"choices": [[16, 32], [32, 64]]}, "fc_width": 64},
        },
        "train": {
            "epochs": 8,
            "batch_size": 32,
            "lr": {"low": 1e-3, "high": 1e-2, "log": True},
            "weight_decay": {"low": 1e-5, "high": 1e-3, "log": True},
            "schedule": "cosine",
        },
        "augment": {"policy": policy},
        "final": {"train_on": "train+val", "retrain": "always"},
    }


def export(root: Path, work: Path, name: str, n_trials: int, policy: str) -> Path:
    """Search and export one data set; returns its report folder."""
    from automl_clf import export_best, load_spec
    from automl_clf.search.run import run_search  # `automl_clf.search` is also the subpackage

    spec_file = work / f"{name}.yaml"
    spec_file.write_text(yaml.safe_dump(spec_for(root, work, name, n_trials, policy)))
    spec = load_spec(spec_file)
    run_search(spec)  # resumes: a rerun with --work adds nothing to a finished study
    return export_best(spec, work / f"export_{name}")


def trim_bottom(image: Image.Image, margin: int = 24) -> Image.Image:
    """`image` without the empty page below the content (rows of the background colour)."""
    pixels = np.asarray(image)
    background = pixels[-1, 0]
    filled = np.flatnonzero((pixels != background).any(axis=(1, 2)))
    bottom = min(len(pixels), int(filled[-1]) + margin) if len(filled) else len(pixels)
    return image.crop((0, 0, image.width, bottom))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep the data and exports here")
    args = parser.parse_args()
    browser = chromium()
    if browser is None:
        sys.exit("no Chromium found: apt-get install chromium")
    work = args.work or Path(tempfile.mkdtemp(prefix="autoclf-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    reports = {
        "two": export(write_named_digits(work / "two", TWO_NAMES, 90), work, "two", 22, "light"),
        "four": export(
            write_named_digits(work / "four", LONG_NAMES, 60), work, "four", 6, "medium"
        ),
        "hundred": export(
            write_synthetic_classes(work / "hundred", 100, 20), work, "hundred", 2, "light"
        ),
    }
    for file, (data, section, height) in SHOTS.items():
        page = reports[data] / "index.html"
        if section:
            page = section_page(page, section)
        shot = REPO / "docs" / file
        run = screenshot(browser, page.as_uri(), shot, (WIDTH, height), work / "profile")
        if not shot.is_file():
            sys.exit(f"Chromium wrote no {file}: {run.stderr[-500:]}")
        with Image.open(shot) as image:
            trimmed = trim_bottom(image.convert("RGB"))
        trimmed.quantize(256).save(shot, optimize=True)
        print(f"{shot.relative_to(REPO)}: {shot.stat().st_size // 1024} KB ({page})")
    print(f"exports in {work}")


if __name__ == "__main__":
    main()
