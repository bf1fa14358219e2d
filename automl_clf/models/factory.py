"""Build the network a trial config names, and say what its input must look like: one factory
for autoclf's own backbones (models/registry.py; the plain CNN, `cnn`) and every timm model, at
the spec's image size, from random or pretrained weights (models/pretrained.py).

Every model leaves here with exactly `n_classes` logit outputs for the trial's input size, checked
by one forward pass, so a wrong final layer or an image too small for a backbone is caught
before training, with a message that says which. `check_backbones` does all of it for every
backbone a spec can pick before the first trial, pretrained weights included.
"""

from __future__ import annotations

import importlib
import logging
import statistics
import time
import warnings
from pickle import UnpicklingError
from typing import Any

import torch
from torch import nn

from automl_clf.errors import SpecError, TrialFailed, WeightsUnavailable
from automl_clf.models.pretrained import Weights, find_weights, first_line
from automl_clf.models.registry import BACKBONES, OWN_BACKBONES
from automl_clf.spec.config import ModelConfig
from automl_clf.spec.models import Spec
from automl_clf.spec.space import candidate_values

for _module in OWN_BACKBONES.values():  # each registers its backbone (`cnn`: models/cnn.py)
    importlib.import_module(_module)


def build_model(
    cfg: ModelConfig,
    *,
    n_classes: int,
    in_chans: int,
    image_size: int,
    load_pretrained: bool = True,
) -> nn.Module:
    """A freshly initialised (or pretrained) model with n_classes logit outputs for
    image_size px images.

    Args:
        load_pretrained: False when the caller loads a full state dict next (e.g. an export), so
            the pretrained weights need not be on the machine that predicts.
    """
    kwargs: dict[str, Any] = {"num_classes": n_classes, "in_chans": in_chans}
    kwargs["drop_rate"] = cfg.dropout
    if cfg.cnn is not None:  # the plain CNN's own architecture
        kwargs["model_cfg"] = cfg.cnn
    weights = None
    if cfg.pretrained is not None and load_pretrained:
        weights = find_weights(cfg.backbone, cfg.pretrained)
    model = create_backbone(cfg.backbone, weights, image_size=image_size, **kwargs)
    check_output_shape(model, cfg.backbone, n_classes, in_chans, image_size)
    return model


def create_backbone(
    name: str, weights: Weights | None = None, *, image_size: int, **kwargs: Any
) -> nn.Module:
    """The backbone `name` (ours, else timm's) for image_size px images, built with timm's
    keyword arguments, starting from `weights` when given.

    A timm model whose pretrained config says its input size is fixed (ViT, Swin, DeiT, …) is
    built for the images (`img_size`), as timm's own `resolve_model_input_args` does; every
    such timm 1.0.31 model takes the argument (all 1,371 checked), and its pretrained position
    embeddings are resampled to the new size while loading. Any other model takes any size.
    """
    if name in BACKBONES:
        if weights is not None:
            raise TrialFailed(f"backbone {name!r} has no pretrained weights to load")
        own = BACKBONES[name]
        model = own.create(img_size=image_size, **kwargs)
        if own.mean is not None and own.std is not None:  # its pretrained config, as timm's
            model.__dict__["pretrained_cfg"] = {"mean": own.mean, "std": own.std}
        return model
    import timm

    if _fixed_input_size(name):
        kwargs["img_size"] = image_size
    if weights is None:
        try:
            return timm.create_model(name, pretrained=False, **kwargs)
        except _SIZE_ERRORS as exc:  # e.g. relative-position tables sized from the image
            raise too_small(name, image_size, exc) from None
    # timm's log notes on adapting the stem and dropping the classifier would repeat once per
    # trial: keep them out of the progress display.
    timm_log = logging.getLogger("timm")
    level = timm_log.level
    timm_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # its note on a pickle's protocol: the error says more
            warnings.filterwarnings("ignore", module=r"torch\._weights_only_unpickler")
            return timm.create_model(
                weights.model_name,
                pretrained=True,
                pretrained_cfg=weights.pretrained_cfg,
                pretrained_cfg_overlay={"file": str(weights.file)},
                **kwargs,
            )
    except _LOAD_ERRORS as exc:
        reason = " ".join(str(exc).split())[:300]  # torch's state-dict errors span lines
        if _refused_pickle(exc):  # torch's advice (weights_only=False) autoclf never takes
            reason = REFUSED_PICKLE
        raise TrialFailed(
            f"cannot load pretrained weights {weights.source} into {name!r} at {image_size} px: "
            f"{reason}"
        ) from None
    finally:
        timm_log.setLevel(level)


REFUSED_PICKLE = (
    "the file is a pickle that names Python objects besides tensors, and autoclf never "
    "unpickles those (loading them can run any code); where the weights were made, save them "
    "as safetensors: safetensors.torch.save_file(model.state_dict(), 'weights.safetensors'), "
    "and give model.pretrained that file"
)


def _refused_pickle(exc: BaseException | None) -> bool:
    """Whether torch's weights-only unpickler refused the file, as `exc` or its cause (timm
    raises a RuntimeError from it)."""
    while exc is not None:
        if isinstance(exc, UnpicklingError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# What building or running a network for an image size it cannot take raises: torch's shape
# errors, timm's asserts, a window or grid size computed as zero.
_SIZE_ERRORS = (RuntimeError, AssertionError, ValueError, ArithmeticError)
# What loading a weights file into a network raises: missing or misshapen tensors, an unreadable
# or foreign file (torch's weights_only unpickler, safetensors).
_LOAD_ERRORS = (RuntimeError, KeyError, ValueError, OSError, AssertionError, UnpicklingError)


def _fixed_input_size(name: str) -> bool:
    """Whether timm's pretrained config for `name` says its input size is built in."""
    import timm

    cfg = timm.get_pretrained_cfg(name, allow_unregistered=True)
    return bool(cfg is not None and cfg.fixed_input_size)


def model_mean_std(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The per-channel mean and std (RGB, [0, 1] scale) the model's weights expect, from the
    pretrained config that travels with it (`model.pretrained_cfg`, resolved by timm's
    `resolve_model_data_config`): its loaded weights' config, or for random weights the config
    of the backbone's default pretrained weights; None for a model without one (the plain CNN),
    which expects nothing."""
    if not getattr(model, "pretrained_cfg", None):
        return None
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(model)
    return tuple(float(m) for m in config["mean"]), tuple(float(s) for s in config["std"])


def backbone_mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """`model_mean_std` of the backbone `name` without pretrained weights loaded, for a caller
    that has no model yet: ours from the registry, timm's from the model built on the meta
    device (no memory, no weights)."""
    if name in BACKBONES:
        own = BACKBONES[name]
        return None if own.mean is None or own.std is None else (own.mean, own.std)
    import timm

    return model_mean_std(timm.create_model(name, device="meta"))


def check_backbones(spec: Spec) -> None:
    """Before the first trial: every backbone the spec can pick builds for its images and,
    when the spec asks for pretrained weights, loads them as a trial will (fetching them into
    the local cache here, once).

    Raises:
        WeightsUnavailable: weights neither cached nor downloadable, for each such backbone.
        SpecError: the backbones that cannot take the images or their weights, with reasons.
    """
    problems, missing = [], []
    for name in candidate_values(spec.model.backbone):
        if name in BACKBONES:
            continue  # ours fit any size by construction (the plain CNN stops pooling at 1 px)
        plain = ModelConfig.plain_timm(str(name))
        size, chans = spec.data.image_size, spec.data.channels
        try:
            build_model(plain, n_classes=2, in_chans=chans, image_size=size)
            if spec.model.pretrained is not None:  # after: a size problem is not the weights'
                pretrained = plain.model_copy(update={"pretrained": spec.model.pretrained})
                build_model(pretrained, n_classes=2, in_chans=chans, image_size=size)
        except WeightsUnavailable as exc:
            missing.append(str(exc))
        except TrialFailed as exc:
            problems.append(str(exc))
    if missing:
        raise WeightsUnavailable("; ".join(missing))
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
    except _SIZE_ERRORS as exc:  # timm asserts on input sizes
        raise too_small(backbone, image_size, exc) from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, n_classes):
        raise TrialFailed(
            f"backbone {backbone!r} gave outputs of shape {tuple(out.shape)}, expected "
            f"(2, {n_classes}) logits"
        )


def too_small(backbone: str, image_size: int, exc: BaseException) -> TrialFailed:
    """Why `backbone` cannot take image_size px images, and what to change: a vision
    transformer's patches larger than the images or not tiling them, a network that shrinks
    its input more than the images' size, else torch's own reason."""
    patch, reduction = _geometry(backbone)
    why, fix = first_line(exc), "raise data.image_size"
    if patch is not None and patch > image_size:
        why = f"its patches are {patch}×{patch} px, larger than the images"
        fix = f"raise data.image_size to {patch} or more"
    elif patch is not None and image_size % patch:
        why = f"its {patch} px patches do not tile them"
        fix = (
            f"make data.image_size a multiple of {patch} (e.g. {-(-image_size // patch) * patch})"
        )
    elif reduction is not None and reduction > image_size:
        why = f"it shrinks its input {reduction}× by its last stage: {why}"
        fix = f"raise data.image_size to {reduction} or more"
    return TrialFailed(
        f"backbone {backbone!r} cannot process {image_size}×{image_size} px images ({why}); "
        f"{fix}, or choose another backbone"
    )


def _geometry(name: str) -> tuple[int | None, int | None]:
    """A timm model's patch size (vision transformers) and how much its last stage shrinks the
    input (`feature_info`), read from the model built on the meta device (no memory); None for
    what it does not have or say."""
    if name in BACKBONES:
        return None, None
    import timm

    try:
        model = timm.create_model(name, device="meta")
    except Exception:  # only a hint: without it, torch's own reason is given
        return None, None
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if isinstance(patch, (tuple, list)):
        patch = patch[0]
    infos = getattr(model, "feature_info", None)
    reduction = infos[-1].get("reduction") if isinstance(infos, list) and infos else None
    return (int(patch) if patch else None), (int(reduction) if reduction else None)


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
