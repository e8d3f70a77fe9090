"""A teacher made of several: `--teacher vgg7,resnet18` or `--teacher a.pt,b.pt` (any teachers `--teacher` accepts,
comma-separated). Hinton et al. (2015) distil from an ensemble; its members' class probabilities are averaged
(the arithmetic mean of the predictive distributions, what an ensemble predicts), and the ensemble's logits are
the log of that mean: softmax of them is the averaged distribution, and a KD temperature τ softens it as it softens
any teacher's (softmax(log p̄ / τ) ∝ p̄^(1/τ)). Averaging logits instead would give the normalised geometric mean,
which a single confident member dominates.

Each member keeps the input normalisation it was trained with: the ensemble takes images normalised with the
dataset's statistics and renormalises them per member. The ensemble is cached like one teacher (the logit cache
keys on its fingerprint: its members' fingerprints, order-free) and resolves again from its spec (the members'
specs joined by commas), which is what run.json records.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import torch
from torch import nn

SEPARATOR = ","


def is_ensemble(name_or_path: str) -> bool:
    return SEPARATOR in name_or_path


def member_names(name_or_path: str) -> list[str]:
    return [m.strip() for m in name_or_path.split(SEPARATOR) if m.strip()]


class EnsembleModule(nn.Module):
    """(B, C, H, W) images normalised with the dataset's mean/std → (B, K) log of the members' mean probabilities."""

    def __init__(self, members: list[nn.Module], member_stats: list[tuple[list[float], list[float]]],
                 mean: tuple[float, ...], std: tuple[float, ...], mirror: bool = False) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.mirror = mirror  # each member also sees the image mirrored left-right (W flipped); both averaged
        d_mean, d_std = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        # x_member = x·(σ_d/σ_m) + (μ_d − μ_m)/σ_m: the dataset's normalisation undone, the member's applied
        for i, (m_mean, m_std) in enumerate(member_stats):
            mm, ms = torch.tensor(m_mean).view(1, -1, 1, 1), torch.tensor(m_std).view(1, -1, 1, 1)
            self.register_buffer(f"scale{i}", d_std / ms, persistent=False)
            self.register_buffer(f"shift{i}", (d_mean - mm) / ms, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = (x, x.flip(-1)) if self.mirror else (x,)
        probs = None
        for i, member in enumerate(self.members):
            for view in views:
                out = member(view * getattr(self, f"scale{i}") + getattr(self, f"shift{i}"))
                out = out[0] if isinstance(out, (tuple, list)) else out
                p = torch.softmax(out.float(), dim=1)
                probs = p if probs is None else probs + p
        assert probs is not None
        return torch.log((probs / (len(self.members) * len(views))).clamp_min(1e-12))


def ensemble_fingerprint(fingerprints: list[str], mirror: bool = False) -> str:
    """Order-free: vgg7,resnet18 and resnet18,vgg7 are the same teacher; a mirrored one is another."""
    return hashlib.sha256((("ensemble+mirror:" if mirror else "ensemble:")
                           + SEPARATOR.join(sorted(fingerprints))).encode()).hexdigest()


def build_ensemble(members: list[Any], mean: tuple[float, ...], std: tuple[float, ...],
                   test_accuracy: Callable[[nn.Module], float | None] | None = None,
                   mirror: bool = False) -> dict[str, Any]:
    """The parts of the ensemble Teacher from resolved member Teachers: module, meta, fingerprint, spec. `mirror`
    averages each member over the image and its left-right mirror too (test-time augmentation: only for data whose
    labels a horizontal flip keeps, as the shipped Fashion-MNIST ensemble's)."""
    module = EnsembleModule([m.module for m in members], [(m.meta["mean"], m.meta["std"]) for m in members],
                            mean, std, mirror)
    device = next((p.device for m in members for p in m.module.parameters()), torch.device("cpu"))
    module = module.to(device).eval()
    arch = "ensemble(" + "+".join(str(m.meta.get("arch", m.kind)) for m in members) + (", mirrored" if mirror
                                                                                       else "") + ")"
    meta = {"arch": arch, "num_classes": int(members[0].meta["num_classes"]), "mean": list(mean), "std": list(std),
            "input_shape": members[0].meta.get("input_shape"),
            "params": sum(int(m.meta.get("params") or 0) for m in members),
            "members": [{"arch": m.meta.get("arch"), "path": str(m.path), "test_acc": m.meta.get("test_acc"),
                         "fingerprint": m.fingerprint[:16]} for m in members]}
    if test_accuracy is not None:
        meta["test_acc"] = test_accuracy(module)
    meta["mirror"] = mirror
    return {"module": module, "meta": meta,
            "fingerprint": ensemble_fingerprint([m.fingerprint for m in members], mirror)}
