"""The data path at scale: first scan, cache bytes per image, and images/s delivered to the
training step against the bare model step, on a generated set of JPEGs.

Method. `--n-images` JPEGs (default 20,000; quality 90) are generated, seeded, into a temporary
folder (or `--data DIR`, reused when it already holds them): random crops of scikit-learn's two
sample photographs, so their texture and compressibility are a photograph's, at random sizes of
200-600 px a side, 10 classes each marked by a drawn shape. The generation is timed apart and
not part of any figure. Then, at `--image-size` (default 128) px RGB:

- first scan: `load_dataset` (discover, hash every file, split), then building each store:
  decode and resize every file (threads on every core), and for the shard store also compress;
- bytes per image of each store on disk, against the original files;
- the CPU one image takes to read, in this process (`time.process_time`, robust to a busy
  machine), and training batches (no augmentation, no model) delivered per second, for each way
  of reading: the in-memory array (`data.loading: memory`); the raw uint8 store memory-mapped
  and read by 2 DataLoader workers (`stream` below the machine's memory); the lossless WebP
  shard store read by 2 workers (`stream` above it); the original files decoded by 2 workers
  every epoch (no cache: the alternative rejected);
- the model: training steps (forward, backward, AdamW) on batches of 64 fed by each way of
  reading, each cell between two runs of the same steps over preloaded tensors (bare), in one
  process; `--models` (default resnet18, the named size, and mobilenetv3_small_100, the fastest
  ImageNet-class timm model: on a CPU, the one whose data path must be cheapest to keep up).

On a CPU the workers decode on the same cores as the model step, so the ratio fed/bare is the
share of the step's speed the data path leaves; on a GPU box the CPU per image, divided into its
cores, is what the workers can deliver.

Measured (2026-11, 2 cores shared with other sessions at a load of 4-13, so wall-clock figures
are noisy and only the CPU-time ones are steady; rerun on a quiet machine), 20,000 JPEGs of
40 KB:

                        128 px                            224 px
    store           KB/img  vs JPEGs  CPU ms/img      KB/img  vs JPEGs  CPU ms/img
    raw uint8         49.2     1.22       0.008        150.5     3.73       0.013
    WebP lossless     25.1     0.62       0.33-0.36     66.1     1.64       0.94
    originals            0     0          1.19-1.35        0     0          1.52
    JPEG q95 (lossy)   8.8     0.22       0.15-0.54     22.9     0.57       1.30

First scan at 128 px: hashing 3-4 s; raw store 28-82 s, shard store 38-150 s (the compression
runs in the same threads as the decoding: Pillow releases the GIL for both). JPEG q95 pixels
differ from the decoded ones by 2.75 levels on average (PSNR 35.0 dB) at 128 px, 2.04 (37.9 dB)
at 224 px. Data path alone at 128 px, 2 workers: memory 615-2049 img/s, memory-mapped
578-1643, shards 369-1050, originals 184-512. Training steps at 128 px fed by each way of
reading, over bare steps, were within the noise for resnet18 (bare 20-85 img/s here, 24-100 ms
of CPU an image: shards add 0.3-1.4% to that, originals 1-5%); for mobilenetv3_small_100 (bare
490 img/s in the first full run) memory 1.00, memory-mapped 0.99, shards 0.81, originals 0.54
in that run; in an 800-image run the step's CPU time (4.7 ms an image) predicted 0.93 for
shards and 0.81 for originals where the workers share the cores.

    python bench/data_scale.py [--n-images 20000] [--image-size 128] [--batches 40] [--steps 4]
        [--seconds 8] [--rounds 3] [--models resnet18,mobilenetv3_small_100] [--data DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl_clf.data import Decoding, load_dataset
from automl_clf.data import dataset as dataset_module
from automl_clf.data.batches import TrainBatches
from automl_clf.data.dataset import SplitArrays
from automl_clf.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from automl_clf.machine import usable_cpus
from automl_clf.spec import parse_spec

N_CLASSES = 10
BATCH = 64
WORKERS = 2


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)  # china.jpg and flower.jpg, 427 x 640


def _generate_part(job: tuple[Path, int, int]) -> None:
    """Images start..stop of the set: seeded per image, so any split into jobs gives one set."""
    root, start, stop = job
    photos = _photos()
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        photo = photos[i % len(photos)]
        scale = rng.uniform(0.4, 1.0)
        h, w = int(photo.shape[0] * scale), int(photo.shape[1] * scale)
        y, x = rng.integers(0, photo.shape[0] - h + 1), rng.integers(0, photo.shape[1] - w + 1)
        size = (int(rng.integers(200, 601)), int(rng.integers(200, 601)))
        image = Image.fromarray(photo[y : y + h, x : x + w]).resize(
            size, Image.Resampling.BILINEAR
        )
        label = i % N_CLASSES
        draw = ImageDraw.Draw(image)
        cx, cy, r = size[0] // 2, size[1] // 2, min(size) // 4
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = (cx - r, cy - r, cx + r, cy + r)
        if label % 5 == 0:
            draw.ellipse(box, outline=colour, width=6)
        elif label % 5 == 1:
            draw.rectangle(box, outline=colour, width=6)
        elif label % 5 == 2:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], outline=colour)
        elif label % 5 == 3:
            draw.line((cx - r, cy - r, cx + r, cy + r), fill=colour, width=8)
        else:
            draw.line((cx - r, cy, cx + r, cy), fill=colour, width=8)
        if label >= 5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.jpg", quality=90)


def generate(root: Path, n: int) -> float:
    """Write the set into `root` (skipped when a previous run left it there); seconds taken."""
    marker = root / f".generated-{n}"
    if marker.exists():
        return 0.0
    started = time.perf_counter()
    step = 250
    jobs = [(root, s, min(n, s + step)) for s in range(0, n, step)]
    with get_context("spawn").Pool(usable_cpus()) as pool:
        pool.map(_generate_part, jobs)
    marker.touch()
    return time.perf_counter() - started


class FileRows:
    """The original files, decoded with the run's `Decoding` every time they are read."""

    def __init__(self, paths: tuple[Path, ...], decoding: Decoding) -> None:
        self.paths, self.decoding = paths, decoding

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: Any) -> np.ndarray:
        picked = np.arange(len(self.paths))[index]
        if np.ndim(picked) == 0:
            return self.decoding.load_file(self.paths[int(picked)])
        return np.stack([self.decoding.load_file(self.paths[int(i)]) for i in picked])


def data_spec(root: Path, cache: Path, size: int, loading: str) -> Any:
    raw = {"root": str(root), "image_size": size, "channels": 3, "loading": loading}
    return parse_spec({"data": {**raw, "cache_dir": str(cache)}}, base_dir=root).data


def folder_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern))


def batches_per_second(batches: TrainBatches, n: int) -> float:
    """Batches of the first epoch delivered per second, after those the workers prefetched
    while starting."""
    stream = batches.epoch(1)
    for _ in range(2 * WORKERS + 1):  # DataLoader's default prefetch: 2 batches a worker
        next(stream)
    started = time.perf_counter()
    done = 0
    for _ in stream:
        done += 1
        if done == n:
            break
    return done / (time.perf_counter() - started)


def cpu_ms_per_image(pixels: Any, n: int) -> float:
    """CPU time (this process, one thread) to read `n` training images one by one, per image."""
    started = time.process_time()
    for i in range(n):
        pixels[np.asarray([i])]
    return (time.process_time() - started) / n * 1e3


def step_images_per_second(
    model: torch.nn.Module, batches: Any, steps: int, seconds: float, warmup: int = 1
) -> float:
    """Training steps on batches from `batches` (an iterator of (x, y)): after `warmup` steps
    (every worker started and delivering), at least `steps` of them and `seconds` long."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    started, cpu, done = 0.0, 0.0, -warmup
    for x, y in batches:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 1
        if done == 0:
            started, cpu = time.perf_counter(), time.process_time()
        elif done >= steps and time.perf_counter() - started >= seconds:
            break
    STEP_CPU_MS.append((time.process_time() - cpu) / (done * BATCH) * 1e3)
    return done * BATCH / (time.perf_counter() - started)


STEP_CPU_MS: list[float] = []  # CPU time (all threads) per image of each bare measurement


def lossy_reference(pixels: np.ndarray) -> str:
    """JPEG q95 of decoded pixels (what lossy shards would hold): bytes, decode, difference."""
    sizes, diffs, worst, psnr, seconds = [], [], 0, [], 0.0
    for image in pixels:
        out = io.BytesIO()
        Image.fromarray(image).save(out, "JPEG", quality=95)
        started = time.perf_counter()
        back = np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
        seconds += time.perf_counter() - started
        delta = back.astype(np.int16) - image
        sizes.append(len(out.getvalue()))
        diffs.append(np.abs(delta).mean())
        worst = max(worst, int(np.abs(delta).max()))
        psnr.append(10 * np.log10(255**2 / max((delta.astype(np.float64) ** 2).mean(), 1e-9)))
    return (
        f"JPEG q95 shards (rejected; {len(pixels)} images): {np.mean(sizes) / 1e3:.1f} KB/img, "
        f"decode {seconds / len(pixels) * 1e3:.2f} ms/img, pixels differ from predict's by "
        f"{np.mean(diffs):.2f} levels on average, {worst} at worst, PSNR {np.mean(psnr):.1f} dB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=20_000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=40, help="timed, data path alone")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per cell, at least")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed per cell, at least")
    parser.add_argument("--rounds", type=int, default=3, help="alternating; medians reported")
    parser.add_argument("--models", default="resnet18,mobilenetv3_small_100")
    parser.add_argument("--data", type=Path, help="generate (or reuse) the JPEGs here")
    args = parser.parse_args()
    size = args.image_size
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.data or Path(tmp) / "jpegs").resolve()
        cache = Path(tmp) / "cache"
        generated = generate(root, args.n_images)
        bench_started = time.perf_counter()
        files = sorted(root.rglob("*.jpg"))
        original = sum(p.stat().st_size for p in files) / len(files)
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} cores; {len(files):,} JPEGs of 200-600 px, "
            f"{original / 1e3:.1f} KB each on average, generated in {generated:.0f} s "
            "(0: reused; not counted); decoded to "
            f"{size} px RGB; batches of {BATCH}, {WORKERS} DataLoader workers"
        )

        started = time.perf_counter()
        memory = load_dataset(data_spec(root, cache, size, "memory"))
        hashed = time.perf_counter() - started
        n = sum(len(s) for s in memory.splits.by_name().values())
        print(f"first scan: discover, hash and split {n:,} files: {hashed:.1f} s")
        decoding = Decoding.of(memory.spec)
        started = time.perf_counter()
        in_memory = memory.arrays(decoding)
        built_raw = time.perf_counter() - started
        # The same set streamed: memory-mapped (it is smaller than this machine's memory), and
        # as shards, the storage of a set larger than memory (`RAW_SHARE` set to say it is).
        mapped = load_dataset(data_spec(root, cache, size, "stream")).arrays(decoding)
        dataset_module.RAW_SHARE = 0.0
        started = time.perf_counter()
        sharded = load_dataset(data_spec(root, cache, size, "stream")).arrays(decoding)
        built_shards = time.perf_counter() - started
        raw_bytes = folder_bytes(cache / "decoded", "pixels-*.npy") / n
        shard_bytes = folder_bytes(cache / "encoded", "shard-*") / n
        print(
            f"  then decode + resize into the raw uint8 store: {built_raw:.1f} s "
            f"({n / built_raw:.0f} img/s); decode + resize + compress into the WebP shard "
            f"store: {built_shards:.1f} s ({n / built_shards:.0f} img/s)"
        )

        pre = Preprocessing(decoding=decoding, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        train = in_memory["train"]
        files_read = FileRows(train.paths, decoding)
        paths: dict[str, SplitArrays] = {
            "memory": train,
            "raw memmap": mapped["train"],
            "WebP shards": sharded["train"],
            "originals": SplitArrays(files_read, train.labels, train.paths),  # type: ignore[arg-type]
        }
        same = all(
            np.array_equal(p.pixels[np.arange(50)], train.pixels[:50]) for p in paths.values()
        )
        stored = {
            "memory": raw_bytes,
            "raw memmap": raw_bytes,
            "WebP shards": shard_bytes,
            "originals": 0.0,
        }

        def make(name: str) -> TrainBatches:
            workers = 0 if name == "memory" else WORKERS
            return TrainBatches(
                paths[name], BATCH, pre, [], 0, n_classes=N_CLASSES, workers=workers
            )

        cpu = {name: cpu_ms_per_image(p.pixels, 300) for name, p in paths.items()}
        alone = {}
        for name in paths:
            batches = make(name)
            try:
                alone[name] = batches_per_second(batches, args.batches) * BATCH
            finally:
                batches.close()
        print(
            f"first 50 training images identical in all four ways of reading: {same}\n"
            f"{'way of reading':<14} {'cache KB/img':>12} {'vs originals':>12} "
            f"{'CPU ms/img':>10} {'data path alone img/s':>22}"
        )
        for name in paths:
            print(
                f"{name:<14} {stored[name] / 1e3:>12.1f} {stored[name] / original:>12.2f} "
                f"{cpu[name]:>10.3f} {alone[name]:>22.0f}"
            )
        sample = np.asarray(train.pixels[: min(500, len(train))])
        print(lossy_reference(sample))

        models = [m for m in args.models.split(",") if m]
        if models:
            fixed = pre.to_tensor(sample[: 8 * BATCH])
            model_table(models, paths, make, fixed, train, cpu, args)
        print(f"\nbench: {time.perf_counter() - bench_started:.0f} s after the generation")


def model_table(
    models: list[str],
    paths: dict[str, SplitArrays],
    make: Any,
    fixed: torch.Tensor,
    train: SplitArrays,
    cpu: dict[str, float],
    args: argparse.Namespace,
) -> None:
    """Training steps fed by each way of reading, each between two bare measurements; then
    what CPU time alone predicts where the data path shares the cores with the step: the
    step's CPU per image over that plus the reading's (robust to a busy machine; leaves out
    the workers' hand-over of batches)."""
    import timm

    labels = torch.from_numpy(train.labels[: len(fixed)])
    print(
        f"\ntraining step, img/s (median of {args.rounds} rounds; each cell at least "
        f"{args.steps} steps and {args.seconds:.0f} s, timed once every worker delivers; in "
        "brackets, the median ratio to the bare steps measured just before and after it), "
        f"{args.image_size} px"
    )
    print(f"{'model':<24} {'bare':>7} " + " ".join(f"{name:>18}" for name in paths))
    for model_name in models:
        torch.manual_seed(0)
        model = timm.create_model(model_name, num_classes=N_CLASSES)

        def bare() -> Any:
            order = torch.Generator().manual_seed(0)
            while True:
                index = torch.randint(0, len(labels), (BATCH,), generator=order)
                yield fixed[index], labels[index]

        bares: list[float] = []
        bare_cpu: list[float] = []  # the step's CPU time per image, all threads
        rates: dict[str, list[float]] = {name: [] for name in paths}
        ratios: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            before = step_images_per_second(model, bare(), args.steps, args.seconds)
            bare_cpu.append(STEP_CPU_MS[-1])
            bares.append(before)
            for name in paths:
                batches = make(name)
                try:
                    warmup = 1 if batches.loader is None else WORKERS + 1
                    rate = step_images_per_second(
                        model, batches.epoch(1), args.steps, args.seconds, warmup
                    )
                finally:
                    batches.close()
                after = step_images_per_second(model, bare(), args.steps, args.seconds)
                bare_cpu.append(STEP_CPU_MS[-1])
                bares.append(after)
                rates[name].append(rate)
                ratios[name].append(rate / ((before + after) / 2))
                before = after
        cells = [
            f"{statistics.median(rates[n]):>9.1f} ({statistics.median(ratios[n]):>4.2f})"
            for n in paths
        ]
        print(
            f"{model_name:<24} {statistics.median(bares):>7.1f} "
            + " ".join(f"{c:>18}" for c in cells)
        )
        step_ms = statistics.median(bare_cpu)
        shares = [step_ms / (step_ms + cpu[n]) for n in paths]
        print(
            f"{'  from CPU time':<24} {step_ms:>4.1f} ms "
            + " ".join(f"{share:>18.3f}" for share in shares)
        )


if __name__ == "__main__":
    main()
