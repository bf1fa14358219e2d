"""Extra export formats for serving outside autoclf: TorchScript (`model.pt`) and ONNX
(`model.onnx`), each checked against the eager model.

Both take the preprocessed batch (N, C, H, W) float32, normalised as `model.json` says, and
return logits (N, n_classes); the batch size is free. An ensemble's are traced from the whole
`Ensemble` (final/ensemble.py): their logits are the log of the members' mean probabilities.
A calibrated export's are traced from `Calibrated` (final/calibration.py): the logits divided by
the temperature, so the parity checks compare calibrated outputs.
The Predictor does not use them: it rebuilds the network from `model.json` and loads
`model.safetensors`, which holds tensors only. Reading these files never unpickles Python objects
either: `torch.jit.load` reads a TorchScript program, and ONNX is a protobuf graph run by
onnxruntime.

A format that cannot be written (an operator TorchScript or ONNX does not support) or that
disagrees with the eager model by more than `PARITY_TOLERANCE` is recorded as not OK with its
reason in `model.json` and reported; the safetensors export is complete without it.

Each format is one class registered in `FORMATS` (its file name, how to write it, how to load
it back as images -> logits); every registered format is written, checked and recorded. To add
one: a class below, decorated `@FORMATS.register("name")`; tests/final/test_formats.py checks every
registered format against the eager model.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from automl_clf.spec.registry import Registry

if TYPE_CHECKING:
    from automl_clf.final.allowance import Allowance

PARITY_TOLERANCE = 1e-4  # max abs difference of logits from the eager model, on the CPU
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class FormatCheck(BaseModel):
    """How one extra format compares with the eager model on the test images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    ok: bool
    max_abs_diff: float | None = None  # of logits, over `n_images` test images
    n_images: int = 0
    error: str | None = None  # why it is not OK


Logits = Callable[[torch.Tensor], np.ndarray]  # preprocessed images -> logits, on the CPU


class ExportFormat:
    """One extra export format: its file in the export folder, how to write it from the eager
    model (traced or exported with an example batch), and how to load it back with its own
    runtime."""

    file: ClassVar[str]

    @staticmethod
    def write(model: nn.Module, example: torch.Tensor, path: Path) -> None:
        raise NotImplementedError

    @staticmethod
    def load(path: Path) -> Logits:
        raise NotImplementedError


FORMATS: Registry[type[ExportFormat]] = Registry("export format")


@FORMATS.register("torchscript")
class TorchScript(ExportFormat):
    """`model.pt`, for C++ and mobile runtimes; loaded with `torch.jit.load` (no pickle)."""

    file = "model.pt"

    @staticmethod
    def write(model: nn.Module, example: torch.Tensor, path: Path) -> None:
        # Tracing records the ops of one forward pass; every model here is a plain
        # feed-forward network without data-dependent control flow, so the trace is the whole
        # model.
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(path))

    @staticmethod
    def load(path: Path) -> Logits:
        with _quiet():
            program = torch.jit.load(str(path), map_location="cpu")

        def run(images: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return program(images).float().numpy()

        return run


@FORMATS.register("onnx")
class ONNX(ExportFormat):
    """`model.onnx` (any batch size), for onnxruntime and other runtimes."""

    file = "model.onnx"

    @staticmethod
    def write(model: nn.Module, example: torch.Tensor, path: Path) -> None:
        batch = torch.export.Dim("batch", min=1, max=65536)
        with _quiet():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,  # the torch.export-based exporter (the legacy one is deprecated)
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                external_data=False,  # one self-contained file
                verbose=False,
            )

    @staticmethod
    def load(path: Path) -> Logits:
        """Run by onnxruntime on the CPU, with one intra-op thread that does not spin: by
        default onnxruntime's threads busy-wait for a while after each run, taking the cores
        from whatever runs next in this process (a latency measured after a parity check came
        out hundreds of times too slow)."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )

        def run(images: torch.Tensor) -> np.ndarray:
            return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])

        return run


def write_formats(
    model: nn.Module,
    batches: Callable[[], Iterable[torch.Tensor]],
    folder: Path,
    *,
    allowance: Allowance | None = None,
    reserve_s: float = 0.0,
) -> dict[str, FormatCheck]:
    """Write every registered format (`model.pt`, `model.onnx`) into `folder`, load each back
    and compare its logits with the eager model's on every batch `batches()` yields (the
    preprocessed test images); format name -> its check. Under a time `allowance`, a format
    whose estimate does not fit before the deadline with `reserve_s` left after it is not
    written (its check says so)."""
    model = model.cpu().eval()
    example = next(iter(batches()))[:2]
    if len(example) < 2:  # trace and export with a batch of 2: batch norm folds the same way
        example = example.repeat(2, 1, 1, 1)
    checks = {}
    for name, form in FORMATS.items():
        filename = form.file
        path = folder / filename
        if allowance is not None and not allowance.allows(
            f"{name} ({filename})", allowance.estimate(name), reserve_s=reserve_s
        ):
            checks[name] = FormatCheck(file=filename, ok=False, error=NOT_WRITTEN)
            continue
        timed = allowance.timed(name) if allowance is not None else contextlib.nullcontext()
        with timed:
            checks[name] = _write_checked(form, model, example, batches, path)
    return checks


NOT_WRITTEN = "not written: the time budget had no room left for it"


def _write_checked(
    form: type[ExportFormat],
    model: nn.Module,
    example: torch.Tensor,
    batches: Callable[[], Iterable[torch.Tensor]],
    path: Path,
) -> FormatCheck:
    """Write one format to `path`, load it back and compare it with the eager model."""
    filename = form.file
    try:
        form.write(model, example, path)
        run = form.load(path)
        diff, n_images = 0.0, 0
        for images in batches():
            with torch.no_grad():
                reference = model(images).float().numpy()
            diff = max(diff, float(np.abs(run(images) - reference).max()))
            n_images += len(images)
    except Exception as exc:  # exporters raise many kinds; the reason is what matters
        path.unlink(missing_ok=True)
        return FormatCheck(file=filename, ok=False, error=_reason(exc))
    error = None
    if not diff <= PARITY_TOLERANCE:  # also catches NaN
        path.unlink()  # a file that gives other answers must not be picked up by mistake
        error = (
            f"logits differ from the eager model by {diff:.3g} > {PARITY_TOLERANCE:g}; "
            "file removed"
        )
    return FormatCheck(
        file=filename, ok=error is None, max_abs_diff=diff, n_images=n_images, error=error
    )


def _reason(exc: Exception) -> str:
    """The first line of an exporter's message, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return f"{type(exc).__name__}: {(text.splitlines() or [''])[0][:300]}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress prints and their deprecation and tracer warnings.

    torch marks TorchScript deprecated in favour of torch.export; it is still the format most
    C++ and mobile runtimes load, so it is written as long as this torch can write it.
    """
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield
