"""Device-resident batches: the uint8 images live on the device, augmentation and normalisation run there.

No DataLoader workers and no host round trips per step. Shuffling, views and cutout come from a CPU generator
seeded by (seed, epoch), so batches are reproducible on any device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from autokd.data.augment import Augment, apply_view, random_views
from autokd.data.readers import ImageSet


@dataclass(frozen=True)
class Batch:
    x: torch.Tensor  # float (B, C, H, W), normalised, cropped and flipped; cutout is the trainer's (student only)
    y: torch.Tensor  # int64 (B,)
    index: torch.Tensor  # int64 (B,) positions in the loader's ImageSet (for the teacher-logit cache)
    view: torch.Tensor  # int64 (B,) augmentation view index (0 = identity when not augmenting)


class DeviceLoader:
    def __init__(self, data: ImageSet, batch_size: int, device: torch.device | str, mean: tuple[float, ...],
                 std: tuple[float, ...], augment: Augment | None = None, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, channels_last: bool = False) -> None:
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size = int(batch_size)
        self.augment = augment
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.channels_last = channels_last
        c = self.images.shape[1]
        # Normalisation folded into one multiply-add on uint8 → float: x = u8·scale + shift.
        self.scale = (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))).view(1, c, 1, 1).to(self.device)
        self.shift = (-torch.tensor(mean) / torch.tensor(std)).float().view(1, c, 1, 1).to(self.device)

    def __len__(self) -> int:
        n = self.labels.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    def normalise(self, u8: torch.Tensor) -> torch.Tensor:
        x = u8.float() * self.scale + self.shift
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def epoch(self, epoch: int = 0, skip: int = 0) -> Iterator[Batch]:
        """The epoch's batches; `skip` leaves out its first batches (a run continued from inside the epoch)."""
        n = self.num_images
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        aug = self.augment
        views = random_views(n, aug, gen) if aug is not None else torch.zeros(n, dtype=torch.int64)
        order_d, views_d = order.to(self.device), views.to(self.device)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(skip * self.batch_size, stop, self.batch_size):
            idx = order_d[start:start + self.batch_size]
            view = views_d[start:start + self.batch_size]
            u8 = self.images[idx]
            if aug is not None and aug.views > 1:
                u8 = apply_view(u8, view, aug.pad)
            yield Batch(self.normalise(u8), self.labels[idx], idx, view)
