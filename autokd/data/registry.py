"""Dataset registry and file resolution.

Files resolve in this order: `--data-dir`, `$AUTOKD_DATA`, system locations (Debian's dataset packages), the cache
`~/.cache/autokd/datasets` (downloaded there, checksum-verified, where a network exists).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

from autokd.errors import DatasetError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W) as the network sees it
    num_classes: int
    mean: tuple[float, ...]  # per-channel normalisation, in [0, 1] pixel units
    std: tuple[float, ...]
    reader: str  # "idx", "cifar10", "cifar100", "imagefolder", "synthetic"
    required: tuple[str, ...] = ()  # files (relative to the dataset folder) that must exist
    subdirs: tuple[str, ...] = ("",)  # folder names tried under each root
    system_dirs: tuple[str, ...] = ()
    md5: dict[str, str] = field(default_factory=dict)  # file → md5, verified on download and on first use
    # file → md5 of the gunzipped payload: Debian re-compresses the upstream .gz (other bytes, same content)
    raw_md5: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)  # file → download address
    archive: str | None = None  # tar.gz holding the files (CIFAR), unpacked into the cache
    archive_md5: str | None = None
    train_size: int = 0
    test_size: int = 0
    help: str = ""
    # test accuracy of autokd.baselines.linear_baseline trained on (up to 20k of) the training set; None: not
    # measured (a teacher trained by autokd records its own)
    linear_baseline: float | None = None


_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz")

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,), "idx", _IDX,
        subdirs=("", "fashion-mnist", "FashionMNIST/raw"), system_dirs=("/usr/share/datasets/fashion-mnist",),
        md5={"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
             "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
             "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
             "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        raw_md5={"train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                 "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
                 "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
                 "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965"},
        urls={f: f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{f}" for f in _IDX},
        train_size=60000, test_size=10000, linear_baseline=0.8311,
        help="apt-get install dataset-fashion-mnist (Debian), or put the four IDX .gz files in --data-dir"),
    "mnist": DatasetInfo(
        "mnist", (1, 28, 28), 10, (0.1307,), (0.3081,), "idx", _IDX,
        subdirs=("", "mnist", "MNIST/raw"), system_dirs=("/usr/share/datasets/mnist",),
        md5={"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
             "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
             "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        urls={f: f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}" for f in _IDX},
        train_size=60000, test_size=10000, help="put the four MNIST IDX .gz files in --data-dir"),
    "cifar10": DatasetInfo(
        "cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar10",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",), subdirs=("cifar-10-batches-py", ""),
        urls={"cifar-10-python.tar.gz": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"},
        archive="cifar-10-python.tar.gz", archive_md5="c58f30108f718f92721af3b95e74349a",
        train_size=50000, test_size=10000,
        help="put cifar-10-batches-py/ (the official python version) in --data-dir"),
    "cifar100": DatasetInfo(
        "cifar100", (3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar100",
        ("train", "test"), subdirs=("cifar-100-python", ""),
        urls={"cifar-100-python.tar.gz": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"},
        archive="cifar-100-python.tar.gz", archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        train_size=50000, test_size=10000,
        help="put cifar-100-python/ (the official python version) in --data-dir"),
    # images as the files are (channels and size: 0, read from them); `imagefolder:SIZE` resizes to SIZE×SIZE
    "imagefolder": DatasetInfo(
        "imagefolder", (0, 0, 0), 0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagefolder",
        subdirs=("",), help="--data-dir DIR with DIR/train/<class>/*.png|jpg and DIR/test/<class>/*; read at the "
        "files' own size and channels (imagefolder:SIZE resizes to SIZE×SIZE)"),
    "mit67": DatasetInfo(
        "mit67", (3, 224, 224), 67, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagefolder",
        subdirs=("mit67", "MIT67", ""),
        help="put MIT67 as mit67/train/<class>/*.jpg and mit67/test/<class>/*.jpg in --data-dir"),
    "synthetic": DatasetInfo(
        "synthetic", (3, 32, 32), 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "synthetic",
        train_size=5000, test_size=1000,
        help="random images for benchmarks: synthetic[:CxHxW[:CLASSES[:TRAIN_SIZE]]], e.g. synthetic:3x32x32:100:50000"),
}

_SYNTH = re.compile(r"^synthetic(?::(\d+)x(\d+)x(\d+))?(?::(\d+))?(?::(\d+))?$")
_FOLDER = re.compile(r"^imagefolder:(\d+)$")  # an image folder resized to SIZE×SIZE


def cache_root() -> Path:
    return Path(os.environ.get("AUTOKD_CACHE", Path.home() / ".cache" / "autokd"))


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for `name`; `synthetic:...` names carry their own shape, classes and size."""
    m = _SYNTH.match(name)
    if m:
        base = DATASETS["synthetic"]
        shape = tuple(int(x) for x in m.group(1, 2, 3)) if m.group(1) else base.input_shape
        classes = int(m.group(4)) if m.group(4) else base.num_classes
        train = int(m.group(5)) if m.group(5) else base.train_size
        if classes < 2 or train < 2 or min(shape) < 1:
            raise DatasetError(f"dataset {name!r}: need >= 2 classes, >= 2 images and a positive shape")
        c = shape[0]
        return DatasetInfo(name, shape, classes, (0.5,) * c, (0.25,) * c, "synthetic",
                           train_size=train, test_size=max(2, train // 5), help=base.help)
    folder = _FOLDER.match(name)
    if folder:
        size = int(folder.group(1))
        if not 4 <= size <= 1024:
            raise DatasetError(f"dataset {name!r}: SIZE must be 4..1024 pixels")
        return replace(DATASETS["imagefolder"], name=name, input_shape=(0, size, size))
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (see `autokd datasets`)")
    return DATASETS[name]


def candidate_dirs(info: DatasetInfo, data_dir: str | Path | None) -> list[Path]:
    roots: list[Path] = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("AUTOKD_DATA"):
        roots.append(Path(os.environ["AUTOKD_DATA"]))
    dirs = [r / s if s else r for r in roots for s in info.subdirs]
    dirs += [Path(d) for d in info.system_dirs]
    cache = cache_root() / "datasets" / info.name
    dirs += [cache / s if s else cache for s in info.subdirs]
    return dirs


def _has_files(info: DatasetInfo, d: Path) -> bool:
    if info.reader == "imagefolder":
        return (d / "train").is_dir() and ((d / "test").is_dir() or (d / "val").is_dir())
    return d.is_dir() and all((d / f).is_file() for f in info.required)


def md5sum(path: Path, gunzip: bool = False) -> str:
    h = hashlib.md5()
    with (gzip.open(path, "rb") if gunzip else open(path, "rb")) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksums(info: DatasetInfo, d: Path) -> None:
    """Compare the files' md5 against the registry; a good check is remembered (by path, size and mtime) in the
    cache, so read-only system folders are hashed once, not on every run."""
    if not info.md5:
        return
    stamp = "|".join(f"{(d / f).resolve()}:{(d / f).stat().st_size}:{(d / f).stat().st_mtime_ns}" for f in info.md5)
    marker = cache_root() / "verified" / hashlib.sha256(stamp.encode()).hexdigest()[:32]
    if marker.is_file():
        return
    for f, want in info.md5.items():
        try:
            got = md5sum(d / f)
            if got != want and f in info.raw_md5 and md5sum(d / f, gunzip=True) == info.raw_md5[f]:
                continue
        except (OSError, EOFError) as exc:  # unreadable, not gzip, truncated
            raise DatasetError(f"{info.name}: {d / f} cannot be read ({type(exc).__name__}); the file is corrupt, "
                               f"replace it") from None
        if got != want:
            raise DatasetError(f"{info.name}: {d / f} has md5 {got}, expected {want}; the file is corrupt or not "
                               f"the official one, replace it")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{info.name} md5 verified: {d}\n")
    except OSError:
        pass  # unwritable cache: verify again next time


def resolve(name: str, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The folder that holds `name`'s files, downloading into the cache where a network exists."""
    info = dataset_info(name)
    if info.reader == "synthetic":
        return Path("/dev/null")
    if data_dir is not None:
        check_data_dir(info, Path(data_dir))
    for d in candidate_dirs(info, data_dir):
        if _has_files(info, d):
            verify_checksums(info, d)
            return d
    if download and info.urls:
        return _download(info)
    where = ", ".join(str(d) for d in candidate_dirs(info, data_dir))
    raise DatasetError(f"dataset {name} not found (looked in {where}); {info.help}")


def check_data_dir(info: DatasetInfo, root: Path) -> None:
    """An explicit --data-dir must exist, be a folder, and hold the dataset whole (checksums included) wherever it
    holds any of its files: a broken copy there is an error, never a silent fall-back to another copy."""
    if not root.exists():
        raise DatasetError(f"--data-dir {root} does not exist; give the folder that holds the {info.name} files")
    if not root.is_dir():
        raise DatasetError(f"--data-dir {root} is a file; give the folder that holds the {info.name} files")
    for d in (root / s if s else root for s in info.subdirs):
        present = [f for f in info.required if (d / f).exists()]
        if present and len(present) < len(info.required):
            missing = [f for f in info.required if f not in present]
            raise DatasetError(f"{d} holds part of {info.name} but lacks {', '.join(missing)}; add them or remove "
                               f"the partial copy")
        if present:
            verify_checksums(info, d)
            return


def _download(info: DatasetInfo) -> Path:
    target = cache_root() / "datasets" / info.name
    target.mkdir(parents=True, exist_ok=True)
    try:
        for fname, url in info.urls.items():
            tmp = target / (fname + ".part")
            with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out)
            want = info.archive_md5 if fname == info.archive else info.md5.get(fname)
            if want and md5sum(tmp) != want:
                tmp.unlink()
                raise DatasetError(f"{info.name}: download of {url} has a wrong checksum; try again")
            tmp.replace(target / fname)
            if fname == info.archive:
                shutil.unpack_archive(str(target / fname), str(target))
    except OSError as exc:
        raise DatasetError(f"dataset {info.name} not found locally and the download failed ({exc}); "
                           f"{info.help}") from None
    for d in candidate_dirs(info, None):
        if _has_files(info, d):
            return d
    raise DatasetError(f"dataset {info.name}: downloaded files are incomplete in {target}; {info.help}")


def describe(name: str, data_dir: str | Path | None = None) -> tuple[bool, str]:
    """(available, where or why not) without downloading."""
    info = dataset_info(name)
    if info.reader == "synthetic":
        return True, "generated in memory"
    try:
        return True, str(resolve(name, data_dir, download=False))
    except DatasetError as exc:
        return False, str(exc)
