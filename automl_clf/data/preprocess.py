"""The preprocessing: the one code path from an image file to a normalised tensor.

Training, evaluation, the final test and `predict` all go through `Preprocessing.load_file` (or
`load_image`) and `Preprocessing.to_tensor`; the object is stored in every export's `model.json`,
so inference cannot drift from training. Augmentation sits between the two steps and exists only
in the training batches (data/batches.py).

Image modes are converted one documented way:
- EXIF orientation is applied first; animated images use their first frame.
- 16-bit and 32-bit integer images are scaled to 8 bits (value / 257), float images clipped.
- Transparency is dropped (the colour channels are kept as they are).
- `channels: 1` converts to luma (ITU-R 601-2, Pillow's "L"); `channels: 3` to RGB.

`Preprocessing.steps()` spells all of this out (`PreprocessingSteps`, model.json's
`preprocessing_steps`): the resize filter by Pillow's name, the crop or pad, the channel order,
the scaling, the mean/std and the conversions, so another runtime can reproduce the input
without reading this code. It is derived from the same constants the code runs with.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict

from automl_clf.data.discover import special_file_kind
from automl_clf.errors import ImageError
from automl_clf.spec.config import Channels, DataConfig, ImageSize, Resize
from automl_clf.spec.data import DataSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking (Pillow's resize)
PAD_VALUE = 0  # letterbox: the padding's value in every channel (black)
CENTERING = (0.5, 0.5)  # letterbox and center_crop place / cut the image centred (Pillow's)
STATS_CHUNK = 256  # images per histogram round in `mean_std` (a few MB of int copies at most)


class Decoding(BaseModel):
    """File -> uint8 pixels (H, W, C) at the trial's size: what the decode cache is keyed by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: ImageSize
    channels: Channels
    resize: Resize

    @classmethod
    def of(cls, data: DataConfig | DataSpec) -> Decoding:
        return cls(image_size=data.image_size, channels=data.channels, resize=data.resize)

    def load_file(self, path: str | Path) -> np.ndarray:
        """Decode one file into uint8 pixels (H, W, C); `ImageError` says why it cannot be.

        Only a regular file is read: the check is made on the opened descriptor (opened
        non-blocking), so a FIFO named `*.png` is refused instead of waiting forever for a
        writer. An image of more than twice Pillow's `MAX_IMAGE_PIXELS` (a decompression bomb:
        a few KB that would decode to gigabytes) is refused like a corrupt file.
        """
        with _open_regular(path) as handle:
            try:
                with Image.open(handle) as image:
                    image.seek(0)
                    return self.load_image(image)
            except Image.DecompressionBombError as exc:
                raise ImageError(path, _too_large(exc)) from None
            except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow on bad files
                raise ImageError(path, str(exc)) from None

    def load_image(self, image: Image.Image) -> np.ndarray:
        """Convert and resize a decoded image into uint8 pixels (H, W, C)."""
        image = ImageOps.exif_transpose(image) or image
        image = _to_8bit(image).convert("L" if self.channels == 1 else "RGB")
        size = (self.image_size, self.image_size)
        if self.resize == "letterbox":
            image = ImageOps.pad(
                image, size, method=_RESAMPLE, color=PAD_VALUE, centering=CENTERING
            )
        elif self.resize == "center_crop":
            image = ImageOps.fit(image, size, method=_RESAMPLE, centering=CENTERING)
        else:
            image = image.resize(size, _RESAMPLE)
        pixels = np.asarray(image, dtype=np.uint8)
        return pixels[:, :, None] if pixels.ndim == 2 else pixels


class Preprocessing(BaseModel):
    """Decode, resize, scale to [0, 1] and normalise; serialised in trials and exports.

    `mean` and `std` are per channel, on the [0, 1] scale.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    decoding: Decoding
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def load_file(self, path: str | Path) -> np.ndarray:
        return self.decoding.load_file(path)

    def load_image(self, image: Image.Image) -> np.ndarray:
        return self.decoding.load_image(image)

    def to_tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, C) -> float32 (N, C, H, W), scaled to [0, 1] and normalised."""
        return self.normalize(self.scale(pixels))

    @staticmethod
    def scale(pixels: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
        """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1], on `device`."""
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
        return x.to(device).float().div_(255.0) if device is not None else x.float().div_(255.0)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Subtract the mean and divide by the std, per channel."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def steps(self) -> PreprocessingSteps:
        """Everything this preprocessing does, for another runtime (module docstring)."""
        decoding, size = self.decoding, self.decoding.image_size
        mode: Literal["L", "RGB"] = "L" if decoding.channels == 1 else "RGB"
        resize = ResizeStep(
            method=decoding.resize,
            width=size,
            height=size,
            filter=_RESAMPLE.name.lower(),  # "bilinear", as Pillow names it
            pillow=_PILLOW_CALLS[decoding.resize].format(size=size),
            description=RESIZE_METHODS[decoding.resize],
            pad_value=PAD_VALUE if decoding.resize == "letterbox" else None,
            centering=CENTERING if decoding.resize != "squash" else None,
        )
        return PreprocessingSteps(
            decode=DecodeStep(mode=mode, luma=LUMA if mode == "L" else None),
            resize=resize,
            tensor=TensorStep(channel_order=mode, mean=self.mean, std=self.std),
        )


LUMA = "L = (19595 R + 38470 G + 7471 B + 32768) >> 16 (Pillow's ITU-R 601-2 luma, rounded)"
_PILLOW_CALLS = {
    "squash": "image.resize(({size}, {size}), Image.Resampling.BILINEAR)",
    "letterbox": (
        "ImageOps.pad(image, ({size}, {size}), method=Image.Resampling.BILINEAR, color=0, "
        "centering=(0.5, 0.5))"
    ),
    "center_crop": (
        "ImageOps.fit(image, ({size}, {size}), method=Image.Resampling.BILINEAR, "
        "centering=(0.5, 0.5))"
    ),
}
RESIZE_METHODS = {
    "squash": "stretch the whole image to width x height (the aspect ratio is not kept)",
    "letterbox": (
        "scale to fit inside width x height keeping the aspect ratio (the scaled side rounded), "
        "then paste it centred on a pad_value canvas (offset rounded)"
    ),
    "center_crop": (
        "cut the centred box of the target's aspect ratio from the image (fractional edges), "
        "and resample that box to width x height"
    ),
}


class DecodeStep(BaseModel):
    """File to 8-bit pixels, in order: frame, orientation, bit depth, transparency, mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frame: Literal["first"] = "first"  # of an animated or multi-page image
    exif_transpose: bool = True  # the EXIF orientation applied first (ImageOps.exif_transpose)
    high_bit_depth: str = (
        "16- and 32-bit integer images: value / 257 clipped to 0..255; float images: clipped "
        "to 0..255; both become 8-bit grey (L)"
    )
    palette_transparency: str = "a palette image with transparency becomes RGBA first"
    alpha: Literal["dropped"] = "dropped"  # the colour channels kept as they are, not composited
    mode: Literal["L", "RGB"]  # every image converted to it from its own (Pillow's convert)
    luma: str | None = None  # mode L: the grey value from RGB


class ResizeStep(BaseModel):
    """8-bit pixels to the network's size, with Pillow's resampling (`pillow` is the call)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Resize  # squash, letterbox or center_crop
    width: int
    height: int
    filter: str  # Pillow's name of the resampling filter: "bilinear"
    # Pillow's filters widen with the scale when shrinking (convolution over the source
    # pixels each output pixel covers), as torch's interpolate(antialias=True) does
    antialias: bool = True
    pillow: str  # the exact call, `image` being the decoded PIL image
    pad_value: int | None = None  # letterbox: the padding in every channel
    centering: tuple[float, float] | None = None  # letterbox, center_crop: (x, y), 0.5 centred
    description: str  # what `method` does, in words


class TensorStep(BaseModel):
    """8-bit pixels (H, W, C) to the network's input: (value / divide_by - mean[c]) / std[c],
    in float32."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Literal["float32"] = "float32"
    layout: Literal["NCHW"] = "NCHW"  # batch, channel, row, column
    channel_order: Literal["L", "RGB"]
    divide_by: float = 255.0  # 0..255 to 0..1 (a division, as `Preprocessing.scale` does)
    mean: tuple[float, ...]  # per channel, on the 0..1 scale
    std: tuple[float, ...]


class PreprocessingSteps(BaseModel):
    """model.json's `preprocessing_steps`: image file to input tensor, step by step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1  # of this description; a new step would be a new version
    library: Literal["Pillow"] = "Pillow"  # decoding and resizing (its version: `versions`)
    decode: DecodeStep
    resize: ResizeStep
    tensor: TensorStep


def _open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file (following symlinks); else ImageError."""
    try:
        handle = open(path, "rb", opener=_open_nonblocking)  # noqa: SIM115 (returned open)
    except OSError as exc:
        raise ImageError(path, exc.strerror or str(exc)) from None
    kind = special_file_kind(os.fstat(handle.fileno()).st_mode)
    if kind:
        handle.close()
        raise ImageError(path, f"not a regular file ({kind})")
    os.set_blocking(handle.fileno(), True)
    return handle


def _open_nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting


def _too_large(exc: Image.DecompressionBombError) -> str:
    """Pillow's refusal in our words, with the image's pixel count when Pillow gives it."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,} pixels" if found else "its size"
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return (
        f"too large: {size}, more than the {limit:,} Pillow decodes (a guard against "
        "decompression bombs); downscale it if it is a real image"
    )


def _to_8bit(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        return image.convert("RGBA")
    return image


def build_preprocessing(
    data: DataConfig,
    weights_mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None,
    dataset_mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None,
) -> Preprocessing:
    """The trial's preprocessing: normalisation follows the spec, else the backbone.

    Args:
        weights_mean_std: the RGB mean/std the backbone's pretrained weights expect, from its
            pretrained config (`models.factory.backbone_mean_std`); None for a backbone without
            pretrained weights (the plain CNN).
        dataset_mean_std: the training split's mean/std; from the training split only, never
            val/test.

    `imagenet` is what the weights expect (ImageNet's statistics when they expect nothing);
    `auto` is that, or the training split's statistics for a backbone without weights.
    """
    mode: str = data.normalize
    if mode == "auto":
        mode = "dataset" if weights_mean_std is None else "imagenet"
    if mode == "dataset":
        if dataset_mean_std is None:
            raise ValueError("dataset normalisation needs the training split's mean and std")
        mean, std = dataset_mean_std
    elif mode == "none":
        mean, std = (0.0,) * data.channels, (1.0,) * data.channels
    else:
        mean, std = weights_mean_std or (IMAGENET_MEAN, IMAGENET_STD)
        if data.channels == 1:  # a grayscale input sees the average of the RGB statistics
            mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
    return Preprocessing(
        decoding=Decoding.of(data),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
    )


def mean_std(pixels: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, H, W, C) pixels, on the [0, 1] scale.

    From each channel's histogram of the 256 levels, counted `STATS_CHUNK` images at a time:
    exact for uint8, and 8 times faster than numpy's `std` over a float64 copy (0.28 s for
    420 photos at 128 px, paid by every trial and every budget probe as it starts)."""
    channels = pixels.shape[-1]
    counts = np.zeros((channels, 256), np.int64)
    for start in range(0, len(pixels), STATS_CHUNK):
        rows = np.asarray(pixels[start : start + STATS_CHUNK]).reshape(-1, channels)
        for channel in range(channels):
            counts[channel] += np.bincount(rows[:, channel], minlength=256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    n = np.maximum(counts.sum(axis=1), 1)
    mean = counts @ levels / n
    variance = np.maximum(counts @ (levels * levels) / n - mean * mean, 0.0)
    std = np.maximum(np.sqrt(variance), 1e-3)  # a constant channel must not divide by zero
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
