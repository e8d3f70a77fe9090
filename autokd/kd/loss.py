"""Hinton knowledge-distillation loss (REFERENCE §1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None,
            temperature: float, alpha: float, hard: torch.Tensor | None = None) -> torch.Tensor:
    """`(1-α)·CE(y, s) + α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ))`, KL averaged over the batch ("batchmean").

    Logits (B, K) of any float dtype are computed in float32. α = 0 (or no teacher) is plain cross entropy; τ² keeps
    the soft-target gradients on the scale of the hard ones as τ changes. `hard`: the hard-label term when the caller
    computes its own (e.g. with label smoothing); default CE(y, s).
    """
    s = student_logits.float()
    ce = F.cross_entropy(s, targets) if hard is None else hard
    if teacher_logits is None or alpha == 0.0:
        return ce
    t = teacher_logits.float()
    kl = F.kl_div(F.log_softmax(s / temperature, dim=1), F.log_softmax(t / temperature, dim=1),
                  reduction="batchmean", log_target=True)
    return (1.0 - alpha) * ce + alpha * temperature * temperature * kl
