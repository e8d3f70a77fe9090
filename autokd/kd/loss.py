"""Knowledge-distillation losses by name. From logits only (so the exact teacher-logit cache serves each one):

    hinton  τ²·KL(softmax(t/τ) ‖ softmax(s/τ))                                   (Hinton et al. 2015)
    dkd     dkd_alpha·TCKD + dkd_beta·NCKD, each × τ²                              (Zhao et al., CVPR 2022)
    dist    τ²·(dist_beta·(1 − inter-class ρ) + dist_gamma·(1 − intra-class ρ))    (Huang et al., NeurIPS 2022)

and from feature maps (the teacher runs beside every step; no cache):

    at      at_beta/2 · Σ_j mean((Q_s^j − Q_t^j)²),  Q = normalise(mean_c(A²))     (Zagoruyko & Komodakis, ICLR 2017)

A training step's loss is `(1 − α)·hard + α·distill`, where hard is the cross entropy with the labels and α the KD
weight BOHB searches: the same mix for every loss, so the search space, the journal and best.json do not change with
it (DKD's and DIST's papers add the distillation term to a full-weight cross entropy; α = 0.5 is that up to a factor
of 2 on the step size). Each loss's own parameters are recipe settings (autokd/recipe.py), passed by keyword.

Adding a loss: one function `(student, teacher, targets, temperature, **params) → scalar` and `@register("name")`
(`@register("name", features=True)` for `(student_maps, teacher_maps, **params) → scalar`), and its parameters
declared in autokd/recipe.py.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.nn.functional as F

DistillFn = Callable[..., torch.Tensor]
KD_LOSSES: dict[str, DistillFn] = {}  # every loss by name
FEATURE_LOSSES: set[str] = set()  # those that match feature maps, not logits


def register(name: str, features: bool = False) -> Callable[[DistillFn], DistillFn]:
    def add(fn: DistillFn) -> DistillFn:
        KD_LOSSES[name] = fn
        if features:
            FEATURE_LOSSES.add(name)
        return fn
    return add


def needs_features(name: str | None) -> bool:
    """Whether the loss `name` matches feature maps (the teacher then runs at every step; no logit cache)."""
    return name in FEATURE_LOSSES


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


def attention_map(feature: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Q = mean over channels of A² (B, H, W), average-pooled to `size` when given, flattened and L2-normalised per
    image: (B, H·W). The paper's F(A) = Σ_c |A_c|^p with p = 2; the mean differs by the constant C, which the
    normalisation removes."""
    q = feature.float().pow(2).mean(1)
    if size is not None and tuple(q.shape[-2:]) != tuple(size):
        q = F.adaptive_avg_pool2d(q.unsqueeze(1), size).squeeze(1)
    return F.normalize(q.flatten(1), dim=1)


@register("at", features=True)
def attention_transfer(student: list[torch.Tensor], teacher: list[torch.Tensor], *,
                       at_beta: float = 1000.0) -> torch.Tensor:
    """Attention transfer: β/2 · Σ_j mean((Q_s^j − Q_t^j)²) over matched pairs of group-end maps (as the authors'
    code computes it; β = 1000 there). Pairs are taken from the deepest group backwards, min(#student, #teacher) of
    them; a pair of different spatial sizes is compared at the smaller one (both maps average-pooled to it)."""
    if not student or not teacher:
        raise ValueError("attention transfer needs at least one feature map from the student and the teacher")
    total = student[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(reversed(student), reversed(teacher)):
        size = (min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1]))
        total = total + (attention_map(s, size) - attention_map(t, size)).pow(2).mean()
    return at_beta / 2 * total


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
    if name in FEATURE_LOSSES:
        raise ValueError(f"KD loss {name!r} matches feature maps: use feature_kd_loss")
    t = teacher_logits.float()
    if name == "hinton":  # the same float operations, in the same order, as before losses had names: same results
        kl = F.kl_div(F.log_softmax(s / temperature, dim=1), F.log_softmax(t / temperature, dim=1),
                      reduction="batchmean", log_target=True)
        return (1.0 - alpha) * ce + alpha * temperature * temperature * kl
    return (1.0 - alpha) * ce + alpha * KD_LOSSES[name](s, t, targets, temperature, **params)


def feature_kd_loss(student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor], hard: torch.Tensor,
                    alpha: float, name: str = "at", **params: float) -> torch.Tensor:
    """`(1-α)·hard + α·distill(student maps, teacher maps)` for a loss registered with `features=True`."""
    if name not in FEATURE_LOSSES:
        raise ValueError(f"KD loss {name!r} does not match feature maps")
    return (1.0 - alpha) * hard + alpha * KD_LOSSES[name](student_maps, teacher_maps, **params)
