"""Readers of the datasets' own file formats into uint8 image tensors (N, C, H, W) and int64 labels (N,)."""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autokd.data.registry import DatasetInfo
from autokd.errors import DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
MAX_IMAGE_PIXELS = 40_000_000  # far above any photo dataset; larger is a decompression bomb


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    ids: torch.Tensor | None = None  # int64 (N,) positions in the set this was cut from; None: 0..N-1

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def image_ids(self) -> torch.Tensor:
        return self.ids if self.ids is not None else torch.arange(len(self))

    def subset(self, index: torch.Tensor) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index], self.image_ids()[index])


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped): magic 0x00 0x00 dtype ndim, big-endian dims, then row-major data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read IDX file ({exc}); the file is corrupt, replace it") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file; replace it with the official one")
    ndim = data[3]
    if ndim not in (1, 3) or len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: IDX header has {ndim} dimensions; expected images (3) or labels (1)")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: IDX header says {dims} but holds {body.size} bytes; the file is truncated")
    return body.reshape(dims)


def _idx_pair(d: Path, prefix: str) -> ImageSet:
    images = read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(d / f"{prefix}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetError(f"{d}: {prefix} images must be a 3-d IDX file and labels a 1-d one; are they swapped?")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{d}: {prefix} images ({images.shape[0]}) and labels ({labels.shape[0]}) differ")
    return ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


class _PlainUnpickler(pickle.Unpickler):
    """CIFAR batches hold dicts of bytes, lists and numpy arrays: nothing else is built (no code runs)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _PlainUnpickler(fh, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            MemoryError, RecursionError) as exc:
        raise DatasetError(f"{path}: cannot read CIFAR batch ({type(exc).__name__}); replace it with the official "
                           f"file") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: a CIFAR batch is a pickled dict, this holds a {type(obj).__name__}; replace it")
    return obj


def _cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    obj = _unpickle(path)
    if b"data" not in obj or label_key not in obj:
        raise DatasetError(f"{path}: CIFAR batch lacks b'data' or {label_key!r}; is it the python version?")
    raw = np.asarray(obj[b"data"])
    if raw.dtype != np.uint8 and not (np.issubdtype(raw.dtype, np.integer) and raw.size and raw.min() >= 0
                                      and raw.max() <= 255):
        raise DatasetError(f"{path}: CIFAR pixels must be uint8 in [0, 255], got {raw.dtype}; replace the file")
    data = raw.astype(np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: CIFAR data must be N×3072 uint8, got {data.shape}")
    labels = np.asarray(obj[label_key])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) != len(data):
        raise DatasetError(f"{path}: {label_key!r} must be {len(data)} integer labels, got {labels.dtype} "
                           f"{labels.shape}; replace the file")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar(paths: list[Path], label_key: bytes) -> ImageSet:
    parts = [_cifar_batch(p, label_key) for p in paths]
    return ImageSet(torch.from_numpy(np.concatenate([p[0] for p in parts])),
                    torch.from_numpy(np.concatenate([p[1] for p in parts])))


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes read as one channel at native size


def _image_folder(root: Path, classes: list[str], shape: tuple[int, int, int]) -> ImageSet:
    """Every image of root/<class>/ as uint8 (C, H, W). `shape` (C, H, W) with 0 for "as the files are": channels
    0 keeps grayscale files at one channel (colour at three), height and width 0 keep the files' size (they must all
    share it); a given size resizes the shorter side to it and centre-crops, keeping the aspect ratio."""
    from PIL import Image  # pillow: only image-folder datasets need it

    channels, size = shape[0], tuple(shape[1:])
    images, labels = [], []
    for label, cls in enumerate(classes):
        cdir = root / cls
        files = sorted(p for p in cdir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if cdir.is_dir() else []
        if not files:
            raise DatasetError(f"{cdir}: class {cls!r} has no images (or no folder) here; every class needs images in "
                               f"both train/ and test/")
        for f in files:
            try:
                with Image.open(f) as im:
                    if im.width * im.height > MAX_IMAGE_PIXELS:
                        raise DatasetError(f"{f}: {im.width}×{im.height} pixels is too large to be a training "
                                           f"image (a decompression bomb?); remove it")
                    gray = channels == 1 or (channels == 0 and im.mode in GRAY_MODES)
                    im = im.convert("L" if gray else "RGB")
                    if size != (0, 0):  # resize the shorter side to the target, then centre-crop
                        w, h = im.size
                        scale = max(size[1] / w, size[0] / h)
                        im = im.resize((max(size[1], round(w * scale)), max(size[0], round(h * scale))),
                                       Image.BILINEAR)
                        left, top = (im.size[0] - size[1]) // 2, (im.size[1] - size[0]) // 2
                        im = im.crop((left, top, left + size[1], top + size[0]))
                    a = np.asarray(im, dtype=np.uint8)
                    images.append((a[None] if a.ndim == 2 else a.transpose(2, 0, 1)).copy())
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise DatasetError(f"{f}: cannot read image ({type(exc).__name__}); remove or replace it") from None
            if images[-1].shape[1:] != images[0].shape[1:]:
                raise DatasetError(f"{f} is {images[-1].shape[2]}×{images[-1].shape[1]} pixels but {files[0]} is "
                                   f"{images[0].shape[2]}×{images[0].shape[1]}: images of one dataset share a size; "
                                   f"use --dataset imagefolder:SIZE to resize them all to SIZE×SIZE")
            labels.append(label)
    if not images:
        raise DatasetError(f"{root}: no images found (expected {root}/<class>/*.jpg)")
    if len({a.shape[0] for a in images}) > 1:  # grayscale and colour files mixed: colour wins
        images = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in images]
    return ImageSet(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))


def image_folder_classes(d: Path) -> list[str]:
    classes = sorted(p.name for p in (d / "train").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DatasetError(f"{d}/train must hold one folder per class (at least 2), found {len(classes)}")
    return classes


def synthetic(info: DatasetInfo, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Random uint8 images with random labels (for throughput benchmarks, not for learning)."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = info.input_shape

    def make(n: int) -> ImageSet:
        return ImageSet(torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g),
                        torch.randint(0, info.num_classes, (n,), generator=g))

    return make(info.train_size), make(info.test_size)


def read_dataset(info: DatasetInfo, d: Path) -> tuple[ImageSet, ImageSet, int]:
    """(train, test, num_classes) from the resolved folder; checks labels against the class count."""
    if info.reader == "idx":
        train, test = _idx_pair(d, "train"), _idx_pair(d, "t10k")
    elif info.reader == "cifar10":
        train = _cifar([d / f"data_batch_{i}" for i in range(1, 6)], b"labels")
        test = _cifar([d / "test_batch"], b"labels")
    elif info.reader == "cifar100":
        train, test = _cifar([d / "train"], b"fine_labels"), _cifar([d / "test"], b"fine_labels")
    elif info.reader == "imagefolder":
        classes = image_folder_classes(d)
        test_dir = d / "test" if (d / "test").is_dir() else d / "val"
        test_classes = sorted(p.name for p in test_dir.iterdir() if p.is_dir())
        if test_classes != classes:
            missing = sorted(set(classes) - set(test_classes)) or sorted(set(test_classes) - set(classes))
            raise DatasetError(f"{d}: train/ and {test_dir.name}/ hold different classes ({', '.join(missing[:5])}); "
                               f"give both the same class folders")
        train = _image_folder(d / "train", classes, info.input_shape)
        test = _image_folder(test_dir, classes, info.input_shape)
        if train.images.shape[1:] != test.images.shape[1:]:
            raise DatasetError(f"{d}: train/ images are {tuple(train.images.shape[1:])} but {test_dir.name}/ images "
                               f"are {tuple(test.images.shape[1:])}; use --dataset imagefolder:SIZE to resize both")
        if info.num_classes and len(classes) != info.num_classes:
            raise DatasetError(f"{d}: {info.name} has {info.num_classes} classes, found {len(classes)} folders")
        return train, test, len(classes)
    elif info.reader == "synthetic":
        train, test = synthetic(info)
    else:
        raise DatasetError(f"no reader {info.reader!r} for dataset {info.name}")
    for part, s in (("train", train), ("test", test)):
        lo, hi = int(s.labels.min()), int(s.labels.max())
        if lo < 0 or hi >= info.num_classes:
            raise DatasetError(f"{info.name} {part} labels span {lo}..{hi}, but the dataset has "
                               f"{info.num_classes} classes; wrong files for this dataset?")
        if tuple(s.images.shape[1:]) != info.input_shape:
            raise DatasetError(f"{info.name} {part} images are {tuple(s.images.shape[1:])}, expected "
                               f"{info.input_shape}")
    return train, test, info.num_classes
