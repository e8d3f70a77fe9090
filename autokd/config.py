"""Search settings: one frozen dataclass, the table that validates every field wherever it comes from (CLI flags,
presets, experiment files, run.json), the presets (smoke, cpu, paper), and experiment files (experiments/*.yaml)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from autokd.errors import UserError
from autokd.resources import resource_dir
from autokd.validate import Field, check_depth, check_object, check_value

MAX_EVALUATIONS = 100_000  # a plan beyond this is a typo (e.g. --min-budget 1e-9), not a search


@dataclass(frozen=True)
class SearchSettings:
    dataset: str = "fashion-mnist"
    teacher: str | None = None  # built-in name, checkpoint, TorchScript/export file or module:callable; None: the
    #                             dataset's default teacher (the shipped one for fashion-mnist)
    teacher_weights: str | None = None  # state dict for a module:callable teacher
    no_kd: bool = False  # the NAGO baseline: space nago-nokd, α = 0, no teacher needed
    search_space: str = "nago"  # nago (the paper's) or nago-small (autokd's, for small limits: the cpu preset)
    min_budget: float = 30.0  # epochs
    max_budget: float = 120.0
    eta: int = 2
    iterations: int = 63  # brackets; 63 at 30/60/120, η=2 is 294 evaluations (~300 models)
    optimizer: str = "bohb"  # bohb: hpbandster's KDE model; random: uniform proposals, same brackets
    bracket_rounding: str = "hyperband"  # hyperband: n = ⌈…⌉ (Li et al.); hpbandster: ⌊…⌋ as hpbandster does
    promotion: str = "sync"  # sync: a rung chosen when the one below is complete (the paper's); async: ASHA-style
    rung_training: str = "scratch"  # scratch: every budget trained from the start (the paper's); continue: a promoted
    #                                 configuration continues its lower rung's wsd trunk (docs/training.md)
    refill_failed: bool = True  # a rung left short by failures gets fresh proposals, as in hpbandster
    min_points_in_model: int | None = None  # hpbandster's default (None): dimensions + 1
    random_fraction: float = 1 / 3  # share of proposals drawn at random once the model exists (hpbandster)
    executor: str = "auto"  # local (this process, or --workers processes), ray, or auto
    workers: int | None = None  # trials at once on this machine; None: chosen from the cores (see docs)
    threads_per_trial: int | None = None  # torch threads per trial; None: cores // workers
    gpus_per_trial: float = 1.0
    ray_address: str | None = None
    param_limit: int | None = None  # None: 4M for small images, 6M for large
    data_dir: str | None = None
    seed: int = 0
    subset: int | None = None  # train on N images of the training split; None: all
    val_images: int | None = None  # size of the validation split; None: val_fraction of the training set
    val_fraction: float = 0.1
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_scope: str = "all"  # all parameters (the NAGO reference) or weights only (no BN/bias/gates)
    lr_schedule: str = "cosine"  # cosine: annealed to each budget; step: StepLR(lr_step_epochs, lr_step_gamma)
    lr_step_epochs: float = 20.0
    lr_step_gamma: float = 0.5
    lr_decay_fraction: float = 0.2  # wsd: the last fraction of each budget decays linearly to 0
    augment_pad: int = 4  # random crop after zero padding by this many pixels (0: no crop)
    augment_flip: bool = True
    eval_batch_size: int = 1000
    smoke_teacher: bool = False  # train a missing built-in teacher at smoke size
    max_nodes: int | None = None  # cap on G1/G2/G3_nodes (CPU presets keep the conv-op count small)
    merge_width: str = "cell"  # top-level merge of inputs that differ: the cell's width, or "predecessor" (reference)
    logit_cache: str = "auto"  # teacher-logit cache: on, off, or auto (on with CUDA)
    device: str | None = None
    preset: str = "paper"

    @property
    def space(self) -> str:
        return f"{self.search_space}-nokd" if self.no_kd else self.search_space

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, where: str = "settings") -> "SearchSettings":
        """Every field's type and range, then the checks across fields."""
        check_object(asdict(self), SETTING_FIELDS, where)
        if not self.min_budget <= self.max_budget:
            raise UserError(f"budgets out of order: need --min-budget ({self.min_budget:g}) <= --max-budget "
                            f"({self.max_budget:g})")
        if not 0 < self.gpus_per_trial <= 1 and not float(self.gpus_per_trial).is_integer():
            raise UserError(f"--gpus-per-trial must be a fraction in (0, 1] or a whole number, got "
                            f"{self.gpus_per_trial}")
        if not self.no_kd and self.teacher is None and self.dataset is None:
            raise UserError("a KD search needs --teacher; or pass --no-kd")
        rungs = math.floor(math.log(self.max_budget / self.min_budget, self.eta) + 1e-9) + 1
        if rungs > 12:
            raise UserError(f"--min-budget {self.min_budget:g} and --max-budget {self.max_budget:g} at eta "
                            f"{self.eta} make {rungs} rungs; use at most 12 (raise --min-budget)")
        from autokd.search.hyperband import schedule_summary

        plan = schedule_summary(self.budgets(), self.eta, self.iterations, self.bracket_rounding)
        if plan["evaluations"] > MAX_EVALUATIONS:
            raise UserError(f"this plan has {plan['evaluations']:,} evaluations (over {MAX_EVALUATIONS:,}); lower "
                            f"--iterations or narrow the budgets")
        check_device(self.device)
        if self.rung_training == "continue" and self.lr_schedule != "wsd":
            raise UserError(f"--rung-training continue needs --lr-schedule wsd (a constant-rate trunk a higher budget "
                            f"can continue), not {self.lr_schedule}")
        if self.ray_address and self.executor == "local":
            raise UserError("--ray-address names a Ray cluster; it needs --executor ray (or auto), not local")
        return self

    def budgets(self) -> list[float]:
        """Rung budgets from max down by factors of η: s_max = ⌊log_η(max/min)⌋ (REFERENCE §4)."""
        s_max = int(math.floor(math.log(self.max_budget / self.min_budget, self.eta) + 1e-9))
        return [self.max_budget * self.eta ** (-s) for s in range(s_max, -1, -1)]


_DEVICE_HELP = "use cpu, cuda, cuda:N or auto"

# What every setting may hold. The same table checks CLI flags, presets, experiment files and run.json.
SETTING_FIELDS: dict[str, Field] = {
    "dataset": Field("str"),
    "teacher": Field("str", nullable=True),
    "teacher_weights": Field("str", nullable=True),
    "no_kd": Field("bool"),
    "min_budget": Field("float", above=0, max=100_000),
    "max_budget": Field("float", above=0, max=100_000),
    "eta": Field("int", min=2, max=16),
    "iterations": Field("int", min=1, max=100_000),
    "optimizer": Field("str", choices=("bohb", "random")),
    "bracket_rounding": Field("str", choices=("hyperband", "hpbandster")),
    "promotion": Field("str", choices=("sync", "async")),
    "rung_training": Field("str", choices=("scratch", "continue")),
    "lr_decay_fraction": Field("float", min=0.05, max=0.9),
    "refill_failed": Field("bool"),
    "min_points_in_model": Field("int", min=1, max=10_000, nullable=True),
    "random_fraction": Field("float", min=0, max=1),
    "executor": Field("str", choices=("auto", "local", "ray")),
    "workers": Field("int", min=1, max=1024, nullable=True),
    "threads_per_trial": Field("int", min=1, max=1024, nullable=True),
    "gpus_per_trial": Field("float", above=0, max=64),
    "ray_address": Field("str", nullable=True),
    "param_limit": Field("int", min=1000, max=10**9, nullable=True),
    "data_dir": Field("str", nullable=True),
    "seed": Field("int", min=0, max=2**31 - 1),
    "subset": Field("int", min=2, max=10**9, nullable=True),
    "val_images": Field("int", min=10, max=10**9, nullable=True),
    "val_fraction": Field("float", above=0, max=0.9),
    "batch_size": Field("int", min=1, max=65_536),
    "lr": Field("float", above=0, max=100),
    "momentum": Field("float", min=0, max=0.999),
    "weight_decay": Field("float", min=0, max=1),
    "weight_decay_scope": Field("str", choices=("all", "weights")),
    "lr_schedule": Field("str", choices=("cosine", "step", "wsd")),
    "lr_step_epochs": Field("float", above=0, max=100_000),
    "lr_step_gamma": Field("float", above=0, max=1),
    "augment_pad": Field("int", min=0, max=64),
    "augment_flip": Field("bool"),
    "eval_batch_size": Field("int", min=1, max=1_000_000),
    "smoke_teacher": Field("bool"),
    "max_nodes": Field("int", min=3, max=10, nullable=True),
    "merge_width": Field("str", choices=("cell", "predecessor")),
    "search_space": Field("str", choices=("nago", "nago-small")),
    "logit_cache": Field("str", choices=("auto", "on", "off")),
    "device": Field("str", nullable=True, help=_DEVICE_HELP),
    "preset": Field("str", choices=("smoke", "cpu", "paper")),
}
assert set(SETTING_FIELDS) == {f.name for f in fields(SearchSettings)}


def check_device(device: str | None) -> None:
    """A device string torch understands and this machine has."""
    if device is None or device in ("auto", "cpu"):
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device!r} is not a device; {_DEVICE_HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        raise UserError(f"--device {device!r} is not supported; {_DEVICE_HELP}")


# Presets. `cpu` is the README's main job: sized from measurements on a 2-core machine (docs/benchmarks.md) so a
# complete search of real Fashion-MNIST finishes in about 10 minutes there. `smoke` is for tests: a minute. `paper`
# is the paper's protocol (a GPU job).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"min_budget": 30.0, "max_budget": 120.0, "eta": 2, "iterations": 63, "subset": None,
              "param_limit": None, "smoke_teacher": False},
    # two brackets of 0.2/0.6/1.8/5.4 epochs of 8,000 images (η = 3): the 27 configurations of the first rung give
    # BOHB's model its 20 results at one budget, the second bracket fills the worker the top rung leaves idle, and
    # continued wsd rungs pay for it; 8,000 images rather than 10,000 leave the 10 minutes a margin over the students
    # drawn (10,000 measured 9.6–11.6 min; docs/benchmarks.md, "Scheduling")
    "cpu": {"min_budget": 0.2, "max_budget": 5.4, "eta": 3, "iterations": 2, "subset": 8_000,
            "promotion": "async", "lr_schedule": "wsd", "rung_training": "continue",
            # autokd's small-limit space: its own node bounds (no max_nodes cap), a searched head width
            "val_images": 5000, "param_limit": 100_000, "search_space": "nago-small", "batch_size": 128, "lr": 0.1,
            "weight_decay": 5e-4, "weight_decay_scope": "all", "augment_pad": 0, "augment_flip": True,
            "logit_cache": "on", "eval_batch_size": 256, "smoke_teacher": False},
    "smoke": {"min_budget": 1.0, "max_budget": 4.0, "eta": 2, "iterations": 3, "subset": 1500,
              "param_limit": 100_000, "smoke_teacher": True, "batch_size": 64, "lr": 0.05, "max_nodes": 4,
              "workers": 1},
}


def settings_from_dict(values: dict[str, Any], where: str) -> SearchSettings:
    """Settings from a mapping whose every key is a setting; types and ranges are checked."""
    checked = check_object(values, SETTING_FIELDS, where)
    return replace(SearchSettings(), **checked)


def apply_preset(name: str, overrides: dict[str, Any], where: str = "settings") -> SearchSettings:
    """The preset's values, then every explicitly given override (None means not given)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    values: dict[str, Any] = {**PRESETS[name], "preset": name}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return settings_from_dict(values, where)


EXPERIMENT_KEYS = {"preset": Field("str", choices=tuple(PRESETS)), "search": Field("dict"),
                   "retrain": Field("dict"), "study": Field("dict"), "description": Field("str")}


def experiment_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        return path
    shipped = resource_dir("experiments") / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = ", ".join(shipped_experiments())
        raise UserError(f"no experiment named {name_or_path!r}; shipped: {names} (or give a .yaml path)")
    return shipped


def shipped_experiments() -> list[str]:
    return sorted(p.stem for p in resource_dir("experiments").glob("*.yaml"))


def load_experiment(name_or_path: str) -> dict[str, Any]:
    """An experiment file (`experiments/NAME.yaml` or a path), validated as a whole: top-level keys, then every
    `search:` key against the settings table (the `retrain:` and `study:` sections are checked by their readers)."""
    path = experiment_path(name_or_path)
    where = f"experiment file {path}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{where} not found; shipped: {', '.join(shipped_experiments())}") from None
    except OSError as exc:
        raise UserError(f"{where} cannot be read ({exc.strerror or exc})") from None
    try:
        obj = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{where} is not UTF-8 text; save it as UTF-8 YAML") from None
    except (yaml.YAMLError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{where}: invalid YAML ({first})") from None
    check_depth(obj, where)
    obj = check_object(obj, EXPERIMENT_KEYS, where)
    if "search" in obj:
        search = dict(obj["search"])
        unknown = sorted(str(k) for k in search if k not in SETTING_FIELDS)
        if unknown:
            raise UserError(f"{where}: unknown key(s) in search: {', '.join(unknown)}")
        for key, value in search.items():
            check_value(value, SETTING_FIELDS[key], f"search.{key}", where)
    return obj
