"""Build the network a trial config names, and say what its input must look like: one factory
for autoclf's own backbones (models/registry.py; the plain CNN, `cnn`) and every timm model.

Every model leaves here with exactly `n_classes` logit outputs for the trial's input size, checked
by one forward pass, so a wrong final layer or an image too small for a backbone is caught
before training, with a message that says which.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl_clf.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from automl_clf.errors import SpecError, TrialFailed
from automl_clf.models import cnn as _cnn  # noqa: F401  (registers the backbone `cnn`)
from automl_clf.models.registry import BACKBONES
from automl_clf.spec.config import ModelConfig
from automl_clf.spec.models import PRETRAINED_CACHE, Spec
from automl_clf.spec.space import candidate_values


def build_model(
    cfg: ModelConfig,
    *,
    n_classes: int,
    in_chans: int,
    image_size: int,
    load_pretrained: bool = True,
) -> nn.Module:
    """A freshly initialised (or locally pretrained) model with n_classes logit outputs.

    Args:
        load_pretrained: False when the caller loads a full state dict next (e.g. an export), so
            the pretrained file need not exist on the machine that predicts.
    """
    kwargs: dict[str, Any] = {"num_classes": n_classes, "in_chans": in_chans}
    kwargs["drop_rate"] = cfg.dropout
    if cfg.cnn is not None:  # the plain CNN's own architecture, sized for the images
        kwargs |= {"model_cfg": cfg.cnn, "img_size": image_size}
    weights = _weights_file(cfg) if cfg.pretrained is not None and load_pretrained else None
    model = create_backbone(cfg.backbone, weights, **kwargs)
    check_output_shape(model, cfg.backbone, n_classes, in_chans, image_size)
    return model


def create_backbone(name: str, weights: Path | None = None, **kwargs: Any) -> nn.Module:
    """The backbone `name` (ours, else timm's) built with timm's keyword arguments, its weights
    loaded from the local file `weights` when given."""
    if name in BACKBONES:
        if weights is not None:
            raise TrialFailed(f"backbone {name!r} has no pretrained weights to load {weights}")
        return BACKBONES[name].create(**kwargs)
    import timm

    if weights is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    # timm reads .safetensors, or torch files with weights_only=True (no code runs); it adapts
    # the stem to in_chans and drops a classifier of another size. Its log notes on doing so
    # would repeat once per trial: keep them out of the progress display.
    timm_log = logging.getLogger("timm")
    level = timm_log.level
    timm_log.setLevel(logging.ERROR)
    try:
        return timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"file": str(weights)}, **kwargs
        )
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise TrialFailed(
            f"cannot load weights {weights} into {name!r}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        timm_log.setLevel(level)


def _weights_file(cfg: ModelConfig) -> Path:
    """The local file `model.pretrained` names (`cache`: timm's own weights, cached here)."""
    assert cfg.pretrained is not None
    if cfg.pretrained == PRETRAINED_CACHE:
        return cached_pretrained_file(cfg.backbone)
    path = Path(cfg.pretrained)
    if not path.is_file():
        raise TrialFailed(f"pretrained weights file not found: {path}")
    return path


def backbone_mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The per-channel mean and std (RGB, [0, 1] scale) the backbone's pretrained weights
    expect, from its pretrained config (timm's `PretrainedCfg`, or ours): ImageNet's for most,
    0.5/0.5 for some, ImageNet's for a timm model without a config; None for a backbone
    without pretrained weights (the plain CNN), which expects nothing."""
    if name in BACKBONES:
        own = BACKBONES[name]
        return None if own.mean is None or own.std is None else (own.mean, own.std)
    import timm

    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


def cached_pretrained_file(backbone: str) -> Path:
    """timm's default weights for `backbone`, from the local caches only (never downloaded).

    Looks in the Hugging Face cache (where timm puts hub weights) and torch hub's checkpoint
    folder (older URL weights).
    """
    import huggingface_hub
    import timm

    cfg = timm.get_pretrained_cfg(backbone)
    if cfg is None:
        raise TrialFailed(f"timm has no pretrained weights for {backbone!r}")
    looked = []
    if cfg.hf_hub_id:
        for filename in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin"):
            if filename:
                found = huggingface_hub.try_to_load_from_cache(cfg.hf_hub_id, filename)
                if isinstance(found, str):
                    return Path(found)
        looked.append(f"the Hugging Face cache ({cfg.hf_hub_id})")
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / str(cfg.url).rsplit("/", 1)[-1]
        if path.is_file():
            return path
        looked.append(str(path))
    raise TrialFailed(
        f"pretrained weights for {backbone!r} are not on this machine (looked in "
        f"{' and '.join(looked) or 'no known place'}); autoclf never downloads: copy the "
        "weights file here and set model.pretrained to its path"
    )


def check_backbones(spec: Spec) -> None:
    """Every backbone the spec can pick builds for its images: a SpecError naming those that
    cannot, before any trial is spent on them."""
    problems = []
    for name in candidate_values(spec.model.backbone):
        if name in BACKBONES:
            continue  # ours fit any size by construction (the plain CNN stops pooling at 1 px)
        cfg = ModelConfig.plain_timm(str(name))
        try:
            build_model(
                cfg, n_classes=2, in_chans=spec.data.channels, image_size=spec.data.image_size
            )
            if spec.model.pretrained == PRETRAINED_CACHE:
                cached_pretrained_file(str(name))
        except TrialFailed as exc:
            problems.append(str(exc))
    if problems:
        raise SpecError("model.backbone: " + "; ".join(problems))


def check_output_shape(
    model: nn.Module, backbone: str, n_classes: int, in_chans: int, image_size: int
) -> None:
    """One forward pass of a tiny batch on the CPU: (2, n_classes) logits, or a clear error."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, in_chans, image_size, image_size))
    except (RuntimeError, AssertionError, ValueError) as exc:  # timm asserts on input sizes
        raise TrialFailed(
            f"backbone {backbone!r} cannot process {image_size}×{image_size} px images "
            f"({str(exc).splitlines()[0]}); raise data.image_size or choose another backbone"
        ) from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, n_classes):
        raise TrialFailed(
            f"backbone {backbone!r} gave outputs of shape {tuple(out.shape)}, expected "
            f"(2, {n_classes}) logits"
        )


LATENCY_THREADS = 1  # CPU threads while timing: batch-1 latency with 2 threads was ~9× worse here
LATENCY_WARMUP_S = 0.02  # seconds of untimed runs first (allocator, kernels, caches)
LATENCY_RUNS = (15, 200)  # at least / at most this many timed runs …
LATENCY_BUDGET_S = 0.2  # … stopping once this many seconds were spent timing


def measure_latency_ms(
    model: nn.Module, in_chans: int, image_size: int, device: torch.device
) -> float:
    """Median wall time of one forward pass of a single image on `device`, in milliseconds.

    One method for trials and exports, so the two numbers agree within noise: eval mode and
    inference mode, `LATENCY_THREADS` CPU threads (the thread count is part of the number: batch-1
    inference on a small model is slower with more threads on a busy machine), a warm-up, then the
    median of `LATENCY_RUNS` timed runs bounded by `LATENCY_BUDGET_S`.
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_chans, image_size, image_size, device=device)
    threads = torch.get_num_threads()
    torch.set_num_threads(LATENCY_THREADS)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    try:
        with torch.inference_mode():
            warm = time.perf_counter() + LATENCY_WARMUP_S
            for _ in range(3):
                once()
            while time.perf_counter() < warm:
                once()
            times: list[float] = []
            stop = time.perf_counter() + LATENCY_BUDGET_S
            while len(times) < LATENCY_RUNS[0] or (
                len(times) < LATENCY_RUNS[1] and time.perf_counter() < stop
            ):
                times.append(once())
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    return 1000.0 * statistics.median(times)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def is_backbone(name: str) -> bool:
    """Whether `name` is one of our backbones or a timm model."""
    if name in BACKBONES:
        return True
    import timm

    return bool(timm.is_model(name))


def list_backbones(pattern: str = "*") -> list[str]:
    """Our backbones (`cnn`), then every timm model, whose names match the shell-style
    pattern."""
    import fnmatch

    import timm

    own = [name for name in BACKBONES if fnmatch.fnmatch(name, pattern)]
    return own + list(timm.list_models(pattern))
