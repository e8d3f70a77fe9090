"""Teachers: checkpoints (train, save, load, check against the dataset) and the logits they give a student batch.

A checkpoint holds the architecture name and arguments, dataset, classes, input shape, normalisation, state dict and
test accuracy. `--teacher NAME` uses the cached checkpoint for (dataset, NAME, size) or trains and caches one;
`--teacher PATH` loads a checkpoint and refuses one that does not fit the dataset.
"""

from __future__ import annotations

import datetime
import io
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autokd import __version__
from autokd.data.dataset import Dataset, test_subset
from autokd.data.loader import Batch
from autokd.data.registry import cache_root
from autokd.errors import TeacherError
from autokd.nn.teachers import TEACHERS, build_teacher, teacher_arch
from autokd.train import EvalResult, Progress, pick_device, train_and_evaluate

TEACHER_FORMAT = "autokd.teacher/1"
SMOKE_TRAIN_IMAGES = 5000  # smoke teachers train on a subset ...
SMOKE_TEST_IMAGES = 2000  # ... and report accuracy on part of the test set


@dataclass
class Teacher:
    module: nn.Module  # eval mode, on its device
    meta: dict[str, Any]  # the checkpoint without the state dict
    path: Path


def teacher_cache_path(dataset: str, arch: str, smoke: bool) -> Path:
    return cache_root() / "teachers" / f"{dataset}-{arch}{'-smoke' if smoke else ''}.pt"


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> None:
    """Atomic: a crash leaves the old checkpoint or none, never a torn file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    tmp = p.with_name(f".{p.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise TeacherError(f"teacher checkpoint {p} not found; give a built-in teacher ({', '.join(TEACHERS)}) "
                           f"or train one with `autokd teacher train`")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise TeacherError(f"teacher checkpoint {p} cannot be read ({type(exc).__name__}); retrain it") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != TEACHER_FORMAT:
        raise TeacherError(f"{p} is not an autokd teacher checkpoint (format {TEACHER_FORMAT})")
    return ckpt


def check_fits(meta: dict[str, Any], dataset: Dataset, where: str) -> None:
    if int(meta["num_classes"]) != dataset.num_classes:
        raise TeacherError(f"teacher {where} predicts {meta['num_classes']} classes but {dataset.info.name} has "
                           f"{dataset.num_classes}; use a teacher trained on this dataset")
    if tuple(meta["input_shape"]) != tuple(dataset.input_shape):
        raise TeacherError(f"teacher {where} takes inputs {tuple(meta['input_shape'])} but {dataset.info.name} "
                           f"images are {tuple(dataset.input_shape)}; use a teacher trained on this dataset")


def module_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    module = build_teacher(ckpt["arch"], int(ckpt["num_classes"]), int(ckpt["input_shape"][0]), dict(ckpt["args"]))
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise TeacherError(f"teacher checkpoint does not match architecture {ckpt['arch']}: "
                           f"{str(exc).splitlines()[0]}") from None
    return module


def train_teacher(arch: str, dataset: Dataset, epochs: float | None = None, smoke: bool = False,
                  seed: int = 0, device: str | None = None, progress: Progress | None = None
                  ) -> tuple[dict[str, Any], EvalResult]:
    """Train a teacher with its recipe on the training set; accuracy is measured on the test set."""
    spec = teacher_arch(arch)
    args = dict(spec.smoke_args if smoke else spec.args)
    recipe = replace(spec.recipe, epochs=float(epochs if epochs is not None else
                                               (spec.smoke_epochs if smoke else spec.recipe.epochs)), seed=seed)
    train, test = dataset.train, dataset.test
    if smoke:
        g = torch.Generator().manual_seed(seed)
        train = train.subset(torch.randperm(len(train), generator=g)[:SMOKE_TRAIN_IMAGES])
        test = test_subset(test, SMOKE_TEST_IMAGES, seed)
    torch.manual_seed(seed)
    module = build_teacher(arch, dataset.num_classes, dataset.input_shape[0], args)
    result = train_and_evaluate(module, train, test, dataset.info.mean, dataset.info.std, recipe, device=device,
                                progress=progress)
    if result.status != "ok":
        raise RuntimeError(f"teacher training failed: {result.error}")
    ckpt = {"format": TEACHER_FORMAT, "arch": arch, "args": args, "dataset": dataset.info.name,
            "num_classes": dataset.num_classes, "input_shape": list(dataset.input_shape),
            "mean": list(dataset.info.mean), "std": list(dataset.info.std),
            "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "test_acc": result.val_acc, "test_images": len(test), "train_images": len(train),
            "epochs": recipe.epochs, "smoke": smoke, "params": result.params, "macs": result.macs,
            "seconds": result.seconds, "device": result.device, "autokd_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    return ckpt, result


def _stderr_progress(prefix: str) -> Progress:
    def report(p: dict[str, Any]) -> None:
        print(f"{prefix}: epoch {p['epoch']}/{p['epochs']}, loss {p['train_loss']:.3f}, "
              f"{p['seconds']:.0f}s elapsed, ~{p['eta_seconds']:.0f}s left", file=sys.stderr, flush=True)
    return report


def resolve_teacher(name_or_path: str, dataset: Dataset, smoke: bool = False, device: str | None = None,
                    quiet: bool = False) -> Teacher:
    """A built-in name (cached checkpoint, trained and cached when missing) or a checkpoint path."""
    if name_or_path in TEACHERS:
        path = teacher_cache_path(dataset.info.name, name_or_path, smoke)
        if not path.is_file():
            if not quiet:
                print(f"autokd: no cached {name_or_path} teacher for {dataset.info.name}; training one "
                      f"({'smoke size' if smoke else 'full recipe'}) → {path}", file=sys.stderr, flush=True)
            ckpt, result = train_teacher(name_or_path, dataset, smoke=smoke, device=device,
                                         progress=None if quiet else _stderr_progress(f"teacher {name_or_path}"))
            save_checkpoint(path, ckpt)
            if not quiet:
                print(f"autokd: teacher {name_or_path} test accuracy {result.val_acc:.4f} "
                      f"({result.seconds:.0f}s)", file=sys.stderr, flush=True)
    else:
        path = Path(name_or_path)
        if not path.is_file() and "/" not in name_or_path and not name_or_path.endswith(".pt"):
            raise TeacherError(f"unknown teacher {name_or_path!r}; built-in: {', '.join(TEACHERS)}, or a "
                               f"checkpoint path")
    ckpt = load_checkpoint(path)
    check_fits(ckpt, dataset, str(path))
    module = module_from_checkpoint(ckpt)
    dev = pick_device(device)
    module.to(dev, memory_format=torch.channels_last if dev.type == "cuda" else torch.preserve_format).eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return Teacher(module, meta, path)


class OnTheFlyTeacher:
    """Teacher logits computed for every student batch (the plain way; the logit cache avoids this cost).

    The batch is normalised with the dataset's statistics; a teacher trained with other statistics gets its input
    renormalised: x_t = x·(σ_d/σ_t) + (μ_d − μ_t)/σ_t.
    """

    def __init__(self, teacher: Teacher, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.module = teacher.module
        dev = next(self.module.parameters()).device
        self.cuda = dev.type == "cuda"
        t_mean, t_std = torch.tensor(teacher.meta["mean"]), torch.tensor(teacher.meta["std"])
        d_mean, d_std = torch.tensor(mean), torch.tensor(std)
        self.identity = bool(torch.allclose(t_mean, d_mean) and torch.allclose(t_std, d_std))
        self.scale = (d_std / t_std).view(1, -1, 1, 1).to(dev)
        self.shift = ((d_mean - t_mean) / t_std).view(1, -1, 1, 1).to(dev)

    @torch.no_grad()
    def __call__(self, batch: Batch) -> torch.Tensor:
        x = batch.x if self.identity else batch.x * self.scale + self.shift
        if self.cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.module(x).float()
        return self.module(x).float()
