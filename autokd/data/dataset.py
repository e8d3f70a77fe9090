"""Loading a dataset by name and splitting it: search uses a seeded train/validation split of the training set,
retrain uses train/test."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from autokd.data.readers import ImageSet, read_dataset
from autokd.data.registry import DatasetInfo, dataset_info, resolve
from autokd.errors import DatasetError
from autokd.memo import Memo

DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Dataset:
    info: DatasetInfo
    train: ImageSet
    test: ImageSet
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.info.input_shape


DATASETS = Memo("datasets", max_items=8)  # per process: a search's trials and a test module reread nothing


def load_dataset(name: str, data_dir: str | Path | None = None, image_size: int | None = None) -> Dataset:
    """Read the dataset's files (resolved as in registry.resolve); memoised per process."""
    info = dataset_info(name)
    if image_size is not None:
        if info.reader != "imagefolder":
            raise DatasetError(f"an image size applies to image-folder datasets, not {name}")
        info = replace(info, input_shape=(info.input_shape[0], int(image_size), int(image_size)))

    def read() -> Dataset:
        train, test, classes = read_dataset(info, resolve(name, data_dir))
        found = info if info.num_classes else replace(info, num_classes=classes)
        if 0 in info.input_shape:  # an image folder as its files are: their channels and size
            shape = tuple(int(x) for x in train.images.shape[1:])
            found = replace(found, input_shape=shape, **_statistics_for(shape[0], info))
        return Dataset(found, train, test, classes)

    return DATASETS.get((info.name, info.input_shape, str(data_dir)), read)


# ImageNet's per-channel statistics, and their luminance (ITU-R 601 weights) for a one-channel image folder
_GRAY_MEAN = 0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406
_GRAY_STD = 0.299 * 0.229 + 0.587 * 0.224 + 0.114 * 0.225


def _statistics_for(channels: int, info: DatasetInfo) -> dict[str, tuple[float, ...]]:
    if channels == len(info.mean):
        return {}
    return {"mean": (_GRAY_MEAN,) * channels, "std": (_GRAY_STD,) * channels}


def train_val_split(train: ImageSet, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0,
                    subset: int | None = None, val_images: int | None = None) -> tuple[ImageSet, ImageSet]:
    """Seeded split of the training set into (training, validation).

    The validation split is the first `val_images` images of a seeded permutation (default: `val_fraction` of the
    set), so it does not depend on `subset`; then `subset` N keeps N of the remaining training images. Without
    `val_images`, a subset validates on max(N // 5, 100) images (the smoke preset's small split)."""
    n = len(train)
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be in (0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    if val_images is not None:
        if not 1 <= val_images <= n - 2:
            raise DatasetError(f"val_images {val_images} leaves no training images: the training set has {n}; "
                               f"lower val_images")
        n_val = int(val_images)
    else:
        n_val = max(1, int(round(n * val_fraction)))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if subset is not None:
        if subset < 2:
            raise DatasetError(f"--subset must be at least 2, got {subset}")
        train_idx = train_idx[:subset]
        if val_images is None:
            val_idx = val_idx[:max(subset // 5, min(100, n_val))]
    return train.subset(train_idx), train.subset(val_idx)


def test_subset(test: ImageSet, subset: int | None, seed: int = 0) -> ImageSet:
    if subset is None or subset >= len(test):
        return test
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(int(seed)))
    return test.subset(perm[:subset])
