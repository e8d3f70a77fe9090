"""Where training runs: every device-specific choice in one place. On CUDA a step runs under bf16 autocast and its
memory is the allocator's peak; on a CPU the arithmetic is fp32 unless a recipe asks for bf16 (autokd.speed picks
the layout) and the memory is the process's peak RSS. Callers never test `device.type` themselves."""

from __future__ import annotations

import resource
from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = ["pick_device", "autocast", "reset_peak_memory", "peak_memory_mb", "release_memory"]


def pick_device(requested: str | None = None) -> torch.device:
    """The device a run asked for; "auto" or None: the GPU when there is one."""
    if requested and requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device, precision: str = "auto") -> AbstractContextManager:
    """The mixed precision a forward pass runs under (autokd.recipe.PRECISIONS): "auto" is bf16 on CUDA and none
    (fp32) elsewhere; "bf16" is bf16 autocast on any device (on a CPU it pays only with native bf16 instructions);
    "fp32" is none."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision not in ("auto", "fp32"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return nullcontext()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the peak allocated since the last reset; CPU: the process's peak resident set (never reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def release_memory(device: torch.device) -> None:
    """Give cached GPU blocks back after a run, so the next student on a shared GPU finds them."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
