"""Does a trial keep the GPU busy? Images/s of autoclf's full trial loop against a bare PyTorch
loop on the same model, and the device's utilisation while each runs.

Per case (model, image size) and augmentation policy, two sides doing the same work: `--epochs`
epochs over the digits' training split, a validation pass after each epoch, timed from the first
line of setup to the last result on the host:

- trial: `automl_clf.train.train_config`, the path every search trial takes (seed, statistics,
  preprocessing, model, batches with the policy's augmentation on the device, `fit` with its
  per-step checks, validation, and the latency measurement at the end);
- bare: the same model (autoclf's factory), optimizer (AdamW, same lr and weight decay), batch
  size and precision (on CUDA: bf16 autocast, else fp16 with loss scaling, and channels_last, as
  the trainer) over normalised tensors preloaded on the device, with no host sync until the end.

images/s = training images × epochs / wall seconds (both sides' validation is in the time).
Utilisation, on CUDA: NVML's `utilization.gpu`, the share of each sample period (1/6 s to 1 s,
the driver's choice) in which any kernel ran — busy, not how full the SMs were — sampled every
0.2 s in a thread through pynvml (`torch.cuda.utilization`) when it is installed, else a
`nvidia-smi -lms 200` stream; the header names the source. On the CPU: process CPU time / wall
time, i.e. cores busy. Data decoding is warmed up and shared (one decode per process, as in a
search), so neither side pays it.

The sides alternate over `--rounds` and medians are reported, as in bench/throughput.py: only
ratios measured in one process mean much on a shared machine.

    python bench/gpu.py                   # CUDA when present: cnn @ 32 px, resnet18 @ 224 px
    python bench/gpu.py --device cpu      # small: cnn and resnet18 @ 32 px, 20 images per digit

Evidence so far: CPU only (no GPU figures exist yet); see README, Benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl_clf.data import load_dataset
from automl_clf.data.dataset import pixels_for_stats
from automl_clf.data.preprocess import Decoding, build_preprocessing, mean_std
from automl_clf.datasets import write_digits
from automl_clf.models.factory import build_model
from automl_clf.spec import FixedParams, parse_spec, resolve
from automl_clf.spec.config import TrialConfig
from automl_clf.train import train_config

# Per device: (backbone, image px) cases, images per digit (None: all ~180), epochs, rounds.
DEFAULTS: dict[str, dict[str, Any]] = {
    "cuda": {"cases": "cnn:32,resnet18:224", "per_class": None, "epochs": 5, "rounds": 5},
    "cpu": {"cases": "cnn:32,resnet18:32", "per_class": 20, "epochs": 2, "rounds": 3},
}
VAL_BATCH = 256  # images per validation forward pass (the trainer's EVAL_BATCH_SIZE)
SAMPLE_S = 0.2  # seconds between utilisation samples


def make_config(
    root: Path, backbone: str, size: int, policy: str, args: argparse.Namespace
) -> tuple[TrialConfig, Any]:
    raw = {
        "data": {
            "root": str(root),
            "image_size": size,
            "channels": 3,
            "split": {"val": 0.15, "test": 0.15},
        },
        "model": {"backbone": backbone, "dropout": 0.1, "cnn": {"filters": [32, 64]}},
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": 1e-3,
            "schedule": "constant",
            "early_stopping_patience": None,
            "device": args.device,
        },
        "augment": {"policy": policy},
    }
    spec = parse_spec(raw, base_dir=root)
    return resolve(spec, FixedParams({})), load_dataset(spec.data)


def trial_run(config: TrialConfig, dataset: Any, epochs: int) -> int:
    """The full trial loop; returns the training images seen."""
    trained = train_config(config, dataset, max_epochs=epochs)
    n_train = len(dataset.arrays(Decoding.of(config.data))["train"])
    return trained.fit.epochs_run * n_train


def bare_run(config: TrialConfig, dataset: Any, epochs: int) -> int:
    """A hand-written loop on the same model over tensors preloaded on the device."""
    device = torch.device(config.train.device)
    splits = dataset.arrays(Decoding.of(config.data))
    train, val = splits["train"], splits["val"]
    pre = build_preprocessing(
        config.data, config.model.backbone, mean_std(pixels_for_stats(train.pixels))
    )
    torch.manual_seed(config.train.seed)
    model = build_model(
        config.model,
        n_classes=dataset.n_classes,
        in_chans=config.data.channels,
        image_size=config.data.image_size,
    ).to(device)
    amp = device.type == "cuda" and config.train.mixed_precision
    dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dtype == torch.float16)
    layout = torch.channels_last if amp else torch.contiguous_format
    if amp:
        model.to(memory_format=torch.channels_last)
    images = pre.to_tensor(train.pixels).to(device).contiguous(memory_format=layout)
    labels = torch.from_numpy(train.labels).to(device)
    val_images = pre.to_tensor(val.pixels).to(device).contiguous(memory_format=layout)

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=dtype) if amp else contextlib.nullcontext()

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss()
    batch, n = config.train.batch_size, len(labels)
    outputs = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, device=device)
        for start in range(0, n - 1, batch):  # a last batch of one image is dropped
            index = order[start : start + batch]
            with autocast():
                loss = loss_fn(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        model.eval()
        with torch.inference_mode(), autocast():
            outputs = [
                model(val_images[i : i + VAL_BATCH]).float().softmax(1)
                for i in range(0, len(val_images), VAL_BATCH)
            ]
    torch.cat(outputs).cpu()  # the one host sync: the last validation's probabilities
    return epochs * n


@dataclass
class Busy:
    """How busy the device was during one `Meter.during` block."""

    samples: list[float] = field(default_factory=list)
    value: float = float("nan")  # GPU: mean % of the samples; CPU: cores busy


class Meter:
    """Utilisation of `device` over a block: sampled GPU busy % on CUDA, cores busy on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.unit, self.source, self._smi_id = "cores", "process CPU time / wall time", ""
        if device.type != "cuda":
            return
        self.unit = "GPU %"
        try:
            torch.cuda.utilization(device)  # needs pynvml (nvidia-ml-py)
            self.source = "NVML utilization.gpu via pynvml, every 0.2 s"
            return
        except Exception as exc:  # ModuleNotFoundError, or NVML's own errors
            missing = f"pynvml: {type(exc).__name__}"
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        self._smi_id = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        probe = self._smi(["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"])
        if probe is None:
            self.source = f"unavailable ({missing}; nvidia-smi could not read the GPU)"
            self._smi_id = ""
        else:
            self.source = f"NVML utilization.gpu via nvidia-smi -lms 200 ({missing})"

    def _smi(self, query: list[str]) -> str | None:
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return None
        done = subprocess.run(
            [smi, *query, "-i", self._smi_id], capture_output=True, text=True, check=False
        )
        return done.stdout if done.returncode == 0 else None

    @contextlib.contextmanager
    def during(self) -> Iterator[Busy]:
        busy = Busy()
        if self.device.type != "cuda":
            cpu, wall = time.process_time(), time.perf_counter()
            yield busy
            busy.value = (time.process_time() - cpu) / (time.perf_counter() - wall)
            return
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(busy, stop), daemon=True)
        sampler.start()
        try:
            yield busy
        finally:
            stop.set()
            sampler.join()
            if busy.samples:
                busy.value = statistics.fmean(busy.samples)

    def _sample(self, busy: Busy, stop: threading.Event) -> None:
        if "pynvml" in self.source:
            while not stop.wait(SAMPLE_S):
                busy.samples.append(float(torch.cuda.utilization(self.device)))
            return
        if not self._smi_id:
            return
        smi = shutil.which("nvidia-smi") or "nvidia-smi"
        query = ["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        stream = subprocess.Popen(
            [smi, *query, "-i", self._smi_id, "-lms", str(int(SAMPLE_S * 1000))],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

        def read() -> None:
            for line in stream.stdout or []:
                with contextlib.suppress(ValueError):  # a "[N/A]" or a blank line
                    busy.samples.append(float(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        stop.wait()
        stream.terminate()
        stream.wait()
        reader.join(timeout=5)


def timed(
    run: Callable[[TrialConfig, Any, int], int],
    config: TrialConfig,
    dataset: Any,
    epochs: int,
    meter: Meter,
) -> tuple[float, float]:
    """(images/s, utilisation) of one run of `run`."""
    with meter.during() as busy:
        started = time.perf_counter()
        n_images = run(config, dataset, epochs)
        if meter.device.type == "cuda":
            torch.cuda.synchronize(meter.device)
        seconds = time.perf_counter() - started
    return n_images / seconds, busy.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--cases", help="backbone:px,… (default: per device, see the header)")
    parser.add_argument("--policies", default="none,light", help="augmentation policies")
    parser.add_argument("--per-class", type=int, help="images per digit (default: per device)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    defaults = DEFAULTS[args.device]
    for name in ("cases", "per_class", "epochs", "rounds"):
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])
    cases = [(b, int(px)) for b, px in (case.split(":") for case in args.cases.split(","))]
    device = torch.device(args.device)
    meter = Meter(device)
    with tempfile.TemporaryDirectory(prefix="autoclf-gpu-bench-") as tmp:
        root = write_digits(Path(tmp) / "digits", per_class=args.per_class)
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        precision = "bf16/fp16 autocast + channels_last" if device.type == "cuda" else "fp32"
        print(
            f"torch {torch.__version__}, {args.device} ({where}), {precision}, "
            f"{torch.get_num_threads()} CPU threads\n"
            f"utilisation: {meter.source}\n"
            f"{args.rounds} rounds × {args.epochs} epochs, batch {args.batch_size}, digits "
            f"({args.per_class or 'all'} per class, 3 channels), validation after each epoch"
        )
        print(
            f"{'model':<10} {'px':>4} {'policy':<6} {'trial img/s':>11} {'bare img/s':>10} "
            f"{'ratio':>6} {'trial ' + meter.unit:>11} {'bare ' + meter.unit:>10}  round ratios"
        )
        for backbone, size in cases:
            for policy in args.policies.split(","):
                config, dataset = make_config(root, backbone, size, policy, args)
                n_train = len(dataset.arrays(Decoding.of(config.data))["train"])  # decode once
                trial_run(config, dataset, 1)  # warm-up: allocator, kernels, lazy imports
                bare_run(config, dataset, 1)
                rows: dict[str, list[tuple[float, float]]] = {"trial": [], "bare": []}
                for round_ in range(args.rounds):
                    order = ("trial", "bare") if round_ % 2 == 0 else ("bare", "trial")
                    for side in order:
                        run = trial_run if side == "trial" else bare_run
                        rows[side].append(timed(run, config, dataset, args.epochs, meter))
                ratios = [t[0] / b[0] for t, b in zip(rows["trial"], rows["bare"], strict=True)]
                trial_rate, bare_rate = (statistics.median(r[0] for r in rows[s]) for s in rows)
                trial_busy, bare_busy = (statistics.median(r[1] for r in rows[s]) for s in rows)
                print(
                    f"{backbone:<10} {size:>4} {policy:<6} {trial_rate:>11.0f} {bare_rate:>10.0f} "
                    f"{statistics.median(ratios):>6.3f} {trial_busy:>11.1f} {bare_busy:>10.1f}  "
                    f"{', '.join(f'{r:.2f}' for r in ratios)}  ({n_train} train images)"
                )


if __name__ == "__main__":
    main()
