"""Cheaper arithmetic for the student on CPUs: the same functions as the plain modules, computed with fewer passes
over memory. Parameters and buffers stay those of the plain modules (same state dict), so a checkpoint trained with
either path loads into the other; `tests/test_fused.py` compares both paths' outputs, gradients and running
statistics on random architectures.

Why: a NAGO student on a CPU is bound by memory traffic, not arithmetic. Its head (ReLU → 1×1 conv to 1280 channels
→ BatchNorm → ReLU → global average pool) writes and rereads a (B, 1280, H, W) tensor half a dozen times: 30% of a
training step for a 100k-parameter Fashion-MNIST student. Here the head is one matrix product in (pixels, channels)
layout with BatchNorm folded into it; the batch statistics of the 1280 outputs come exactly from the mean and
covariance of the few input channels (y = W·r is linear in r, so mean(y) = W·mean(r), var(y_c) = w_cᵀ Cov(r) w_c).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var_biased: torch.Tensor, n: int) -> None:
    """What BatchNorm's training forward does to its buffers: exponential (or cumulative) moving averages, with the
    unbiased variance."""
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return
    with torch.no_grad():
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
        factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), factor)
        bn.running_var.lerp_((var_biased * (n / max(1, n - 1))).to(bn.running_var.dtype), factor)


class _ReluPixelMeanOfProduct(torch.autograd.Function):
    """(a, m, B) → mean over pixels of ReLU(a @ m), with a: (B·P, K), m: (K, C) → (B, C).

    Computed in chunks of images whose (rows, C) product stays in cache, and recomputed in the backward instead of
    kept: the (B·P, C) tensor (32 MB for a batch of 128 at 7×7×1280) is never materialised, so neither written,
    reread nor page-faulted in. K is small (a student's last-stage width + 1), so the recomputation is cheap."""

    CHUNK_ROWS = 2048  # 2048 × 1280 floats = 10 MB: one chunk's product

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)  # under CPU autocast: fp32 inside
    def forward(ctx, a: torch.Tensor, m: torch.Tensor, batch: int) -> torch.Tensor:  # type: ignore[override]
        pixels = a.shape[0] // batch
        step = max(1, _ReluPixelMeanOfProduct.CHUNK_ROWS // pixels)  # images per chunk
        out = a.new_empty(batch, m.shape[1])
        for i in range(0, batch, step):
            z = (a[i * pixels:(i + step) * pixels] @ m).clamp_min_(0.0)
            torch.sum(z.view(-1, pixels, m.shape[1]), 1, out=out[i:i + step])
        ctx.save_for_backward(a, m)
        ctx.batch = batch
        return out.mul_(1.0 / pixels)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        a, m = ctx.saved_tensors
        batch = ctx.batch
        pixels = a.shape[0] // batch
        step = max(1, _ReluPixelMeanOfProduct.CHUNK_ROWS // pixels)
        grad = grad * (1.0 / pixels)
        grad_a = torch.empty_like(a) if ctx.needs_input_grad[0] else None
        grad_m = torch.zeros_like(m) if ctx.needs_input_grad[1] else None
        for i in range(0, batch, step):
            rows = slice(i * pixels, (i + step) * pixels)
            z = a[rows] @ m
            n = z.shape[0] // pixels
            # ReLU's own backward kernel reads the broadcast gradient in place (torch.where is ~10× slower here)
            g = torch.ops.aten.threshold_backward(grad[i:i + n].unsqueeze(1).expand(n, pixels, m.shape[1]),
                                                  z.view(n, pixels, -1), 0.0).view(-1, m.shape[1])
            if grad_a is not None:
                torch.mm(g, m.t(), out=grad_a[rows])
            if grad_m is not None:
                grad_m.addmm_(a[rows].t(), g)
        return grad_a, grad_m, None


def head_features(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """mean_{h,w} ReLU(BN(conv1×1(ReLU(x)))) → (B, C_out), for a bias-free 1×1 conv; the same function as
    `nn.Sequential(ReLU, conv, bn, ReLU, AdaptiveAvgPool2d(1), Flatten)` in training and in eval mode."""
    b, c_in, h, w = x.shape
    n = b * h * w
    r = F.relu(x).permute(0, 2, 3, 1).reshape(n, c_in)  # (pixels, input channels)
    weight = conv.weight.reshape(conv.out_channels, c_in)  # (C_out, C_in)
    use_batch_stats = bn.training or not bn.track_running_stats
    if use_batch_stats:
        mean_r = r.mean(0)
        centred = r - mean_r
        cov = centred.t() @ centred / n  # (C_in, C_in), biased like BatchNorm's normalisation
        mean_y = weight @ mean_r
        var_y = ((weight @ cov) * weight).sum(1).clamp_min(0.0)
        if bn.training:
            _update_running_stats(bn, mean_y.detach(), var_y.detach(), n)
        inputs, offset = centred, torch.zeros_like(mean_y)  # y − mean(y) = W·(r − mean(r))
    else:
        mean_y, var_y = bn.running_mean, bn.running_var
        inputs, offset = r, mean_y
    scale = torch.rsqrt(var_y + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -offset * scale + (bn.bias if bn.affine else 0.0)
    # BN(conv(ReLU(x))) as one product, the shift riding on a column of ones: (pixels, C_in+1) @ (C_in+1, C_out).
    ones = torch.ones(n, 1, dtype=inputs.dtype, device=inputs.device)
    folded = torch.cat([(weight * scale[:, None]).t(), shift.unsqueeze(0)], 0)
    return _ReluPixelMeanOfProduct.apply(torch.cat([inputs, ones], 1), folded, b)


def conv_bn_eval(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """bn(conv(x)) in eval mode as one convolution: BatchNorm's running statistics folded into weight and bias."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    shift = (bias - bn.running_mean) * scale + (bn.bias if bn.affine else 0.0)
    return F.conv2d(x, conv.weight * scale.view(-1, 1, 1, 1), shift, conv.stride, conv.padding, conv.dilation,
                    conv.groups)


def gated_sum(xs: list[torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
    """Σ_e sigmoid(w_e)·x_e with one fused multiply-add per extra input."""
    gates = torch.sigmoid(weight).to(xs[0].dtype)
    out = xs[0] * gates[0]
    for i in range(1, len(xs)):
        out = torch.addcmul(out, xs[i], gates[i])
    return out


def mean_of(xs: list[torch.Tensor]) -> torch.Tensor:
    """Mean of same-shaped tensors without stacking them into a new (k, ...) tensor first."""
    if len(xs) == 1:
        return xs[0]
    out = xs[0] + xs[1]
    for t in xs[2:]:
        out = out + t
    return out * (1.0 / len(xs))
