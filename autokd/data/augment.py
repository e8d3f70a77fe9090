"""Batched augmentation on the device: random crop with zero padding, horizontal flip, optional cutout.

With crop-and-flip an image has a finite set of views, 2·(2p+1)² for padding p; each batch reports the view index
`v = flip·(2p+1)² + dy·(2p+1) + dx` so a teacher-logit cache can be gathered by (image, view).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    pad: int = 4  # pixels of zero padding before the random crop; 0 disables cropping
    flip: bool = True
    cutout: int = 0  # side of the zeroed square (after normalisation); 0 disables. Student input only.

    @property
    def views(self) -> int:
        return (2 if self.flip else 1) * (2 * self.pad + 1) ** 2


def decode_views(view: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """view index → (dy, dx, flip), each (B,) int64."""
    side = 2 * pad + 1
    flip, rest = view // (side * side), view % (side * side)
    return rest // side, rest % side, flip


def apply_view(images: torch.Tensor, view: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop (offset dy, dx into the zero-padded image) and flip a uint8 or float batch (B, C, H, W) per its view."""
    dy, dx, flip = decode_views(view.to(images.device), pad)
    b, _, h, w = images.shape
    if pad > 0:
        padded = F.pad(images, (pad, pad, pad, pad))
        rows = (dy[:, None] + torch.arange(h, device=images.device)[None, :])  # (B, H)
        cols = (dx[:, None] + torch.arange(w, device=images.device)[None, :])  # (B, W)
        bi = torch.arange(b, device=images.device)[:, None, None]
        # Advanced indexing gives (B, H, W, C); move channels back.
        images = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if bool(flip.any()):
        images = torch.where(flip.bool()[:, None, None, None], images.flip(3), images)
    return images.contiguous()


def random_views(n: int, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    side = 2 * aug.pad + 1
    flips = torch.randint(0, 2, (n,), generator=generator) if aug.flip else torch.zeros(n, dtype=torch.int64)
    return flips * side * side + torch.randint(0, side * side, (n,), generator=generator)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a size×size square (clipped at the border) centred at a random pixel of each image (DARTS' cutout)."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=generator).to(x.device)
    cx = torch.randint(0, w, (b,), generator=generator).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    inside_y = (ys >= (cy[:, None] - size // 2)) & (ys < (cy[:, None] + size - size // 2))
    inside_x = (xs >= (cx[:, None] - size // 2)) & (xs < (cx[:, None] + size - size // 2))
    mask = inside_y[:, :, None] & inside_x[:, None, :]  # (B, H, W)
    return x.masked_fill(mask[:, None], 0.0)
