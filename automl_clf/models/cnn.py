"""The plain CNN family: the classic conv → BN → ReLU → pool blocks, then a small head.

    [Conv(k, 'same') → BatchNorm → ReLU] × convs_per_block → MaxPool(2)   (a block per filters[i])
    flatten (or global average pool) → [Linear(fc_width) → ReLU] → Dropout → Linear(n_classes)

Pooling stops once the feature map is 1 pixel, so any number of blocks fits any image size.
"""

from __future__ import annotations

import torch
from torch import nn

from automl_clf.spec.config import CNNConfig


class PlainCNN(nn.Module):
    """`features` (the conv blocks) then `classifier`, whose last layer has n_classes outputs."""

    def __init__(
        self, cfg: CNNConfig, *, in_chans: int, n_classes: int, image_size: int, dropout: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
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
        self.features = nn.Sequential(*layers)
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
