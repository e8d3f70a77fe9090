"""Teacher architectures by name: how to build each, at paper size and at smoke size, and its training recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from autokd.errors import TeacherError
from autokd.nn.darts import DartsNetwork
from autokd.nn.resnet import ResNet18, WideResNet
from autokd.nn.vgg import VGG7
from autokd.recipe import Recipe


@dataclass(frozen=True)
class TeacherArch:
    name: str
    build: Callable[..., nn.Module]  # (num_classes, in_channels, **args) → module
    args: dict[str, Any]  # paper-size arguments
    smoke_args: dict[str, Any]  # small enough to train on a 2-core CPU in a minute or two
    recipe: Recipe  # full training recipe
    epochs: float  # of the full recipe
    smoke_epochs: float = 3.0  # on SMOKE_TRAIN_IMAGES (5,000) images: about a minute on 2 CPU cores for darts
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# DARTS recipe (DARTS: Liu et al. 2019): 600 epochs, SGD 0.025, momentum 0.9, wd 3e-4, cosine, batch 96, clip 5,
# crop+flip+cutout 16, auxiliary weight 0.4, drop path 0.2.
_DARTS_RECIPE = Recipe(batch_size=96, lr=0.025, momentum=0.9, weight_decay=3e-4, weight_decay_scope="all",
                       grad_clip=5.0, augment_pad=4, augment_flip=True, cutout=16, aux_weight=0.4, drop_path=0.2)
# ResNet/WRN: the common CIFAR recipe (SGD 0.1 / 0.05, wd 5e-4, cosine, crop+flip) at 200 epochs.
_RESNET_RECIPE = Recipe(batch_size=128, lr=0.1, weight_decay=5e-4, nesterov=True)
_WRN_RECIPE = Recipe(batch_size=64, lr=0.05, weight_decay=5e-4, nesterov=True)
# VGG7: 20 epochs suffice on 28×28 datasets (Fashion-MNIST: 60k images); crop with 2-pixel padding + flip.
# Weight decay on weights only (not BatchNorm or biases): how the shipped Fashion-MNIST checkpoint was trained.
_VGG_RECIPE = Recipe(batch_size=128, lr=0.05, weight_decay=5e-4, weight_decay_scope="weights", nesterov=True,
                     augment_pad=2, augment_flip=True, cutout=0)

TEACHERS: dict[str, TeacherArch] = {
    "darts": TeacherArch("darts", DartsNetwork, {"C": 36, "layers": 20, "auxiliary": True},
                         {"C": 8, "layers": 5, "auxiliary": True}, _DARTS_RECIPE, 600,
                         description="DARTS V2 cell network (3.35M params at C=36, 20 cells)"),
    "resnet18": TeacherArch("resnet18", ResNet18, {"width": 64}, {"width": 8}, _RESNET_RECIPE, 200,
                            description="ResNet-18, CIFAR variant (11.2M params)"),
    "wrn-40-2": TeacherArch("wrn-40-2", WideResNet, {"depth": 40, "widen": 2}, {"depth": 10, "widen": 1},
                            _WRN_RECIPE, 200, description="Wide ResNet 40-2 (2.2M params)"),
    "vgg7": TeacherArch("vgg7", VGG7, {"width": 32}, {"width": 8}, _VGG_RECIPE, 20,
                        description="VGG-style 6-conv network (288k params, 29M MACs at 1x28x28)"),
}


def teacher_arch(name: str) -> TeacherArch:
    if name not in TEACHERS:
        raise TeacherError(f"unknown teacher {name!r}; built-in: {', '.join(TEACHERS)}, or a checkpoint path")
    return TEACHERS[name]


def build_teacher(name: str, num_classes: int, in_channels: int, args: dict[str, Any]) -> nn.Module:
    return teacher_arch(name).build(num_classes=num_classes, in_channels=in_channels, **args)
