"""A small VGG-style network: the built-in teacher that is cheap enough to run beside a student on a CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autokd.nn.features import before_pools


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class VGG7(nn.Module):
    """Six conv3×3-BN-ReLU layers at widths w, w, 2w, 2w, 4w, 4w with a 2×2 max-pool after each pair but the last,
    global average pooling and a linear classifier. w=32 on 1×28×28: 287k parameters, 29M MACs per image."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, w), *_conv_bn_relu(w, w), nn.MaxPool2d(2),
            *_conv_bn_relu(w, 2 * w), *_conv_bn_relu(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn_relu(2 * w, 4 * w), *_conv_bn_relu(4 * w, 4 * w))
        self.fc = nn.Linear(4 * w, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))

    def feature_points(self) -> list[nn.Module]:  # autokd.nn.features: attention transfer's maps
        return before_pools(self.features)
