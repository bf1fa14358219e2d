"""Where training and prediction run: `train.device` / `--device` (`auto`, `cpu`, `cuda`,
`cuda:N`) made into a `torch.device` this machine has, or a `DeviceError` saying what it has.

The spec checks a device's *form* when it is read (spec/config.py, no torch needed); whether
the machine has it is asked here, once per command before any trial (the model factory's
pre-flight), so a missing GPU is one line and exit 2, not a failed trial each time.
"""

from __future__ import annotations

import os

import torch

from automl_clf.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """The torch device for `name`: `auto` is CUDA when present, else the CPU.

    A CUDA device with an index also becomes the process's current CUDA device: torch's calls
    that take no device (`is_bf16_supported`, `empty_cache`, autocast's and the grad scaler's
    defaults) then act on the GPU the model is on, not on GPU 0. The CPU also computes
    subnormal floats as zero from then on (`flush_subnormals`): every path that trains or
    predicts resolves its device here first.

    Raises:
        DeviceError: CUDA asked for on a machine (or a torch build) without it, or a GPU index
            this machine does not have.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        flush_subnormals()
        return device
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for, but {_why_no_cuda()}; {_FIX}")
    count = torch.cuda.device_count()
    if device.index is not None:
        if device.index >= count:
            have = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise DeviceError(
                f"device {name!r} asked for, but this machine has {count} CUDA device"
                f"{'s' if count > 1 else ''} ({have}); choose one of those, or auto"
            )
        torch.cuda.set_device(device)
    return device


def flush_subnormals() -> None:
    """Compute with float32 values below 1.2e-38 (subnormals) as zero on this CPU thread.

    x86 CPUs take microcode assists on subnormal operands, 10-100x a normal operation, and a
    network reaches them once gradients get tiny: Adam's second moments, BatchNorm statistics,
    small weights. On the peers bench a retrain of a 15-epoch `test_resnet` trial took 223 s
    instead of 14 s (same process, same load, only this flag changed). Values that small are
    far below anything a float32 logit resolves, so results do not change measurably; GPUs
    already flush them under their default math. torch applies it to the calling thread, the
    one that runs the training loop and most small operations."""
    torch.set_flush_denormal(True)  # False on a CPU without the mode: nothing to do then


_FIX = "use --device cpu (or train.device: auto, which trains on the CPU here)"


def _why_no_cuda() -> str:
    """Why torch sees no GPU: a CPU-only build, hidden devices, or no device or driver."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return "CUDA_VISIBLE_DEVICES is empty, which hides every GPU"
    return (
        f"torch (built for CUDA {torch.version.cuda}) finds no CUDA device: no GPU, no driver, "
        "or none visible (CUDA_VISIBLE_DEVICES; check nvidia-smi)"
    )


def helper_device(name: str, index: int) -> str:
    """The device of search helper process `index` (1, 2, …; the calling process is 0) when a
    search runs several trials at once: with `auto` or `cuda` on a machine with several GPUs,
    helper k takes GPU k (modulo their number), as `--jobs` defaults to one process per GPU;
    an explicit `cuda:N` or `cpu` is what every process uses."""
    if name not in ("auto", "cuda") or not torch.cuda.is_available():
        return name
    count = torch.cuda.device_count()
    return f"cuda:{index % count}" if count > 1 else name
