"""Hand-designed students, sized to a parameter limit: the baselines a searched family must beat (same limit, same
teacher, same recipe). Each is the widest of its shape whose parameter count fits the limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn.functional as F
from torch import nn

from autokd.errors import UserError
from autokd.nn.features import before_pools
from autokd.nn.resnet import BasicBlock


class SmallResNet(nn.Module):
    """ResNet-8 style: 3×3 stem, three stages of one basic block (widths w, 2w, 4w; stride 2 between stages),
    global average pooling, linear classifier."""

    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stages = nn.Sequential(BasicBlock(w, w, 1), BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 4 * w, 2))
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1))

    def feature_points(self) -> list[nn.Module]:  # autokd.nn.features: attention transfer's maps
        return list(self.stages)


class PlainCNN(nn.Module):
    """Four conv3×3-BN-ReLU layers (w, 2w, 2w, 4w) with 2×2 max-pooling after the first two, global average
    pooling, linear classifier."""

    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        w = width

        def layer(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]

        self.features = nn.Sequential(*layer(in_channels, w), nn.MaxPool2d(2), *layer(w, 2 * w), nn.MaxPool2d(2),
                                      *layer(2 * w, 2 * w), *layer(2 * w, 4 * w))
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))

    def feature_points(self) -> list[nn.Module]:
        return before_pools(self.features)


@dataclass(frozen=True)
class Handmade:
    name: str
    build: Callable[[int, int, int], nn.Module]  # (in_channels, classes, width)
    description: str


HANDMADE: dict[str, Handmade] = {
    "resnet": Handmade("resnet", SmallResNet, "ResNet-8 style, one basic block per stage (w, 2w, 4w)"),
    "cnn": Handmade("cnn", PlainCNN, "plain 4-conv CNN (w, 2w, 2w, 4w) with max-pooling"),
}


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_handmade(name: str, input_shape: tuple[int, int, int], num_classes: int,
                   param_limit: int) -> tuple[nn.Module, int]:
    """(module, width): the widest `name` network with at most `param_limit` parameters."""
    if name not in HANDMADE:
        raise UserError(f"unknown hand-designed student {name!r}; choose from {', '.join(HANDMADE)}")
    build = HANDMADE[name].build
    width = 1
    if _params(build(input_shape[0], num_classes, 1)) > param_limit:
        raise UserError(f"even width 1 of {name} exceeds the parameter limit {param_limit:,}")
    while width < 1024 and _params(build(input_shape[0], num_classes, width + 1)) <= param_limit:
        width += 1
    return build(input_shape[0], num_classes, width), width
