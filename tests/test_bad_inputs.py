"""The bad-input catalogue: every case goes through the command line (autokd.cli.main, as the console script
calls it) and must end with exit code 2, exactly one line on stderr, no traceback, and every file already on disk
byte-identical afterwards. A few cases also run as real subprocesses."""

from __future__ import annotations

import gzip
import os
import json
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from autokd.cli import main
from autokd.config import apply_preset
from autokd.hpo.run import run_search
from autokd.hpo.trial import TrialResult
from tests.conftest import DEFAULT_THETA, SMALL_THETA

SYN = "synthetic:1x8x8:3:200"


def fake_trial(spec):
    acc = 0.4 + 0.05 * (spec.config_id[2] % 4) + spec.budget / 10
    return TrialResult(spec.trial_id, spec.config_id, spec.budget, "ok", acc, 1 - acc, params=1000, seconds=0.1,
                       extra={"val_images": 100})


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished (fake-trained) run directory, copied into each case that needs one."""
    root = tmp_path_factory.mktemp("base")
    settings = apply_preset("smoke", {"dataset": SYN, "no_kd": True, "teacher": None, "executor": "local"})
    run_search(settings, root / "run", quiet=True, trial_fn=fake_trial)
    return root / "run"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_idx(path: Path, array: np.ndarray, gz: bool = True, magic: int = 0x08) -> None:
    head = bytes([0, 0, magic, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = head + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def fashion_like(folder: Path, n: int = 40) -> Path:
    """Fashion-MNIST's four files in the exact format (random content, valid checksums are not needed with
    --data-dir... they are: so the files are the real ones' shape but the checks under test fire first)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
    return folder


def cifar_like(folder: Path, label_key: bytes = b"labels", mutate: Callable | None = None) -> Path:
    d = folder / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = {b"data": rng.integers(0, 255, (10, 3072)).astype(np.uint8), label_key: list(rng.integers(0, 10, 10))}
        if mutate:
            obj = mutate(obj)
        with open(d / name, "wb") as fh:
            pickle.dump(obj, fh)
    return folder


def image_folder(folder: Path, classes=("a", "b"), test_classes=None, empty: str | None = None) -> Path:
    from PIL import Image

    for split, names in (("train", classes), ("test", test_classes or classes)):
        for c in names:
            (folder / split / c).mkdir(parents=True, exist_ok=True)
            if c == empty:
                continue
            Image.new("RGB", (10, 10), (10, 20, 30)).save(folder / split / c / "x.png")
    return folder


def teacher_ckpt(path: Path, drop: str | None = None, classes: int = 3) -> Path:
    from autokd.kd.teacher import save_checkpoint, train_teacher
    from autokd.data.dataset import load_dataset

    ckpt, _ = train_teacher("wrn-40-2", load_dataset(f"synthetic:1x8x8:{classes}:60"), epochs=0.1, smoke=True)
    if drop:
        ckpt.pop(drop)
    save_checkpoint(path, ckpt)
    return path


def torchscript_teacher(path: Path, sidecar: object | None) -> Path:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    torch.jit.save(torch.jit.script(net), str(path))
    if sidecar is not None:
        Path(f"{path}.json").write_text(json.dumps(sidecar) if not isinstance(sidecar, str) else sidecar)
    return path


def gen(tmp: Path, obj: object = None, raw: bytes | None = None, name: str = "gen.json") -> Path:
    p = tmp / name
    if raw is not None:
        p.write_bytes(raw)
    else:
        p.write_text(json.dumps(obj if obj is not None else {"generator": DEFAULT_THETA}))
    return p


def run_copy(tmp: Path, base: Path, edit: Callable[[Path], None] | None = None) -> Path:
    run = tmp / "run"
    shutil.copytree(base, run)
    if edit:
        edit(run)
    return run


def edit_journal(fn: Callable[[list[dict]], None]) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        lines = (run / "journal.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in lines[1:]]
        fn(events)
        (run / "journal.jsonl").write_text("\n".join([lines[0]] + [json.dumps(e) for e in events]) + "\n")
    return edit


def edit_run_json(fn: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        obj = json.loads((run / "run.json").read_text())
        out = fn(obj)
        (run / "run.json").write_text(json.dumps(out if out is not None else obj))
    return edit


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def _nest(depth: int) -> dict:
    obj: dict = {"generator": DEFAULT_THETA}
    for _ in range(depth):
        obj = {"source": obj, "generator": DEFAULT_THETA}
    return obj


def _yaml(t: Path, text: str) -> Path:
    p = t / "e.yaml"
    p.write_text(text)
    return p


def _raw(t: Path, name: str, data: bytes) -> Path:
    p = t / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _arch(t: Path, edit: Callable[[dict], None]) -> Path:
    from autokd.space.generator import sample_architecture

    obj = sample_architecture(SMALL_THETA, 0, (1, 8, 8), 3, 40_000).to_json()
    edit(obj)
    p = t / "arch.json"
    p.write_text(json.dumps(obj))
    return p


def _partial_fashion(t: Path) -> Path:
    d = fashion_like(t / "fm")
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    return d


def _mnist(t: Path, damage: Callable[[Path], object]) -> Path:
    """MNIST-shaped files; the registry's checksums would reject random content, so the test points the reader at
    them through a dataset without checksums: the damage must be caught by the reader itself."""
    d = fashion_like(t / "mn")
    damage(d)
    return d


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:200])


def _foreign(t: Path) -> Path:
    torch.save({"state_dict": {}}, t / "foreign.pt")
    return t / "foreign.pt"


def _bad_png(t: Path) -> Path:
    d = image_folder(t / "imf")
    (d / "train" / "a" / "y.png").write_bytes(b"not a png at all")
    return d


def _bomb_png(t: Path) -> Path:
    from PIL import Image

    d = image_folder(t / "imf")
    Image.new("1", (8000, 8000)).save(d / "train" / "a" / "big.png")  # 64M pixels, a few kB on disk
    return d


S = ["search", "--dataset", SYN, "--no-kd", "--preset", "smoke"]
E = ["evaluate", "--dataset", SYN, "--epochs", "0.1"]

# (case id, builder(tmp, base_run) → argv). Every case must exit 2 with one line and leave files unchanged.
CASES: list[tuple[str, Callable[[Path, Path], list]]] = [
    # ---- numbers on the command line
    *[(f"search-{flag}-{value}", lambda t, b, f=flag, v=value: [*S, f"--{f}", v, "--run-dir", t / "r"])
      for flag, value in [("seed", "-1"), ("seed", "1e3"), ("seed", "2147483648"), ("max-budget", "inf"),
                          ("max-budget", "nan"), ("max-budget", "1e400"), ("min-budget", "0"), ("min-budget", "-2"),
                          ("eta", "1"), ("eta", "2.5"), ("iterations", "0"), ("iterations", "-1"),
                          ("param-limit", "10"), ("param-limit", "1e9x"), ("subset", "1"), ("val-images", "5"),
                          ("batch-size", "0"), ("lr", "0"), ("lr", "-1"), ("lr", "nan"), ("weight-decay", "2"),
                          ("workers", "0"), ("threads-per-trial", "0"), ("gpus-per-trial", "0"),
                          ("random-fraction", "2"), ("augment-pad", "-1"), ("max-nodes", "2"), ("max-nodes", "11"),
                          ("min-points-in-model", "0"), ("optimizer", "grid"), ("lr-schedule", "linear"),
                          ("merge-width", "widest"), ("search-space", "nago-huge"),
                          ("macs-limit", "-5"), ("objective", "latency"),
                          ("macs-limit", "0"), ("memory-limit", "-1"), ("memory-limit", "nan"),
                          ("latency-limit", "0"), ("latency-limit", "inf"), ("speed", "fast"),
                          ("opt", "lion")]],
    ("search-space-file-missing", lambda t, b: [*S, "--search-space", t / "none.yaml", "--run-dir", t / "r"]),
    ("search-space-file-not-yaml", lambda t, b: (t / "s.yaml").write_text("generator: [1, {") and
     [*S, "--search-space", t / "s.yaml", "--run-dir", t / "r"]),
    ("search-space-file-missing-keys", lambda t, b: (t / "s.yaml").write_text(
        "generator: {G1_nodes: {type: int, lower: 3, upper: 8}}\n") and
     [*S, "--search-space", t / "s.yaml", "--run-dir", t / "r"]),
    ("search-latency-limit-no-architecture-meets", lambda t, b: [*S, "--latency-limit", "1e-9", "--run-dir", t / "r"]),
    ("search-macs-limit-no-architecture-meets", lambda t, b: [*S, "--macs-limit", "10", "--run-dir", t / "r"]),
    ("search-memory-limit-no-architecture-meets", lambda t, b: [*S, "--memory-limit", "1e-6", "--run-dir", t / "r"]),
    ("search-min-budget-tiny-plans-billions", lambda t, b: [*S, "--min-budget", "1e-9", "--run-dir", t / "r"]),
    ("search-iterations-plan-too-large", lambda t, b: [*S, "--iterations", "90000", "--min-budget", "0.001",
                                                       "--max-budget", "1", "--run-dir", t / "r"]),
    ("search-budgets-out-of-order", lambda t, b: [*S, "--min-budget", "9", "--max-budget", "2", "--run-dir", t / "r"]),
    ("search-gpus-1.5", lambda t, b: [*S, "--gpus-per-trial", "1.5", "--run-dir", t / "r"]),
    ("search-continue-without-wsd", lambda t, b: [*S, "--rung-training", "continue", "--run-dir", t / "r"]),
    ("search-lr-decay-fraction-0", lambda t, b: [*S, "--lr-decay-fraction", "0", "--run-dir", t / "r"]),
    ("search-promotion-eager", lambda t, b: [*S, "--promotion", "eager", "--run-dir", t / "r"]),
    ("search-rung-training-resume", lambda t, b: [*S, "--rung-training", "resume", "--run-dir", t / "r"]),
    ("search-prescreen-naswot", lambda t, b: [*S, "--prescreen", "naswot", "--run-dir", t / "r"]),
    ("search-prescreen-pool-1", lambda t, b: [*S, "--prescreen", "params", "--prescreen-pool", "1",
                                              "--run-dir", t / "r"]),
    ("search-no-dataset", lambda t, b: ["search", "--run-dir", t / "r"]),
    ("evaluate-generator-naming-no-dataset", lambda t, b: ["evaluate", "--generator", gen(t), "--epochs", "0.1"]),
    *[(f"evaluate-{flag}-{value}", lambda t, b, f=flag, v=value: [*E, "--generator", gen(t), f"--{f}", v])
      for flag, value in [("epochs", "0"), ("epochs", "-3"), ("epochs", "inf"), ("epochs", "nan"), ("alpha", "3"),
                          ("alpha", "-0.1"), ("temperature", "0.5"), ("temperature", "11"), ("seed", "-1"),
                          ("lr", "0"), ("batch-size", "0"), ("subset", "0")]],
    *[(f"retrain-{flag}-{value}", lambda t, b, f=flag, v=value: ["retrain", "--generator", b / "best.json", f"--{f}",
                                                                v, "--out", t / "o"])
      for flag, value in [("epochs", "0"), ("epochs", "-3"), ("samples", "0"), ("alpha", "5"), ("seed", "-1"),
                          ("workers", "0"), ("baselines", "vit"), ("baselines", "resnet,,vgg99"),
                          ("speed", "turbo"), ("ablate-kd", "yes")]],
    ("retrain-ray-address-not-host-port", lambda t, b: ["retrain", "--generator", b / "best.json", "--ray-address",
                                                        "nowhere", "--out", t / "o"]),
    ("retrain-ray-address-unreachable", lambda t, b: ["retrain", "--generator", b / "best.json", "--ray-address",
                                                      "127.0.0.1:9", "--out", t / "o"]),
    ("retrain-ray-address-with-local-executor", lambda t, b: ["retrain", "--generator", b / "best.json",
                                                              "--ray-address", "127.0.0.1:9", "--executor", "local",
                                                              "--out", t / "o"]),
    ("retrain-nothing-to-train", lambda t, b: ["retrain", "--out", t / "o"]),
    ("sample-num-classes-1", lambda t, b: ["sample", "--generator", gen(t), "--input-shape", "3,8,8",
                                           "--num-classes", "1"]),
    ("sample-shape-zero", lambda t, b: ["sample", "--generator", gen(t), "--input-shape", "3,0,32",
                                        "--num-classes", "10"]),
    ("sample-limit-too-small", lambda t, b: ["sample", "--generator", gen(t), "--dataset", "cifar10",
                                             "--param-limit", "2000"]),
    # ---- experiment files
    *[(f"experiment-{name}", lambda t, b, text=text: ["search", "--experiment", _yaml(t, text), "--run-dir", t / "r"])
      for name, text in [("eta-string", "preset: smoke\nsearch: {dataset: synthetic, eta: '2', no_kd: true}\n"),
                         ("lr-abc", "preset: smoke\nsearch: {dataset: synthetic, lr: abc, no_kd: true}\n"),
                         ("batch-0", "preset: smoke\nsearch: {dataset: synthetic, batch_size: 0, no_kd: true}\n"),
                         ("val-fraction-1.5", "search: {dataset: synthetic, val_fraction: 1.5, no_kd: true}\n"),
                         ("misspelled-top-key", "preset: smoke\nsaerch: {dataset: synthetic}\n"),
                         ("unknown-search-key", "search: {dataset: synthetic, learning_rate: 0.1}\n"),
                         ("not-a-mapping", "- a\n- b\n"), ("invalid-yaml", "search: {dataset: [\n"),
                         ("preset-unknown", "preset: gpu\nsearch: {dataset: synthetic}\n"),
                         ("search-not-mapping", "search: 3\n"), ("deep", "a: " + "[" * 100 + "]" * 100 + "\n")]],
    ("experiment-binary", lambda t, b: ["search", "--experiment", _raw(t, "e.yaml", b"\xff\xfe\x00bin"),
                                        "--run-dir", t / "r"]),
    ("experiment-missing-file", lambda t, b: ["search", "--experiment", t / "none.yaml", "--run-dir", t / "r"]),
    ("experiment-unknown-name", lambda t, b: ["search", "--experiment", "cifar1000", "--run-dir", t / "r"]),
    ("retrain-experiment-bad-section", lambda t, b: ["retrain", "--generator", b / "best.json", "--experiment",
                                                     _yaml(t, "retrain: {samples: many}\n"), "--out", t / "o"]),
    # ---- generator files
    *[(f"generator-{name}", lambda t, b, raw=raw: ["sample", "--generator", gen(t, raw=raw), "--dataset", "cifar10"])
      for name, raw in [("utf16", json.dumps({"generator": DEFAULT_THETA}).encode("utf-16")),
                        ("latin1", '{"generator": {"G1_nodes": "é"}}'.encode("latin-1")),
                        ("binary", bytes(range(256))), ("empty", b""), ("not-json", b"{not json"),
                        ("deep", (b"[" * 5000) + (b"]" * 5000)), ("nested-dict", json.dumps(_nest(60)).encode()),
                        ("list", b"[1, 2]"), ("missing-generator", b'{"kd": {}}'),
                        ("unknown-key", json.dumps({"generator": {**DEFAULT_THETA, "G9": 1}}).encode()),
                        ("out-of-range", json.dumps({"generator": {**DEFAULT_THETA, "G3_P": 1.5}}).encode()),
                        ("string-value", json.dumps({"generator": {**DEFAULT_THETA, "G1_nodes": "6"}}).encode()),
                        ("bool-value", json.dumps({"generator": {**DEFAULT_THETA, "G1_nodes": True}}).encode()),
                        ("float-for-int", json.dumps({"generator": {**DEFAULT_THETA, "G1_nodes": 6.5}}).encode()),
                        ("negative-seed", json.dumps({"generator": DEFAULT_THETA, "source": {"seed": -4}}).encode()),
                        ("tiny-limit", json.dumps({"generator": DEFAULT_THETA, "param_limit": 10}).encode()),
                        ("format", json.dumps({"format": "x/2", "generator": DEFAULT_THETA}).encode()),
                        ("space", json.dumps({"space": "darts", "generator": DEFAULT_THETA}).encode()),
                        ("merge-width", json.dumps({"merge_width": "x", "generator": DEFAULT_THETA}).encode()),
                        ("kd-alpha", json.dumps({"generator": DEFAULT_THETA, "kd": {"alpha": 2}}).encode()),
                        ("nan", b'{"generator": {"G1_P": NaN}}')]],
    ("generator-is-a-folder", lambda t, b: ["sample", "--generator", t, "--dataset", "cifar10"]),
    ("generator-missing", lambda t, b: ["sample", "--generator", t / "none.json", "--dataset", "cifar10"]),
    # ---- architecture files
    *[(f"arch-{name}", lambda t, b, edit=edit: [*E, "--arch", _arch(t, edit)])
      for name, edit in [("format", lambda a: a.update(format="x")), ("arch-id", lambda a: a.update(arch_id="0" * 16)),
                         ("nodes-huge", lambda a: a["top"].update(nodes=100000)),
                         ("edge-backwards", lambda a: a["top"].update(edges=[[2, 1]])),
                         ("width-0", lambda a: a.update(width=0)), ("no-cells", lambda a: a.pop("cells")),
                         ("classes-mismatch", lambda a: a.update(num_classes=7)),
                         ("merge", lambda a: a.update(merge="x")), ("shape-str", lambda a: a.update(input_shape="1x8x8"))]],
    ("arch-utf16", lambda t, b: [*E, "--arch", gen(t, raw=json.dumps({"format": "autokd.arch/1"}).encode("utf-16"))]),
    # ---- datasets
    ("dataset-unknown", lambda t, b: [*E[:1], "--dataset", "imagenet-42", "--generator", gen(t)]),
    ("data-dir-missing", lambda t, b: ["evaluate", "--dataset", "fashion-mnist", "--generator", gen(t),
                                       "--data-dir", t / "nowhere"]),
    ("data-dir-is-file", lambda t, b: ["evaluate", "--dataset", "fashion-mnist", "--generator", gen(t),
                                       "--data-dir", _raw(t, "f", b"x")]),
    ("data-dir-partial", lambda t, b: ["evaluate", "--dataset", "fashion-mnist", "--generator", gen(t),
                                       "--data-dir", _partial_fashion(t)]),
    ("data-dir-corrupt-checksum", lambda t, b: ["evaluate", "--dataset", "fashion-mnist", "--generator", gen(t),
                                                "--data-dir", fashion_like(t / "fm")]),
    ("idx-truncated", lambda t, b: ["evaluate", "--dataset", "mnist", "--generator", gen(t), "--data-dir",
                                    _mnist(t, lambda d: _truncate(d / "train-images-idx3-ubyte.gz"))]),
    ("idx-not-gzip", lambda t, b: ["evaluate", "--dataset", "mnist", "--generator", gen(t), "--data-dir",
                                   _mnist(t, lambda d: (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"plain"))]),
    ("cifar-wrong-type", lambda t, b: ["evaluate", "--dataset", "cifar10", "--generator", gen(t), "--data-dir",
                                       cifar_like(t, mutate=lambda o: [1, 2, 3])]),
    ("cifar-string-labels", lambda t, b: ["evaluate", "--dataset", "cifar10", "--generator", gen(t), "--data-dir",
                                          cifar_like(t, mutate=lambda o: {**o, b"labels": ["cat"] * 10})]),
    ("cifar-label-count", lambda t, b: ["evaluate", "--dataset", "cifar10", "--generator", gen(t), "--data-dir",
                                        cifar_like(t, mutate=lambda o: {**o, b"labels": [1, 2]})]),
    ("cifar-label-range", lambda t, b: ["evaluate", "--dataset", "cifar10", "--generator", gen(t), "--data-dir",
                                        cifar_like(t, mutate=lambda o: {**o, b"labels": [12] * 10})]),
    ("cifar-pixels-range", lambda t, b: ["evaluate", "--dataset", "cifar10", "--generator", gen(t), "--data-dir",
                                         cifar_like(t, mutate=lambda o: {**o, b"data": o[b"data"].astype(int) + 300})]),
    ("cifar-code-pickle", lambda t, b: ["evaluate", "--dataset", "cifar10", "--generator", gen(t), "--data-dir",
                                        cifar_like(t, mutate=lambda o: _Evil())]),
    ("imagefolder-empty-class", lambda t, b: ["evaluate", "--dataset", "imagefolder", "--generator", gen(t),
                                              "--data-dir", image_folder(t / "imf", empty="b")]),
    ("imagefolder-missing-test-class", lambda t, b: ["evaluate", "--dataset", "imagefolder", "--generator", gen(t),
                                                     "--data-dir", image_folder(t / "imf", test_classes=("a",))]),
    ("imagefolder-not-an-image", lambda t, b: ["evaluate", "--dataset", "imagefolder", "--generator", gen(t),
                                               "--data-dir", _bad_png(t)]),
    ("imagefolder-bomb", lambda t, b: ["evaluate", "--dataset", "imagefolder", "--generator", gen(t),
                                       "--data-dir", _bomb_png(t)]),
    # ---- teachers
    ("teacher-unknown", lambda t, b: ["search", "--dataset", SYN, "--teacher", "gpt-5", "--run-dir", t / "r"]),
    ("teacher-missing-file", lambda t, b: ["search", "--dataset", SYN, "--teacher", t / "none.pt", "--run-dir", t / "r"]),
    ("teacher-garbage", lambda t, b: ["search", "--dataset", SYN, "--teacher", _raw(t, "t.pt", b"garbage"),
                                      "--run-dir", t / "r"]),
    ("teacher-not-autokd", lambda t, b: ["search", "--dataset", SYN, "--teacher", _foreign(t), "--run-dir", t / "r"]),
    ("teacher-no-num-classes", lambda t, b: ["search", "--dataset", SYN, "--teacher",
                                             teacher_ckpt(t / "t.pt", drop="num_classes"), "--run-dir", t / "r"]),
    ("teacher-no-args", lambda t, b: ["search", "--dataset", SYN, "--teacher", teacher_ckpt(t / "t.pt", drop="args"),
                                      "--run-dir", t / "r"]),
    ("teacher-wrong-classes", lambda t, b: ["search", "--dataset", SYN, "--teacher",
                                            teacher_ckpt(t / "t.pt", classes=5), "--run-dir", t / "r"]),
    ("teacher-torchscript-no-sidecar", lambda t, b: ["search", "--dataset", SYN, "--teacher",
                                                     torchscript_teacher(t / "t.ts", None), "--run-dir", t / "r"]),
    ("teacher-sidecar-bad", lambda t, b: ["search", "--dataset", SYN, "--teacher",
                                          torchscript_teacher(t / "t.ts", {"num_classes": 3, "mean": [0.5]}),
                                          "--run-dir", t / "r"]),
    ("teacher-sidecar-not-json", lambda t, b: ["search", "--dataset", SYN, "--teacher",
                                               torchscript_teacher(t / "t.ts", "{nope"), "--run-dir", t / "r"]),
    ("teacher-torchscript-wrong-classes", lambda t, b: [
        "search", "--dataset", "synthetic:1x8x8:4:200", "--teacher",
        torchscript_teacher(t / "t.ts", {"num_classes": 4, "mean": [0.5], "std": [0.25]}), "--run-dir", t / "r"]),
    ("teacher-callable-no-weights", lambda t, b: ["search", "--dataset", SYN, "--teacher", "tests.teacher_zoo:tiny",
                                                  "--run-dir", t / "r"]),
    ("teacher-callable-import", lambda t, b: ["search", "--dataset", SYN, "--teacher", "no_such_pkg.mod:make",
                                              "--teacher-weights", _raw(t, "w.pt", b"x"), "--run-dir", t / "r"]),
    # ---- paths
    ("run-dir-is-a-file", lambda t, b: [*S, "--run-dir", _raw(t, "file", b"x")]),
    ("run-dir-unwritable", lambda t, b: [*S, "--run-dir", Path("/proc/autokd-run")]),
    ("run-dir-name-too-long", lambda t, b: [*S, "--run-dir", t / ("x" * 300)]),
    ("run-dir-holds-a-run", lambda t, b: [*S, "--run-dir", run_copy(t, b)]),
    ("run-dir-not-empty", lambda t, b: [*S, "--run-dir", _raw(t, "d/other.txt", b"x").parent]),
    ("retrain-out-is-a-file", lambda t, b: ["retrain", "--generator", b / "best.json", "--out", _raw(t, "o", b"x")]),
    ("report-out-is-a-file", lambda t, b: ["report", b, "--out", _raw(t, "o", b"x")]),
    ("report-out-cannot-be-created", lambda t, b: ["report", b, "--out", "/proc/autokd-report"]),
    ("sample-out-not-utf8", lambda t, b: ["sample", "--generator", gen(t), "--dataset", "cifar10", "--out",
                                          os.fsdecode(bytes(t) + b"/arch\xff.json")]),
    ("export-out-is-a-file", lambda t, b: ["export", b, "--out", _raw(t, "o", b"x")]),
    ("export-pick-unknown", lambda t, b: ["export", b, "--pick", "fastest", "--out", t / "o"]),
    ("export-pick-unknown-cost", lambda t, b: ["export", b, "--pick", "under:watts=3", "--out", t / "o"]),
    ("export-pick-negative", lambda t, b: ["export", b, "--pick", "under:macs=-1", "--out", t / "o"]),
    ("export-pick-costs-not-recorded", lambda t, b: ["export", b, "--pick", "knee", "--out", t / "o"]),
    ("teacher-train-out-is-a-folder", lambda t, b: ["teacher", "train", "--arch", "vgg7", "--dataset", SYN,
                                                    "--out", t]),
    ("teacher-train-precision-fp16", lambda t, b: ["teacher", "train", "--arch", "vgg7", "--dataset", SYN,
                                                   "--precision", "fp16", "--out", t / "t.pt"]),
    ("search-precision-fp16", lambda t, b: [*S, "--precision", "fp16", "--run-dir", t / "r"]),
    # ---- devices
    ("device-nonsense", lambda t, b: [*S, "--device", "nonsense", "--run-dir", t / "r"]),
    ("device-cuda", lambda t, b: [*S, "--device", "cuda", "--run-dir", t / "r"]),
    ("device-cuda-9", lambda t, b: [*E, "--generator", gen(t), "--device", "cuda:9"]),
    ("device-tpu", lambda t, b: [*E, "--generator", gen(t), "--device", "xla"]),
    # ---- run files
    ("resume-nothing", lambda t, b: ["search", "--run-dir", t / "r", "--resume"]),
    ("resume-run-json-list", lambda t, b: ["search", "--resume", "--run-dir", run_copy(t, b, edit_run_json(lambda o: [1]))]),
    ("resume-run-json-no-settings", lambda t, b: ["search", "--resume", "--run-dir",
                                                  run_copy(t, b, edit_run_json(lambda o: o.pop("settings") and o))]),
    ("resume-run-json-no-limit", lambda t, b: ["search", "--resume", "--run-dir",
                                               run_copy(t, b, edit_run_json(lambda o: o.pop("param_limit") and o))]),
    ("resume-run-json-bad-setting", lambda t, b: ["search", "--resume", "--run-dir", run_copy(
        t, b, edit_run_json(lambda o: o["settings"].update(eta="2")))]),
    ("resume-run-json-corrupt", lambda t, b: ["search", "--resume", "--run-dir", run_copy(
        t, b, lambda r: (r / "run.json").write_text("{torn"))]),
    ("resume-journal-no-config-id", lambda t, b: ["search", "--resume", "--run-dir", run_copy(
        t, b, edit_journal(lambda ev: ev[0].pop("config_id")))]),
    ("resume-journal-finished-no-val-acc", lambda t, b: ["search", "--resume", "--run-dir", run_copy(
        t, b, edit_journal(lambda ev: next(e for e in ev if e["event"] == "finished").pop("val_acc")))]),
    ("resume-journal-finished-no-time", lambda t, b: ["search", "--resume", "--run-dir", run_copy(
        t, b, edit_journal(lambda ev: next(e for e in ev if e["event"] == "finished").pop("time")))]),
    ("resume-journal-bad-event", lambda t, b: ["search", "--resume", "--run-dir", run_copy(
        t, b, edit_journal(lambda ev: ev[0].update(event="exploded")))]),
    ("resume-journal-garbage-line", lambda t, b: ["search", "--resume", "--run-dir", run_copy(
        t, b, lambda r: (r / "journal.jsonl").write_text((r / "journal.jsonl").read_text().replace(
            "\n", "\n{garbage\n", 2)))]),
    ("resume-journal-no-header", lambda t, b: ["search", "--resume", "--run-dir", run_copy(
        t, b, lambda r: (r / "journal.jsonl").write_text('{"event": "started"}\n'))]),
    ("resume-changes-lr", lambda t, b: ["search", "--resume", "--run-dir", run_copy(t, b), "--lr", "0.3"]),
    ("resume-fewer-iterations", lambda t, b: ["search", "--resume", "--run-dir", run_copy(t, b), "--iterations", "1"]),
    ("resume-with-preset", lambda t, b: ["search", "--resume", "--run-dir", run_copy(t, b), "--preset", "cpu"]),
    ("resume-ray-address-unreachable", lambda t, b: ["search", "--resume", "--run-dir", run_copy(t, b),
                                                     "--ray-address", "127.0.0.1:1"]),
    ("resume-ray-address-malformed", lambda t, b: ["search", "--resume", "--run-dir", run_copy(t, b),
                                                   "--ray-address", "nohost"]),
    ("export-corrupt-best", lambda t, b: ["export", run_copy(t, b, lambda r: (r / "best.json").write_text("{x")),
                                          "--out", t / "o"]),
    ("export-no-best", lambda t, b: ["export", run_copy(t, b, lambda r: (r / "best.json").unlink()), "--out", t / "o"]),
    ("report-no-journal", lambda t, b: ["report", t]),
    ("report-several-without-aggregate", lambda t, b: ["report", b, b]),
    ("trials-not-a-run", lambda t, b: ["trials", t / "nowhere"]),
    ("retrain-generator-no-dataset", lambda t, b: ["retrain", "--generator", gen(t), "--out", t / "o"]),
    ("sample-out-in-proc", lambda t, b: ["sample", "--generator", gen(t), "--dataset", SYN, "--out",
                                         "/proc/autokd-arch.json"]),
    ("sample-out-is-a-folder", lambda t, b: ["sample", "--generator", gen(t), "--dataset", SYN, "--out", t]),
    ("sample-out-name-300-chars", lambda t, b: ["sample", "--generator", gen(t), "--dataset", SYN, "--out",
                                                t / ("a" * 300 + ".json")]),
    ("sample-draw-in-proc", lambda t, b: ["sample", "--generator", gen(t), "--dataset", SYN, "--draw",
                                          "/proc/autokd.png"]),
    *[(f"generator-int-key-{name}", lambda t, b, raw=raw: ["sample", "--generator", gen(t, raw=raw), "--dataset", SYN])
      for name, raw in [("infinity", b'{"generator": {"G1_nodes": Infinity, "G1_K": 2, "G1_P": 0.5, "G2_nodes": 3, '
                                     b'"G2_P": 0.5, "G3_nodes": 3, "G3_K": 2, "G3_P": 0.5}}'),
                        ("minus-infinity", b'{"generator": {"G1_nodes": 3, "G1_K": -Infinity, "G1_P": 0.5, '
                                           b'"G2_nodes": 3, "G2_P": 0.5, "G3_nodes": 3, "G3_K": 2, "G3_P": 0.5}}'),
                        ("1e400", b'{"generator": {"G1_nodes": 3, "G1_K": 2, "G1_P": 0.5, "G2_nodes": 1e400, '
                                  b'"G2_P": 0.5, "G3_nodes": 3, "G3_K": 2, "G3_P": 0.5}}')]],
    ("generator-head-channels-not-in-nago", lambda t, b: ["sample", "--generator", gen(t, {
        "generator": {**DEFAULT_THETA, "head_channels": 64}}), "--dataset", SYN]),
    ("generator-head-channels-too-wide", lambda t, b: ["sample", "--generator", gen(t, {
        "space": "nago-small", "generator": {**DEFAULT_THETA, "G1_K": 2, "G3_K": 2, "G1_nodes": 3, "G2_nodes": 2,
                                             "G3_nodes": 2, "head_channels": 100_000}}), "--dataset", SYN]),
    ("retrain-unknown-student", lambda t, b: ["retrain", "--student", "vit", "--dataset", SYN, "--out", t / "o"]),
    # ---- Ray
    ("ray-unreachable", lambda t, b: [*S, "--executor", "ray", "--ray-address", "127.0.0.1:1", "--run-dir", t / "r"]),
    ("ray-address-malformed", lambda t, b: [*S, "--executor", "ray", "--ray-address", "nohost", "--run-dir", t / "r"]),
    ("ray-address-with-local-executor", lambda t, b: [*S, "--executor", "local", "--ray-address", "127.0.0.1:9",
                                                      "--run-dir", t / "r"]),
    # ---- usage
    ("unknown-subcommand", lambda t, b: ["serch"]),
    ("unknown-flag", lambda t, b: ["search", "--datset", SYN]),
    ("preset-unknown", lambda t, b: ["search", "--dataset", SYN, "--preset", "gpu"]),
]


@pytest.fixture(autouse=True)
def _no_checksums_for_mnist(monkeypatch):
    """The test's MNIST-shaped files are random: drop the registry's checksums so the readers' own checks are what
    the idx cases exercise (fashion-mnist keeps its checksums: the corrupt-checksum case needs them)."""
    from dataclasses import replace

    from autokd.data import registry

    monkeypatch.setitem(registry.DATASETS, "mnist", replace(registry.DATASETS["mnist"], md5={}, urls={}))
    monkeypatch.setitem(registry.DATASETS, "fashion-mnist",
                        replace(registry.DATASETS["fashion-mnist"], urls={}))
    monkeypatch.setitem(registry.DATASETS, "cifar10", replace(registry.DATASETS["cifar10"], urls={}))
    from autokd.memo import clear_all

    clear_all()


def test_the_catalogue_is_large():
    assert len(CASES) >= 100 and len({c for c, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c for c, _ in CASES])
def test_bad_input_ends_with_exit_2_one_line_and_nothing_changed(case, tmp_path, base_run, capsys):
    build = dict(CASES)[case]
    argv = [str(a) for a in build(tmp_path, base_run)]
    before_tmp, before_base = snapshot(tmp_path), snapshot(base_run)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert rc == 2, f"exit {rc}: {out.err}"
    assert len(lines) == 1 and "Traceback" not in out.err, out.err
    assert "error" in lines[0] and out.out == "", out
    assert snapshot(base_run) == before_base
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before_tmp} == before_tmp  # nothing already written changed
    assert "code ran" not in out.out + out.err


@pytest.mark.parametrize("argv", [["search", "--dataset", SYN, "--max-budget", "inf"],
                                  ["evaluate", "--dataset", SYN, "--arch", "/nonexistent.json"],
                                  ["retrain", "--generator", "/nonexistent.json"]])
def test_as_a_real_process(argv):
    p = subprocess.run([sys.executable, "-m", "autokd.cli", *argv], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_internal_error_is_exit_1_with_one_line_and_a_log(monkeypatch, capsys, tmp_path):
    import autokd.cli as cli

    def boom(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "cmd_datasets", boom)
    monkeypatch.setattr(sys, "argv", ["autokd", "datasets"])
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["datasets"].set_defaults(func=boom)
    assert cli.main(["datasets"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: ZeroDivisionError: a bug" in err[0]
    log = Path(err[0].split("traceback in ")[1].split(";")[0])
    assert "Traceback" in log.read_text() and "ZeroDivisionError" in log.read_text()


def test_resume_on_a_mistyped_path_creates_nothing(tmp_path, capsys):
    """--resume never creates a directory: a mistyped path (with missing parents) stays missing, no .lock."""
    target = tmp_path / "no" / "such" / "run"
    assert main(["search", "--run-dir", str(target), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no run to resume" in err[0]
    assert not (tmp_path / "no").exists()
