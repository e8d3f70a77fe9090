"""Feature maps at the ends of a network's resolution groups: what attention transfer matches (Zagoruyko &
Komodakis, ICLR 2017: the outputs of each group of residual blocks, one per spatial size).

A model exposes them in one of two ways:
- `feature_points() -> list[nn.Module]`: its blocks in execution order (the built-in teachers and hand-designed
  students); their outputs are recorded with forward hooks during one ordinary forward;
- `feature_maps(x) -> (output, [maps])` (the NAGO student, whose fused path runs cells without calling them).
Of the recorded maps, the last one at each spatial size is kept, shallow to deep. A model with neither (a user's
TorchScript or exported teacher) cannot take part in attention transfer: `has_feature_maps` says so beforehand.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def has_feature_maps(model: Any) -> bool:
    return callable(getattr(model, "feature_maps", None)) or callable(getattr(model, "feature_points", None))


def group_ends(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """The last map (B, C, H, W) of each run of equal spatial size, in order."""
    out: list[torch.Tensor] = []
    for m in maps:
        if m.dim() != 4:
            continue
        if out and out[-1].shape[-2:] == m.shape[-2:]:
            out[-1] = m
        else:
            out.append(m)
    return out


def feature_maps(model: nn.Module, x: torch.Tensor) -> tuple[Any, list[torch.Tensor]]:
    """(the model's usual output, its group-end feature maps) for the batch x."""
    own = getattr(model, "feature_maps", None)
    if callable(own):
        out, maps = own(x)
        return out, group_ends(list(maps))
    points = getattr(model, "feature_points", None)
    if not callable(points):
        raise TypeError(f"{type(model).__name__} exposes no feature maps (no feature_points or feature_maps)")
    recorded: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: recorded.append(o[0] if isinstance(o, tuple) else o))
             for m in points()]
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, group_ends(recorded)


def before_pools(seq: nn.Sequential) -> list[nn.Module]:
    """A plain conv stack's feature points: every ReLU (the group ends are those before each pooling, and the
    last)."""
    return [m for m in seq if isinstance(m, nn.ReLU)]
