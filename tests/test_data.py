import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from autokd.data.augment import Augment, apply_view, decode_views, random_views
from autokd.data.dataset import load_dataset, train_val_split
from autokd.data.loader import DeviceLoader
from autokd.data.readers import read_idx
from autokd.data.registry import dataset_info, resolve
from autokd.errors import DatasetError
from tests.conftest import FASHION_DIR


def write_cifar10(root, n_per_batch=20, seed=0):
    """The official python layout: cifar-10-batches-py/{data_batch_1..5,test_batch}, pickled dicts of bytes keys."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n_per_batch).tolist(),
               b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
               b"filenames": [f"{i}.png".encode() for i in range(n_per_batch)]}
        with open(d / name, "wb") as fh:
            pickle.dump(obj, fh, protocol=2)
    return d


def write_cifar100(root, n=30, seed=0):
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in ("train", "test"):
        obj = {b"fine_labels": rng.integers(0, 100, n).tolist(), b"coarse_labels": rng.integers(0, 20, n).tolist(),
               b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        with open(d / name, "wb") as fh:
            pickle.dump(obj, fh, protocol=2)
    with open(d / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, fh)
    return d


def test_cifar10_pickles_load_with_channel_planes_in_order(tmp_path):
    d = write_cifar10(tmp_path)
    with open(d / "data_batch_1", "rb") as fh:
        first = pickle.load(fh, encoding="bytes")
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train.images.shape == (100, 3, 32, 32) and ds.test.images.shape == (20, 3, 32, 32)
    row = first[b"data"][0]  # 1024 red, then 1024 green, then 1024 blue values, row-major
    img = ds.train.images[0]
    assert img[0, 0, 1] == row[1] and img[1, 0, 0] == row[1024] and img[2, 31, 31] == row[3071]
    assert ds.train.labels[:20].tolist() == first[b"labels"]


def test_cifar100_uses_fine_labels(tmp_path):
    d = write_cifar100(tmp_path)
    with open(d / "train", "rb") as fh:
        obj = pickle.load(fh, encoding="bytes")
    ds = load_dataset("cifar100", tmp_path)
    assert ds.num_classes == 100 and ds.train.labels.tolist() == obj[b"fine_labels"]


def test_wrong_class_count_is_a_clear_error(tmp_path):
    d = write_cifar10(tmp_path)  # put CIFAR-10 files where CIFAR-100 should be, with labels out of range
    d2 = tmp_path / "c100" / "cifar-100-python"
    d2.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("train", "test"):
        with open(d2 / name, "wb") as fh:
            pickle.dump({b"fine_labels": [0, 150], b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8)}, fh)
    with pytest.raises(DatasetError, match="100 classes"):
        load_dataset("cifar100", tmp_path / "c100")
    assert d.exists()


def test_corrupt_cifar_batch(tmp_path):
    d = write_cifar10(tmp_path)
    (d / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)


def test_image_folder_tree_is_read_and_resized(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("bedroom", "kitchen", "office"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (40 + i * 7, 60, 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.{'jpg' if i % 2 else 'png'}")
    ds = load_dataset("imagefolder", tmp_path, image_size=32)
    assert ds.num_classes == 3 and ds.input_shape == (3, 32, 32)
    assert ds.train.images.shape == (9, 3, 32, 32) and ds.test.images.shape == (6, 3, 32, 32)
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert load_dataset("imagefolder:24", tmp_path).input_shape == (3, 24, 24)  # the name's SIZE resizes too
    with pytest.raises(DatasetError, match="imagefolder:SIZE"):  # at native size, mixed sizes are refused
        load_dataset("imagefolder", tmp_path)


def write_gray_folder(root, size=28, classes=("shirt", "shoe", "bag"), n=(4, 2)):
    """Fashion-MNIST's shape written as 8-bit grayscale PNG class folders."""
    from PIL import Image
    rng = np.random.default_rng(1)
    for split, count in zip(("train", "test"), n):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(
                    root / split / cls / f"{i}.png")
    return root


def test_grayscale_image_folders_are_read_at_their_native_size_and_channel_count(tmp_path):
    """28×28 grayscale PNGs are 1×28×28 tensors (once read as 3×224×224: 192× the pixels), normalised with one
    channel's statistics; imagefolder:SIZE resizes them and keeps their one channel."""
    from PIL import Image
    d = write_gray_folder(tmp_path)
    ds = load_dataset("imagefolder", d)
    assert ds.input_shape == (1, 28, 28) and ds.train.images.shape == (12, 1, 28, 28)
    assert len(ds.info.mean) == len(ds.info.std) == 1
    with Image.open(d / "train" / "bag" / "0.png") as im:  # classes in sorted order: bag first
        assert np.array_equal(ds.train.images[0, 0].numpy(), np.asarray(im))  # the pixels as stored
    assert load_dataset("imagefolder:14", d).input_shape == (1, 14, 14)


def test_idx_reader_and_truncation(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 3, 4) + data.tobytes())
    assert (read_idx(p) == data).all()
    with gzip.open(p, "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 3, 4) + data.tobytes()[:-5])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(p)


@pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="dataset-fashion-mnist")
def test_real_fashion_mnist_resolves_verifies_and_loads():
    assert resolve("fashion-mnist") == FASHION_DIR
    ds = load_dataset("fashion-mnist")
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10


def test_bad_checksum_is_refused(tmp_path):
    import shutil
    if not (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("dataset-fashion-mnist")
    for f in FASHION_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + bytes([1, 2, 3]))
    with pytest.raises(DatasetError, match="md5"):
        resolve("fashion-mnist", tmp_path, download=False)


def test_missing_dataset_says_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="--data-dir"):
        resolve("cifar100", tmp_path, download=False)
    with pytest.raises(DatasetError, match="unknown dataset"):
        dataset_info("imagenet")


def test_split_is_seeded_disjoint_and_subsettable():
    info = dataset_info("synthetic:1x8x8:4:1000")
    ds = load_dataset(info.name)
    a_tr, a_va = train_val_split(ds.train, seed=3)
    b_tr, b_va = train_val_split(ds.train, seed=3)
    c_tr, _ = train_val_split(ds.train, seed=4)
    assert torch.equal(a_tr.images, b_tr.images) and not torch.equal(a_tr.images, c_tr.images)
    assert len(a_tr) == 900 and len(a_va) == 100
    s_tr, s_va = train_val_split(ds.train, seed=3, subset=200)
    assert len(s_tr) == 200 and len(s_va) == 100


def test_views_crop_and_flip_exactly():
    img = torch.arange(2 * 5 * 5, dtype=torch.uint8).view(1, 2, 5, 5)
    pad = 2
    side = 2 * pad + 1
    for v in range(2 * side * side):
        dy, dx, flip = (int(t) for t in decode_views(torch.tensor([v]), pad))
        padded = torch.nn.functional.pad(img, (pad,) * 4)
        want = padded[:, :, dy:dy + 5, dx:dx + 5]
        if flip:
            want = want.flip(3)
        assert torch.equal(apply_view(img, torch.tensor([v]), pad), want)
    centre = pad * side + pad
    assert torch.equal(apply_view(img, torch.tensor([centre]), pad), img)


def test_loader_is_reproducible_and_covers_every_image():
    ds = load_dataset("synthetic:3x8x8:5:300")
    mk = lambda seed: DeviceLoader(ds.train, 64, "cpu", ds.info.mean, ds.info.std, Augment(pad=2), True, seed)
    a = list(mk(1).epoch(2))
    b = list(mk(1).epoch(2))
    c = list(mk(1).epoch(3))
    assert all(torch.equal(x.x, y.x) and torch.equal(x.view, y.view) for x, y in zip(a, b))
    assert not torch.equal(a[0].index, c[0].index)
    assert sorted(torch.cat([x.index for x in a]).tolist()) == list(range(300))
    assert int(torch.cat([x.view for x in a]).max()) < Augment(pad=2).views
    assert random_views(10, Augment(pad=0, flip=False), torch.Generator()).eq(0).all()
