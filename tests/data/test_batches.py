"""Training batches (data/batches.py): the DataLoader workers of a streamed split start without
the caller's main script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# A plain script, no `if __name__ == "__main__":` guard: spawn imported it again in each worker,
# which then ran it (and its own workers) again instead of reading batches.
SCRIPT = """
from pathlib import Path

from automl_clf.data import Decoding, load_dataset
from automl_clf.data.batches import TrainBatches
from automl_clf.data.preprocess import build_preprocessing
from automl_clf.spec.config import DataConfig
from tests.data.test_dataset import data_spec, write_images

print("the script ran", flush=True)
root = Path("data")
for name in ("a", "b"):
    write_images(root / name, 16)
spec = data_spec(root.resolve(), loading="stream", cache_dir=str(Path("cache").resolve()))
split = load_dataset(spec).arrays(Decoding(image_size=8, channels=3, resize="squash"))["train"]
config = DataConfig(image_size=8, channels=3, resize="squash", normalize="none")
batches = TrainBatches(
    split, 8, build_preprocessing(config, "cnn", None), [], seed=3, n_classes=2, workers=1
)
try:
    print("images", sum(len(y) for _, y in batches.epoch(1)))
finally:
    batches.close()
"""


def test_streamed_batches_work_in_a_plain_script_run_once(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "script.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,  # the bug's symptom was a hang or a bootstrapping RuntimeError
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("the script ran") == 1, done.stdout  # not again in the worker
    assert "images " in done.stdout and "Traceback" not in done.stderr, done.stderr
