"""The Ultralytics arm of bench/peers.py: YOLO classification trained from scratch, then tested.

Run by peers.py with the Python of its own virtualenv (bench/.venvs/ultralytics), never imported
by autoclf's: ultralytics and its dependencies stay out of autoclf's environment.

    bench/.venvs/ultralytics/bin/python bench/peers_yolo.py --data SPLIT_ROOT \
        --train-seconds 51 --out WORK --result result.json [--threads 2]

It trains `--model` (a model yaml: built from scratch, no weights) with Ultralytics' own time
budget (`time=` hours: it re-plans the epoch count and LR schedule after the first epoch and
stops mid-epoch when time is up), with Ultralytics' defaults except: 32 px (its stride needs it;
the 16 px images are upscaled by its transforms), batch 64 (its default is 16; 64 is the middle
of the other arms' choices), `fliplr=0` (a mirrored digit is another symbol), no plots. It keeps
its best.pt (Ultralytics' choice: best validation fitness), evaluates it once on the test split
(`val(split="test")`) and writes accuracy and macro F1 (from the test confusion matrix) to
`--result`. On the CPU Ultralytics loads batches in the training process (it sets workers=0).

Offline (checked with ultralytics 8.4.190, and under `unshare -n`, no network at all):
`YOLO_OFFLINE=1` (set by peers.py) makes its import-time online check (two DNS look-ups) answer
no without asking, which also keeps its analytics off; `plots=False` avoids the font download
that plotting needs; the AMP check (which downloads a model) only runs on CUDA. As a guarantee,
the socket layer is closed before ultralytics is imported: any connection or name lookup fails
and is listed in the result's `network_attempts` (none with the settings above; without
YOLO_OFFLINE, the two DNS look-ups). YOLO_CONFIG_DIR (set by peers.py) keeps its settings file
in the arm's folder, never the user's.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from pathlib import Path
from typing import Any

STARTED = time.monotonic()
ATTEMPTS: list[str] = []


def close_network() -> None:
    """Make every connection and name lookup fail, and remember who tried."""

    def refuse(what: str):  # type: ignore[no-untyped-def]
        def call(*args: Any, **kwargs: Any) -> Any:
            ATTEMPTS.append(f"{what}{args[1:2] if what == 'connect' else args[:1]}")
            raise OSError(f"peers bench: network closed ({what})")

        return call

    socket.socket.connect = refuse("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse("connect")  # type: ignore[method-assign]
    socket.getaddrinfo = refuse("getaddrinfo")
    socket.create_connection = refuse("create_connection")


def macro_f1(matrix: Any) -> float:
    """Macro F1 from a confusion matrix in either orientation (F1 = 2 tp / (predicted + true))."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    tp = np.diag(m)
    denominator = m.sum(0) + m.sum(1)
    return float(np.mean(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="root with train/ val/ test/")
    parser.add_argument("--train-seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True, help="Ultralytics' project folder")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--model", default="yolo11n-cls.yaml")
    parser.add_argument("--imgsz", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64, help="Ultralytics' default: 16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    close_network()
    import torch
    import ultralytics.utils.torch_utils as torch_utils
    from ultralytics import YOLO, __version__

    # select_device() resets torch's threads to min(8, cores - 1) for CPU training; pin ours.
    torch_utils.NUM_THREADS = args.threads
    torch.set_num_threads(args.threads)
    threads_seen: list[int] = []

    model = YOLO(args.model, task="classify")
    model.add_callback(
        "on_train_epoch_start", lambda _: threads_seen.append(torch.get_num_threads())
    )
    setup_s = time.monotonic() - STARTED
    train_start = time.monotonic()
    model.train(
        data=str(args.data),
        time=args.train_seconds / 3600,  # hours; overrides epochs
        epochs=1000,  # re-estimated from `time` after the first epoch
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",  # Ultralytics then loads batches in this process (it sets workers=0)
        pretrained=False,
        fliplr=0.0,  # a mirrored digit is another symbol (autoclf's spec does not flip either)
        plots=False,
        seed=args.seed,
        project=str(args.out),
        name="train",
        exist_ok=True,
        verbose=False,
    )
    trainer = model.trainer
    train_s = time.monotonic() - train_start
    best = Path(trainer.best)
    tested = YOLO(str(best), task="classify")
    metrics = tested.val(
        data=str(args.data),
        split="test",
        imgsz=args.imgsz,
        batch=args.batch,
        workers=0,
        device="cpu",
        plots=False,
        project=str(args.out),
        name="test",
        exist_ok=True,
        verbose=False,
    )
    result = {
        "accuracy": float(metrics.top1),
        "macro_f1": macro_f1(metrics.confusion_matrix.matrix),
        "n_test": int(metrics.confusion_matrix.matrix.sum()),
        "epochs": int(trainer.epoch) + 1,
        "best": best.name,
        "setup_s": setup_s,
        "train_s": train_s,
        "test_s": time.monotonic() - train_start - train_s,
        "threads": sorted(set(threads_seen)) or [torch.get_num_threads()],
        "network_attempts": ATTEMPTS,
        "ultralytics": __version__,
        "model": args.model,
        "imgsz": args.imgsz,
        "batch": args.batch,
    }
    args.result.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
