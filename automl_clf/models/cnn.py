"""The plain CNN family: the classic conv → BN → ReLU → pool blocks, then a small head.

    [Conv(k, 'same') → BatchNorm → ReLU] × convs_per_block → MaxPool(2)   (a block per filters[i])
    flatten (or global average pool) → [Linear(fc_width) → ReLU] → Dropout → Linear(n_classes)

Pooling stops once the feature map is 1 pixel, so any number of blocks fits any image size.

Registered as the backbone `cnn` (models/registry.py), with timm's keyword arguments and its
`model.cnn` architecture; it has no pretrained weights, so `data.normalize: auto` normalises its
input with the training split's statistics. Like a timm model, it lists its stages in
`feature_info` (each block's max-pool), which `autoclf visualize` draws.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from automl_clf.models.registry import register_backbone
from automl_clf.spec.config import CNNConfig


class PlainCNN(nn.Module):
    """`features` (the conv blocks) then `classifier`, whose last layer has n_classes outputs."""

    def __init__(
        self, cfg: CNNConfig, *, in_chans: int, n_classes: int, image_size: int, dropout: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        stages: list[tuple[int, int, int]] = []  # (layer index, channels, reduction)
        channels, size = in_chans, image_size
        for filters in cfg.filters:
            for _ in range(cfg.convs_per_block):
                layers.append(
                    nn.Conv2d(
                        channels,
                        filters,
                        cfg.kernel_size,
                        padding=cfg.kernel_size // 2,
                        bias=not cfg.batch_norm,  # BN's shift makes a conv bias redundant
                    )
                )
                if cfg.batch_norm:
                    layers.append(nn.BatchNorm2d(filters))
                layers.append(nn.ReLU(inplace=True))
                channels = filters
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
                stages.append((len(layers) - 1, channels, image_size // size))
        if not isinstance(layers[-1], nn.MaxPool2d):  # the last block could not pool
            stages.append((len(layers) - 1, channels, image_size // size))
        self.features = nn.Sequential(*layers)
        # timm's description of a model's stages: where each one's feature map comes from.
        self.feature_info: list[dict[str, Any]] = [
            {"module": f"features.{index}", "num_chs": chs, "reduction": reduction}
            for index, chs, reduction in stages
        ]
        if cfg.global_pool:
            pool: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            n_features = channels
        else:
            pool = [nn.Flatten()]
            n_features = channels * size * size
        hidden: list[nn.Module] = []
        if cfg.fc_width > 0:
            hidden = [nn.Linear(n_features, cfg.fc_width), nn.ReLU(inplace=True)]
            n_features = cfg.fc_width
        self.classifier = nn.Sequential(
            *pool, *hidden, nn.Dropout(dropout), nn.Linear(n_features, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_backbone()  # no pretrained weights: nothing to take a mean and std from
def cnn(
    *,
    model_cfg: CNNConfig,
    img_size: int,
    num_classes: int,
    in_chans: int = 3,
    drop_rate: float = 0.0,
) -> PlainCNN:
    """The plain CNN of `model_cfg` (the trial's `model.cnn`) for `img_size` px images."""
    return PlainCNN(
        model_cfg, in_chans=in_chans, n_classes=num_classes, image_size=img_size, dropout=drop_rate
    )
