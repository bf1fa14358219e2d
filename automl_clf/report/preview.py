"""What the augmentation did to the final model's training images: the first images of its first
training batch, before and after.

The batches are made as the training made them, by the same function (train/session.py's
`training_batches`: the same splits, batch size, seed, class-balanced sampling and transforms,
batched for the named policies or through albumentations for a custom list) and the same
`BatchMixer` draw for MixUp/CutMix, so the preview shows the very images the training's first
step saw (on the CPU rather than the training device: the same random draws, rounded alike). One
difference: a streamed split with a custom transform list is augmented by DataLoader workers
that seed each image on its own (data/batches.py); here it is augmented in this process, so its
images are drawn the same way but not the same ones.
"""

from __future__ import annotations

import numpy as np
import torch

from automl_clf.data.augment import transform_list
from automl_clf.data.dataset import Dataset, SplitArrays
from automl_clf.data.preprocess import Decoding, Preprocessing
from automl_clf.report.content import AugmentedPreview
from automl_clf.spec.config import AugmentConfig, TrialConfig
from automl_clf.train.mix import BatchMixer, MixedBatch
from automl_clf.train.session import training_batches

N_PREVIEW = 16  # images in the preview


def augmented_preview(
    config: TrialConfig,
    dataset: Dataset,
    preprocessing: Preprocessing,
    *,
    train_on: tuple[str, ...],
    seed: int,
    n: int = N_PREVIEW,
) -> AugmentedPreview | None:
    """The first `n` images of epoch 1's training batches, before and after augmentation, as
    the run of `config` on `train_on` with `seed` trained on them; None when it augments
    nothing (no transform, no mixing).

    Args:
        preprocessing: the run's own (its mean and std undo the normalisation for display).
    """
    entries = transform_list(config.augment)
    mixer = BatchMixer(config.augment)
    if not entries and not mixer.active:
        return None
    splits = dataset.arrays(Decoding.of(config.data))
    train = SplitArrays.concat(*(splits[name] for name in train_on))
    batches = training_batches(
        config, dataset, train, preprocessing, entries, seed=seed, device=torch.device("cpu")
    )
    mixer.reseed(batches.epoch_seed(1))  # as the trainer does at the start of each epoch
    first = np.concatenate(batches.order(1))[:n]  # the images of the batches below
    seen, classes, mixes = [], [], []
    for x, y in batches.epoch(1):
        mixed = mixer(x, y) if mixer.active else None  # one draw per batch, as in training
        seen.append(mixed.images if mixed is not None else x)
        labels = [dataset.classes[int(i)] for i in y]
        classes += labels
        mixes += _mix_captions(mixed, labels, dataset.classes)
        if len(classes) >= n:
            break
    augmented = _pixels(torch.cat(seen)[:n], preprocessing)
    originals = np.asarray(train.pixels[first])
    return AugmentedPreview(
        originals=originals,
        augmented=augmented,
        classes=classes[:n],
        mixes=mixes[:n],
        description=describe(config.augment, n, len(train), train_on, seed),
    )


def _mix_captions(mixed: MixedBatch | None, labels: list[str], classes: list[str]) -> list[str]:
    """`augmented` for each image of an unmixed batch; `0.73 cat + 0.27 dog` for a mixed one."""
    if mixed is None:
        return ["augmented"] * len(labels)
    partners = [classes[int(i)] for i in mixed.partner_labels]
    weight = mixed.weight
    return [
        f"{weight:.2f} {a} + {1 - weight:.2f} {b}" for a, b in zip(labels, partners, strict=True)
    ]


def _pixels(x: torch.Tensor, preprocessing: Preprocessing) -> np.ndarray:
    """Normalised (N, C, H, W) floats back to uint8 (N, H, W, C) pixels, clipped to [0, 255]."""
    mean = torch.tensor(preprocessing.mean).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing.std).view(1, -1, 1, 1)
    scaled = (x.float().cpu() * std + mean).clamp(0.0, 1.0)
    return (scaled * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def describe(
    augment: AugmentConfig, n: int, n_train: int, train_on: tuple[str, ...], seed: int
) -> str:
    """One sentence: which images, through which augmentation."""
    if augment.transforms is not None:
        names = ", ".join(str(t.get("name")) for t in augment.transforms)
        what = f"the custom albumentations list ({names})"
    else:
        what = f"augment.policy {augment.policy} (magnitude {augment.magnitude:g})"
        what += ", with horizontal flips" if augment.hflip else ""
    mixing = [
        f"{name} on {share:.0%} of batches"
        for name, share in (("MixUp", augment.mixup), ("CutMix", augment.cutmix))
        if share > 0
    ]
    if mixing:
        what += "; " + " and ".join(mixing)
    return (
        f"The first {n} images of epoch 1's training batches ({'+'.join(train_on)}, "
        f"{n_train} images, seed {seed}), as the training saw them, through {what}."
    )
