"""Knowledge-distillation losses by name, all from logits only (so the exact teacher-logit cache serves every one):

    hinton  τ²·KL(softmax(t/τ) ‖ softmax(s/τ))                                   (Hinton et al. 2015; REFERENCE §1)
    dkd     dkd_alpha·TCKD + dkd_beta·NCKD, each × τ²                              (Zhao et al., CVPR 2022)
    dist    τ²·(dist_beta·(1 − inter-class ρ) + dist_gamma·(1 − intra-class ρ))    (Huang et al., NeurIPS 2022)

A training step's loss is `(1 − α)·hard + α·distill`, where hard is the cross entropy with the labels and α the KD
weight BOHB searches: the same mix for every loss, so the search space, the journal and best.json do not change with
it (DKD's and DIST's papers add the distillation term to a full-weight cross entropy; α = 0.5 is that up to a factor
of 2 on the step size). Each loss's own parameters are recipe settings (autokd/recipe.py), passed by keyword.

Adding a loss: one function `(student, teacher, targets, temperature, **params) → scalar` and `@register("name")`,
and its parameters declared in autokd/recipe.py. Attention transfer needs feature maps, not logits: not here yet.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.nn.functional as F

DistillFn = Callable[..., torch.Tensor]
KD_LOSSES: dict[str, DistillFn] = {}


def register(name: str) -> Callable[[DistillFn], DistillFn]:
    def add(fn: DistillFn) -> DistillFn:
        KD_LOSSES[name] = fn
        return fn
    return add


def loss_params(name: str) -> tuple[str, ...]:
    """The keyword parameters a loss takes (read from the recipe of the same names)."""
    return tuple(p.name for p in inspect.signature(KD_LOSSES[name]).parameters.values()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY)


@register("hinton")
def hinton(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """τ²·KL(p_t ‖ p_s) of the softened distributions, averaged over the batch."""
    return temperature * temperature * F.kl_div(F.log_softmax(student / temperature, dim=1),
                                                F.log_softmax(teacher / temperature, dim=1),
                                                reduction="batchmean", log_target=True)


@register("dkd")
def dkd(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float, *,
        dkd_alpha: float = 1.0, dkd_beta: float = 8.0) -> torch.Tensor:
    """Decoupled KD: TCKD, the KL between the binary (target, rest) probabilities, and NCKD, the KL between the
    distributions over the non-target classes (renormalised), each × τ² and averaged over the batch. Hinton's KL is
    TCKD + (1 − p_t(target))·NCKD per image; DKD weights the two parts freely (the paper: α 1, β 8 on CIFAR-100)."""
    target = F.one_hot(targets, student.shape[1]).bool()
    p_s, p_t = F.softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1)
    b_s = torch.stack([p_s[target], 1.0 - p_s[target]], dim=1).clamp_min(1e-12)  # (B, 2)
    b_t = torch.stack([p_t[target], 1.0 - p_t[target]], dim=1).clamp_min(1e-12)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean()
    masked = -1e9  # the target class out of the non-target distributions (exp underflows to exactly 0)
    log_q_s = F.log_softmax((student / temperature).masked_fill(target, masked), dim=1)
    log_q_t = F.log_softmax((teacher / temperature).masked_fill(target, masked), dim=1)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s)).masked_fill(target, 0.0).sum(1).mean()
    return temperature * temperature * (dkd_alpha * tckd + dkd_beta * nckd)


def _mean_pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson's ρ between matching rows of a and b, averaged over the rows."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)).mean()


@register("dist")
def dist(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float, *,
         dist_beta: float = 1.0, dist_gamma: float = 1.0) -> torch.Tensor:
    """DIST: match relations, not values. Inter-class: 1 − ρ between each image's student and teacher class
    probabilities; intra-class: 1 − ρ between each class's probabilities over the batch's images; × τ²."""
    p_s, p_t = F.softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1)
    inter = 1.0 - _mean_pearson(p_s, p_t)
    intra = 1.0 - _mean_pearson(p_s.t(), p_t.t())
    return temperature * temperature * (dist_beta * inter + dist_gamma * intra)


def kd_loss(student_logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None,
            temperature: float, alpha: float, hard: torch.Tensor | None = None, name: str = "hinton",
            **params: float) -> torch.Tensor:
    """`(1-α)·hard + α·distill(s, t)`: hard is CE(y, s) unless the caller computes its own (e.g. with label
    smoothing); distill is the loss `name` (default Hinton's: `(1-α)·CE + α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ))`,
    KL averaged over the batch, "batchmean"), `params` its own parameters.

    Logits (B, K) of any float dtype are computed in float32. α = 0 (or no teacher) is plain cross entropy; τ² keeps
    the soft-target gradients on the scale of the hard ones as τ changes.
    """
    s = student_logits.float()
    ce = F.cross_entropy(s, targets) if hard is None else hard
    if teacher_logits is None or alpha == 0.0:
        return ce
    if name not in KD_LOSSES:
        raise ValueError(f"unknown KD loss {name!r}; choose from {', '.join(KD_LOSSES)}")
    t = teacher_logits.float()
    if name == "hinton":  # the same float operations, in the same order, as before losses had names: same results
        kl = F.kl_div(F.log_softmax(s / temperature, dim=1), F.log_softmax(t / temperature, dim=1),
                      reduction="batchmean", log_target=True)
        return (1.0 - alpha) * ce + alpha * temperature * temperature * kl
    return (1.0 - alpha) * ce + alpha * KD_LOSSES[name](s, t, targets, temperature, **params)
