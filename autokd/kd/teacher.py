"""Teachers: checkpoints (train, save, load, check against the dataset), users' own models, and the logits a teacher
gives a student batch.

`--teacher` accepts
- a built-in name (`vgg7`, `darts`, `resnet18`, `wrn-40-2`): the checkpoint shipped inside the package for this
  dataset (checksum-verified), else the cached one, else one trained now and cached;
- an autokd checkpoint (`autokd.teacher/1`, written by `autokd teacher train`);
- a TorchScript file (`torch.jit.save`) or a `torch.export` program (`.pt2`), with a sidecar `PATH.json` that
  declares `num_classes`, `mean` and `std` (the input normalisation it was trained with);
- `package.module:callable` returning an `nn.Module`, with `--teacher-weights STATE_DICT.pt` and a sidecar
  `STATE_DICT.pt.json`;
- several of the above, comma-separated: an ensemble whose class probabilities are averaged (autokd.kd.ensemble).
Every teacher is checked against the dataset by a forward pass before a search starts.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autokd._version import __version__
from autokd.accel import autocast
from autokd.data.dataset import Dataset, test_subset
from autokd.data.loader import Batch, DeviceLoader
from autokd.data.registry import cache_root
from autokd.errors import TeacherError, UserError
from autokd.fsutil import read_json, write_atomic
from autokd.kd.ensemble import SEPARATOR, build_ensemble, is_ensemble, member_names
from autokd.kd.loss import needs_features
from autokd.nn.features import feature_maps, has_feature_maps
from autokd.nn.teachers import TEACHERS, build_teacher, teacher_arch
from autokd.train import EvalResult, Progress, TrainConfig, evaluate_accuracy, pick_device, train_and_evaluate
from autokd.validate import Field, check_object

log = logging.getLogger(__name__)  # the CLI shows INFO on stderr; a library user's logging config decides

TEACHER_FORMAT = "autokd.teacher/1"
SMOKE_TRAIN_IMAGES = 5000  # smoke teachers train on a subset ...
SMOKE_TEST_IMAGES = 2000  # ... and report accuracy on part of the test set
CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# The built-in teacher of a dataset when --teacher is not given.
DEFAULT_TEACHERS = {"fashion-mnist": "vgg7"}
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "teachers"
# Checkpoints shipped inside the package: file → SHA-256 (verified on load). docs/teachers.md has how each was made.
# A shipped file named DATASET-NAME.pt is `--teacher NAME` on that dataset: NAME a built-in architecture (its shipped
# checkpoint, in place of training one) or a shipped name of its own (a further member of an ensemble below).
SHIPPED: dict[str, str] = {
    "fashion-mnist-vgg7.pt": "a4243359596b78b0222a6c9a5c437d6412ed99714e1bd70216b929e4b0e2db15",
    "fashion-mnist-vgg7-s1.pt": "2dfd4e41bd400d82c9a6ea4df9df9f639a56f73aa65c0dca379f575353c6338c",
    "fashion-mnist-vgg7-s2.pt": "8f804c5985e3124d3c827327d61661b41ddc559d0c2fa3ffbc35e91a0a3f90cb",
}


@dataclass(frozen=True)
class ShippedEnsemble:
    """`--teacher NAME` for several shipped teachers of a dataset, averaged as `--teacher a,b,c` is
    (autokd.kd.ensemble); with `mirror`, each member also sees the image mirrored (a dataset whose labels a
    horizontal flip keeps). Recorded by its name in run.json; its own fingerprint and logit cache."""

    members: tuple[str, ...]  # built-in or shipped names of the dataset
    mirror: bool = False


SHIPPED_ENSEMBLES: dict[str, dict[str, ShippedEnsemble]] = {  # dataset → name → ensemble
    "fashion-mnist": {"vgg7x3": ShippedEnsemble(("vgg7", "vgg7-s1", "vgg7-s2"), mirror=True)},  # 95.11% test
}


@dataclass
class Teacher:
    module: nn.Module  # eval mode, on its device; takes input normalised with meta["mean"], meta["std"]
    meta: dict[str, Any]  # the checkpoint without the state dict (or the sidecar of a user's model)
    path: Path  # the file that defines it (the weights file for module:callable)
    fingerprint: str  # SHA-256 of everything that defines its function: the teacher-logit cache keys on it
    kind: str = "autokd"  # autokd, torchscript, export, callable, ensemble
    spec: str | None = None  # what resolves it again (run.json's teacher_path); None: the resolved `path`

    def resolvable(self) -> str:
        return self.spec or str(self.path.resolve())


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def teacher_cache_path(dataset: str, arch: str, smoke: bool) -> Path:
    return cache_root() / "teachers" / f"{dataset}-{arch}{'-smoke' if smoke else ''}.pt"


def shipped_path(dataset: str, arch: str) -> Path | None:
    name = f"{dataset}-{arch}.pt"
    path = SHIPPED_DIR / name
    return path if name in SHIPPED and path.is_file() else None


def shipped_names(dataset: str) -> list[str]:
    """What `--teacher NAME` finds shipped for a dataset besides the architectures: member files, then ensembles."""
    own = [n[len(dataset) + 1:-len(".pt")] for n in SHIPPED if n.startswith(f"{dataset}-")]
    return [n for n in own if n not in TEACHERS] + list(SHIPPED_ENSEMBLES.get(dataset, {}))


def _verified(shipped: Path) -> Path:
    want = SHIPPED[shipped.name]
    if not shipped.is_file():
        raise TeacherError(f"the shipped teacher {shipped} is missing; reinstall autokd")
    if file_sha256(shipped) != want:
        raise TeacherError(f"the shipped teacher {shipped} is corrupt (SHA-256 differs from {want[:12]}…); "
                           f"reinstall autokd")
    return shipped


def default_teacher(dataset: str) -> str:
    return DEFAULT_TEACHERS.get(dataset, "darts")


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> None:
    """Atomic: a crash leaves the old checkpoint or none, never a torn file."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    write_atomic(path, buf.getvalue())


CHECKPOINT_FIELDS = {
    "format": Field("str", required=True), "arch": Field("str", required=True, choices=tuple(TEACHERS)),
    "args": Field("dict", required=True), "num_classes": Field("int", min=2, required=True),
    "input_shape": Field("list", required=True), "mean": Field("list", required=True),
    "std": Field("list", required=True), "state_dict": Field("dict", required=True),
    "test_acc": Field("float", min=0, max=1, nullable=True),
}


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
    try:
        check_object(ckpt, CHECKPOINT_FIELDS, f"teacher checkpoint {p}", allow_unknown=True)
    except UserError as exc:
        raise TeacherError(str(exc)) from None
    return ckpt


def check_fits(meta: dict[str, Any], dataset: Dataset, where: str) -> None:
    if int(meta["num_classes"]) != dataset.num_classes:
        raise TeacherError(f"teacher {where} predicts {meta['num_classes']} classes but {dataset.info.name} has "
                           f"{dataset.num_classes}; use a teacher trained on this dataset")
    shape = meta.get("input_shape")
    if shape is not None and tuple(shape) != tuple(dataset.input_shape):
        raise TeacherError(f"teacher {where} takes inputs {tuple(shape)} but {dataset.info.name} "
                           f"images are {tuple(dataset.input_shape)}; use a teacher trained on this dataset")
    for key in ("mean", "std"):
        if len(meta[key]) != dataset.input_shape[0]:
            raise TeacherError(f"teacher {where}: {key} has {len(meta[key])} values but {dataset.info.name} "
                               f"images have {dataset.input_shape[0]} channel(s)")


def module_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    try:
        module = build_teacher(ckpt["arch"], int(ckpt["num_classes"]), int(ckpt["input_shape"][0]),
                               dict(ckpt["args"]))
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
        module.load_state_dict(state)  # fp16 (shipped) checkpoints are widened to fp32
    except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise TeacherError(f"teacher checkpoint does not match architecture {ckpt['arch']}: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return module


STATE_EVERY_SECONDS = 120.0  # a teacher saves its state at the first epoch end after this many seconds


def state_path_of(checkpoint: Path) -> Path:
    """Where a teacher being trained into `checkpoint` keeps its resumable state (beside it; removed when done)."""
    return checkpoint.with_name(checkpoint.name + ".state")


def train_teacher(arch: str, dataset: Dataset, epochs: float | None = None, smoke: bool = False,
                  seed: int = 0, device: str | None = None, progress: Progress | None = None,
                  state_path: Path | None = None, precision: str | None = None) -> tuple[dict[str, Any], EvalResult]:
    """Train a teacher with its recipe on the training set; accuracy is measured on the test set.

    With `state_path`, the training state is saved there at epoch ends (every 2 minutes at most) and a rerun of
    the same teacher (architecture, recipe, data, seed) resumes from it: a kill loses minutes, not hours. The
    caller removes it once the checkpoint is written. `precision` overrides the recipe's (autokd.recipe.PRECISIONS:
    bf16 trains a teacher about twice as fast on a CPU with native bf16; its test accuracy says what it cost)."""
    spec = teacher_arch(arch)
    args = dict(spec.smoke_args if smoke else spec.args)
    recipe = TrainConfig.of(spec.recipe, float(epochs if epochs is not None else
                                                (spec.smoke_epochs if smoke else spec.epochs)), seed=seed)
    if precision is not None:
        recipe = dataclasses.replace(recipe, precision=precision)
    train, test = dataset.train, dataset.test
    if smoke:
        g = torch.Generator().manual_seed(seed)
        train = train.subset(torch.randperm(len(train), generator=g)[:SMOKE_TRAIN_IMAGES])
        test = test_subset(test, SMOKE_TEST_IMAGES, seed)
    torch.manual_seed(seed)
    module = build_teacher(arch, dataset.num_classes, dataset.input_shape[0], args)
    checkpointing = None
    if state_path is not None:
        from autokd.train import Checkpointing

        # what the state belongs to: a state saved for another teacher, recipe or dataset is ignored
        key = hashlib.sha256(json.dumps({"arch": arch, "args": args, "recipe": dataclasses.asdict(recipe),
                                         "dataset": dataset.info.name, "train_images": len(train), "smoke": smoke},
                                        sort_keys=True, default=str).encode()).hexdigest()
        checkpointing = Checkpointing(Path(state_path), key, every_seconds=STATE_EVERY_SECONDS)
    result = train_and_evaluate(module, train, test, dataset.info.mean, dataset.info.std, recipe, device=device,
                                progress=progress, checkpointing=checkpointing)
    if result.status != "ok":
        raise RuntimeError(f"teacher training failed: {result.error}")
    from autokd.baselines import linear_baseline

    ckpt = {"format": TEACHER_FORMAT, "arch": arch, "args": args, "dataset": dataset.info.name,
            "num_classes": dataset.num_classes, "input_shape": list(dataset.input_shape),
            "mean": list(dataset.info.mean), "std": list(dataset.info.std),
            "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "test_acc": result.eval_acc, "test_images": len(test), "train_images": len(train),
            "epochs": recipe.epochs, "precision": recipe.precision, "smoke": smoke, "params": result.params,
            "macs": result.macs,
            "seconds": result.seconds, "device": result.device, "seed": seed, "autokd_version": __version__,
            "linear_baseline": linear_baseline(train, test, dataset.info.mean, dataset.info.std),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    return ckpt, result


SIDECAR_FIELDS = {
    "num_classes": Field("int", min=2, required=True), "mean": Field("list", required=True),
    "std": Field("list", required=True), "input_shape": Field("list", nullable=True),
    "test_acc": Field("float", min=0, max=1, nullable=True), "name": Field("str", nullable=True),
}


def read_sidecar(path: Path, model_file: Path) -> dict[str, Any]:
    """The declared facts about a user's model: its class count and the normalisation it expects."""
    if not path.is_file():
        raise TeacherError(f"teacher {model_file} needs a sidecar {path} declaring its num_classes, mean and std "
                           f'(e.g. {{"num_classes": 10, "mean": [0.286], "std": [0.353]}}); see docs/teachers.md')
    meta = check_object(read_json(path, "teacher sidecar"), SIDECAR_FIELDS, f"teacher sidecar {path}")
    for key in ("mean", "std"):
        values = meta[key]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise TeacherError(f"teacher sidecar {path}: {key} must be a list of numbers, one per channel")
        if key == "std" and min(values) <= 0:
            raise TeacherError(f"teacher sidecar {path}: std values must be positive")
    return meta


def _archive_kind(path: Path) -> str:
    """autokd, torchscript or export, from the file's own structure (not its name)."""
    if path.suffix == ".pt2":
        return "export"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return "autokd"  # not a zip archive: torch.load will say what it is
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any("/models/" in n and n.endswith(".json") for n in names) or any(n.endswith("archive_format")
                                                                          for n in names):
        return "export"
    return "autokd"


def _load_user_file(path: Path, kind: str) -> nn.Module:
    try:
        if kind == "torchscript":
            return torch.jit.load(str(path), map_location="cpu")
        program = torch.export.load(str(path))
        return program.module()
    except Exception as exc:
        raise TeacherError(f"teacher {path} cannot be loaded as a {kind} file ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _load_callable(spec: str, weights: str | None) -> tuple[nn.Module, Path]:
    if not weights:
        raise TeacherError(f"teacher {spec} is a module:callable; give its state dict with --teacher-weights")
    mod_name, fn_name = spec.split(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except ImportError as exc:
        raise TeacherError(f"teacher {spec}: cannot import {mod_name} ({exc}); put it on PYTHONPATH") from None
    except AttributeError:
        raise TeacherError(f"teacher {spec}: {mod_name} has no {fn_name}") from None
    try:
        module = fn()
    except Exception as exc:
        raise TeacherError(f"teacher {spec}: calling {fn_name}() failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(module, nn.Module):
        raise TeacherError(f"teacher {spec}: {fn_name}() returned {type(module).__name__}, not an nn.Module")
    wpath = Path(weights)
    try:
        state = torch.load(wpath, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        module.load_state_dict(state)
    except FileNotFoundError:
        raise TeacherError(f"--teacher-weights {wpath} not found") from None
    except Exception as exc:
        raise TeacherError(f"--teacher-weights {wpath} does not fit {spec} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return module, wpath


def _check_forward(module: nn.Module, meta: dict[str, Any], dataset: Dataset, where: str,
                   device: torch.device) -> None:
    """A forward pass on a few of the dataset's images: the output must be (batch, classes) and finite."""
    x = dataset.test.images[:4].to(device).float() / 255.0
    mean = torch.tensor(meta["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(meta["std"], device=device).view(1, -1, 1, 1)
    try:
        with torch.inference_mode():
            out = module((x - mean) / std)
    except Exception as exc:
        raise TeacherError(f"teacher {where} fails on {dataset.info.name} images of shape "
                           f"{tuple(dataset.input_shape)} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    out = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0], dataset.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TeacherError(f"teacher {where} returns {got} for a batch of {x.shape[0]}; expected "
                           f"({x.shape[0]}, {dataset.num_classes}) logits for {dataset.info.name}")
    if not torch.isfinite(out.float()).all():
        raise TeacherError(f"teacher {where} returns non-finite logits on {dataset.info.name} images")


def _built_in(name: str, dataset: Dataset, smoke: bool, device: str | None, quiet: bool,
              progress: Progress | None) -> Path:
    """The checkpoint file of a built-in teacher: shipped, cached, or trained now (with progress) and cached."""
    shipped = None if smoke else shipped_path(dataset.info.name, name)
    if shipped is not None:
        return _verified(shipped)
    path = teacher_cache_path(dataset.info.name, name, smoke)
    if not path.is_file():
        if not quiet:
            log.info(f"autokd: no {name} teacher for {dataset.info.name} yet; training one "
                     f"({'smoke size' if smoke else 'full recipe'}) → {path}")
        ckpt, result = train_teacher(name, dataset, smoke=smoke, device=device,
                                     progress=progress if not quiet else None, state_path=state_path_of(path))
        save_checkpoint(path, ckpt)
        state_path_of(path).unlink(missing_ok=True)
        if not quiet:
            log.info(f"autokd: teacher {name} test accuracy {result.eval_acc:.4f} ({result.seconds:.0f}s)")
    return path


def resolve_teacher(name_or_path: str, dataset: Dataset, smoke: bool = False, device: str | None = None,
                    quiet: bool = False, weights: str | None = None, progress: Progress | None = None,
                    check: bool = False) -> Teacher:
    """Any teacher `--teacher` accepts (module docstring), on `device`, in eval mode, checked against the dataset
    (with `check`, by a forward pass too)."""
    dev = pick_device(device)
    kind = "autokd"
    shipped_ensemble = SHIPPED_ENSEMBLES.get(dataset.info.name, {}).get(name_or_path)
    if shipped_ensemble is not None:
        return _resolve_ensemble(SEPARATOR.join(shipped_ensemble.members), dataset, smoke, device, quiet, weights,
                                 progress, check, mirror=shipped_ensemble.mirror, shipped_name=name_or_path)
    if is_ensemble(name_or_path):
        return _resolve_ensemble(name_or_path, dataset, smoke, device, quiet, weights, progress, check)
    shipped_file = f"{dataset.info.name}-{name_or_path}.pt"  # a shipped name: DATASET-NAME.pt beside the package
    if name_or_path in TEACHERS:
        path = _built_in(name_or_path, dataset, smoke, device, quiet, progress)
    elif shipped_file in SHIPPED and not Path(name_or_path).exists():
        path = _verified(SHIPPED_DIR / shipped_file)
    elif CALLABLE.match(name_or_path) and not Path(name_or_path).exists():
        module, path = _load_callable(name_or_path, weights)
        meta = {**read_sidecar(Path(f"{path}.json"), path), "arch": name_or_path}
        return _finish(module, meta, path, file_sha256(path) + name_or_path, "callable", dataset, dev, check)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            if path.is_dir():
                raise TeacherError(f"teacher {path} is a folder; give a checkpoint or model file")
            if "/" not in name_or_path and "." not in name_or_path:
                raise TeacherError(f"unknown teacher {name_or_path!r}; built-in: "
                                   f"{', '.join([*TEACHERS, *shipped_names(dataset.info.name)])}, a "
                                   f"checkpoint or TorchScript/export file, or module:callable")
            raise TeacherError(f"teacher file {path} not found")
        kind = _archive_kind(path)
        if kind != "autokd":
            module = _load_user_file(path, kind)
            meta = {**read_sidecar(Path(f"{path}.json"), path), "arch": kind}
            return _finish(module, meta, path, file_sha256(path), kind, dataset, dev, True)
    ckpt = load_checkpoint(path)
    check_fits(ckpt, dataset, str(path))
    module = module_from_checkpoint(ckpt)
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return _finish(module, meta, path, file_sha256(path), kind, dataset, dev, check)


def _finish(module: nn.Module, meta: dict[str, Any], path: Path, fingerprint: str, kind: str, dataset: Dataset,
            dev: torch.device, check: bool) -> Teacher:
    check_fits(meta, dataset, str(path))
    module = module.to(dev)
    if dev.type == "cuda" and kind != "export":
        module = module.to(memory_format=torch.channels_last)
    if kind != "export":  # an exported program keeps the mode it was exported in (export it in eval mode)
        module.eval()
    if check:
        _check_forward(module, meta, dataset, str(path), dev)
    meta.setdefault("params", sum(p.numel() for p in module.parameters()))
    return Teacher(module, meta, path, hashlib.sha256(fingerprint.encode()).hexdigest(), kind)


def _resolve_ensemble(spec: str, dataset: Dataset, smoke: bool, device: str | None, quiet: bool,
                      weights: str | None, progress: Progress | None, check: bool, mirror: bool = False,
                      shipped_name: str | None = None) -> Teacher:
    """Each member resolved (and checked against the dataset) as a teacher of its own, then averaged;
    `shipped_name`: a shipped ensemble's, which resolves it again."""
    names = member_names(spec)
    if len(names) < 2:
        raise TeacherError(f"teacher {spec!r}: an ensemble needs two or more teachers, comma-separated")
    if weights:
        raise TeacherError("--teacher-weights belongs to one module:callable teacher, not to an ensemble; save "
                           "that member as TorchScript and list its file")
    members = []
    for name in names:
        if CALLABLE.match(name) and not Path(name).exists():
            raise TeacherError(f"ensemble member {name}: a module:callable teacher cannot be a member (it needs "
                               "--teacher-weights); save it as TorchScript and list its file")
        members.append(resolve_teacher(name, dataset, smoke=smoke, device=device, quiet=quiet, progress=progress,
                                       check=check))
    parts = build_ensemble(members, dataset.info.mean, dataset.info.std,
                           (lambda m: _test_accuracy(m, dataset)) if check else None, mirror)
    resolvable = shipped_name or SEPARATOR.join(m.resolvable() for m in members)
    return Teacher(parts["module"], parts["meta"], members[0].path, parts["fingerprint"], "ensemble", resolvable)


def _test_accuracy(module: nn.Module, dataset: Dataset, batch: int = 500) -> float:
    """Top-1 accuracy on the dataset's test set of a module taking images normalised with the dataset's statistics."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    return evaluate_accuracy(module, DeviceLoader(dataset.test, batch, device, dataset.info.mean, dataset.info.std))[0]


def teacher_summary(t: Teacher) -> dict[str, Any]:
    """What run.json, summaries and reports record about a teacher."""
    keys = ("arch", "args", "dataset", "test_acc", "test_images", "params", "macs", "epochs", "smoke", "name",
            "linear_baseline")
    return {**{k: t.meta.get(k) for k in keys}, "kind": t.kind, "path": t.resolvable(),
            "fingerprint": t.fingerprint[:16]}


class OnTheFlyTeacher:
    """Teacher logits computed for every student batch (the plain way; the logit cache avoids this cost).

    The batch is normalised with the dataset's statistics; a teacher trained with other statistics gets its input
    renormalised: x_t = x·(σ_d/σ_t) + (μ_d − μ_t)/σ_t.
    """

    def __init__(self, teacher: Teacher, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.module = teacher.module
        params = list(self.module.parameters()) + list(self.module.buffers())
        dev = params[0].device if params else torch.device("cpu")
        self.device = dev
        t_mean, t_std = torch.tensor(teacher.meta["mean"]), torch.tensor(teacher.meta["std"])
        d_mean, d_std = torch.tensor(mean), torch.tensor(std)
        self.identity = bool(torch.allclose(t_mean, d_mean) and torch.allclose(t_std, d_std))
        self.scale = (d_std / t_std).view(1, -1, 1, 1).to(dev)
        self.shift = ((d_mean - t_mean) / t_std).view(1, -1, 1, 1).to(dev)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x if self.identity else x * self.scale + self.shift
        with torch.inference_mode(), autocast(self.device):
            out = self.module(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.float().clone()  # a normal tensor: inference tensors cannot enter autograd

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.logits(batch.x)

    def feature_maps(self, batch: Batch) -> list[torch.Tensor]:
        """The teacher's group-end feature maps for the batch (autokd.nn.features), float32 and outside autograd."""
        x = batch.x if self.identity else batch.x * self.scale + self.shift
        with torch.inference_mode():
            with autocast(self.device):
                _, maps = feature_maps(self.module, x)
        return [m.float().clone() for m in maps]


def check_feature_maps(module: nn.Module, loss: str, what: str) -> None:
    """A feature-map loss (attention transfer) needs a teacher that exposes its feature maps: refused up front.
    `what` names the teacher in the message."""
    if needs_features(loss) and not has_feature_maps(module):
        raise TeacherError(f"--kd-loss {loss} needs a teacher that exposes its feature maps (the built-in teachers "
                           f"do); {what} does not: choose --kd-loss hinton, dkd or dist, or a built-in teacher")
