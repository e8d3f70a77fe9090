"""Teacher-logit cache: the teacher's logits for every crop-and-flip view of every training image, computed once
per (teacher checkpoint, images, augmentation, normalisation) and gathered by (image, view) during training.

Exact, not approximate: view v of image i is the same tensor whether the loader or the cache builder makes it, so
the student sees exactly the logits the teacher gives for its input (up to fp16 storage). Cutout is applied to the
student's input only, after the view, so it does not enter the cache.

Size: N × views × classes × 2 bytes (CIFAR-100, p=4: 50,000 × 162 × 100 × 2 B ≈ 1.6 GB); stored on disk under
the cache root, keyed by a hash of every key part, and loaded onto the training device after a memory check.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autokd.data.augment import Augment, apply_view
from autokd.data.loader import Batch
from autokd.data.readers import ImageSet
from autokd.data.registry import cache_root
from autokd.fsutil import write_atomic
from autokd.kd.teacher import OnTheFlyTeacher, Teacher

log = logging.getLogger(__name__)  # the CLI shows INFO on stderr; a library user's logging config decides

CACHE_FORMAT = "autokd.logits/1"


@dataclass(frozen=True)
class CacheKey:
    teacher_sha: str  # the teacher's fingerprint (SHA-256 of the files that define its function)
    images_sha: str  # sha256 of the uint8 images (in order)
    pad: int
    flip: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def digest(self) -> str:
        text = f"{CACHE_FORMAT}|{self.teacher_sha}|{self.images_sha}|{self.pad}|{self.flip}|{self.mean}|{self.std}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().cpu().numpy().tobytes()).hexdigest()


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def compute_logits(teacher: Teacher, images: ImageSet, aug: Augment, mean: tuple[float, ...],
                   std: tuple[float, ...], device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """fp16 (N, views, K) logits on the CPU: view v of every image through the teacher in eval mode (inputs
    normalised with the dataset's statistics, then renormalised to the teacher's as during training)."""
    live = OnTheFlyTeacher(teacher, mean, std)
    c = images.images.shape[1]
    scale = (1.0 / (255.0 * torch.tensor(std))).view(1, c, 1, 1).to(device)
    shift = (-torch.tensor(mean) / torch.tensor(std)).view(1, c, 1, 1).to(device)
    n, views = len(images), aug.views
    # a mirrored teacher (each member averaged over the image and its mirror) is flip-invariant: a flipped view has
    # its unflipped twin's logits (view v + (2p+1)² is view v flipped), so half the views are computed, then copied
    unflipped = (2 * aug.pad + 1) ** 2
    flip_invariant = aug.flip and bool(teacher.meta.get("mirror"))
    out: torch.Tensor | None = None
    for start in range(0, n, batch_size):
        u8 = images.images[start:start + batch_size].to(device)
        for v in range(unflipped if flip_invariant else views):
            view = torch.full((u8.shape[0],), v, dtype=torch.int64, device=device)
            x = apply_view(u8, view, aug.pad).float() * scale + shift
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            logits = live.logits(x)
            if out is None:
                out = torch.empty(n, views, logits.shape[1], dtype=torch.float16)
            out[start:start + u8.shape[0], v] = logits.half().cpu()
    assert out is not None
    if flip_invariant:
        out[:, unflipped:] = out[:, :unflipped]
    return out


def _key(teacher: Teacher, images: ImageSet, aug: Augment, mean: tuple[float, ...],
         std: tuple[float, ...]) -> CacheKey:
    return CacheKey(teacher.fingerprint, tensor_sha256(images.images), aug.pad, aug.flip, tuple(mean), tuple(std))


def cache_path(teacher: Teacher, images: ImageSet, aug: Augment, mean: tuple[float, ...],
               std: tuple[float, ...]) -> Path:
    """Where this teacher's logits for these images and views live (present or not)."""
    return cache_root() / "logits" / f"{_key(teacher, images, aug, mean, std).digest()}.pt"


def load_or_build(teacher: Teacher, images: ImageSet, aug: Augment, mean: tuple[float, ...],
                  std: tuple[float, ...], device: torch.device, quiet: bool = False) -> tuple[torch.Tensor, Path]:
    """The cache tensor (on CPU) and its file; built and written atomically when missing or when a key part
    changed (a changed key is a different file)."""
    key = _key(teacher, images, aug, mean, std)
    path = cache_root() / "logits" / f"{key.digest()}.pt"
    if path.is_file():
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if obj.get("format") == CACHE_FORMAT and obj.get("key") == key.digest():
                return obj["logits"], path
        except Exception:  # a corrupt cache file is rebuilt, never trusted
            pass
    if not quiet:
        log.info(f"autokd: computing teacher logits for {len(images)} images × {aug.views} views → {path}")
    logits = compute_logits(teacher, images, aug, mean, std, device)
    buf = io.BytesIO()
    torch.save({"format": CACHE_FORMAT, "key": key.digest(), "key_parts": key.__dict__, "logits": logits}, buf)
    write_atomic(path, buf.getvalue())
    return logits, path


class CachedTeacher:
    """Teacher logits gathered from the cache by (image, view): no teacher forward during training."""

    def __init__(self, logits: torch.Tensor, train: ImageSet, cache_ids: torch.Tensor, device: torch.device,
                 headroom: float = 1.2) -> None:
        need = logits.numel() * logits.element_size()
        if need * headroom > free_bytes(device):
            raise MemoryError(f"the teacher-logit cache needs {need / 2**30:.2f} GiB on {device}, "
                              f"{free_bytes(device) / 2**30:.2f} GiB are free")
        self.logits = logits.to(device)
        # Row of the cache for each position of the training set the loader indexes.
        where = {int(i): k for k, i in enumerate(cache_ids.tolist())}
        self.rows = torch.tensor([where[int(i)] for i in train.image_ids().tolist()], device=device)

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.logits[self.rows[batch.index], batch.view].float()


def describe(logits: torch.Tensor) -> dict[str, Any]:
    return {"images": logits.shape[0], "views": logits.shape[1], "classes": logits.shape[2],
            "bytes": logits.numel() * 2}
