"""Search settings: one frozen dataclass, the presets (smoke, paper), and experiment files (experiments/*.yaml)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from autokd.errors import UserError
from autokd.resources import resource_dir


@dataclass(frozen=True)
class SearchSettings:
    dataset: str = "fashion-mnist"
    teacher: str | None = "darts"  # built-in name or checkpoint path; None only with no_kd
    no_kd: bool = False  # the NAGO baseline: space nago-nokd, α = 0, no teacher needed
    min_budget: float = 30.0  # epochs
    max_budget: float = 120.0
    eta: int = 2
    iterations: int = 63  # brackets to run; 63 brackets at 30/60/120, η=2 is 294 evaluations (~300 models)
    executor: str = "auto"  # local, ray, or auto (ray with CUDA, local without)
    gpus_per_trial: float = 1.0
    ray_address: str | None = None
    param_limit: int | None = None  # None: 4M for small images, 6M for large
    data_dir: str | None = None
    seed: int = 0
    subset: int | None = None  # train on N images of the training split (validate on N/5); None: all
    val_fraction: float = 0.1
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 1e-4
    smoke_teacher: bool = False  # train a missing built-in teacher at smoke size
    max_nodes: int | None = None  # cap on G1/G2/G3_nodes (smoke: 4, so a CPU trial has at most 64 conv ops)
    logit_cache: str = "auto"  # teacher-logit cache: on, off, or auto (on with CUDA)
    device: str | None = None
    preset: str = "paper"

    @property
    def space(self) -> str:
        return "nago-nokd" if self.no_kd else "nago"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> "SearchSettings":
        if not 0 < self.min_budget <= self.max_budget:
            raise UserError(f"budgets out of order: need 0 < --min-budget ({self.min_budget:g}) <= --max-budget "
                            f"({self.max_budget:g})")
        if self.eta < 2:
            raise UserError(f"--eta must be at least 2, got {self.eta}")
        if self.iterations < 1:
            raise UserError(f"--iterations must be at least 1, got {self.iterations}")
        if self.executor not in ("auto", "local", "ray"):
            raise UserError(f"--executor must be local, ray or auto, got {self.executor!r}")
        if not 0 < self.gpus_per_trial <= 1 and not float(self.gpus_per_trial).is_integer():
            raise UserError(f"--gpus-per-trial must be a fraction in (0, 1] or a whole number, got "
                            f"{self.gpus_per_trial}")
        if self.logit_cache not in ("auto", "on", "off"):
            raise UserError(f"--logit-cache must be auto, on or off, got {self.logit_cache!r}")
        if not self.no_kd and not self.teacher:
            raise UserError("a KD search needs --teacher (a built-in name or a checkpoint); or pass --no-kd")
        return self

    def budgets(self) -> list[float]:
        """Rung budgets from max down by factors of η: s_max = ⌊log_η(max/min)⌋ (REFERENCE §4)."""
        s_max = int(math.floor(math.log(self.max_budget / self.min_budget, self.eta) + 1e-9))
        return [self.max_budget * self.eta ** (-s) for s in range(s_max, -1, -1)]


# `--preset smoke` finishes a complete search on real Fashion-MNIST on a 2-core CPU in under 10 minutes, teacher
# training included: budgets 1/2/4 epochs over a 1,500-image subset, a 100k-parameter limit, at most 4 nodes per
# graph level (a CPU step costs ~3.5 ms per conv op, so 1000-op students would take hours), one full Hyperband
# cycle (3 brackets, 14 evaluations), a smoke-size teacher.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"min_budget": 30.0, "max_budget": 120.0, "eta": 2, "iterations": 63, "subset": None,
              "param_limit": None, "smoke_teacher": False},
    "smoke": {"min_budget": 1.0, "max_budget": 4.0, "eta": 2, "iterations": 3, "subset": 1500,
              "param_limit": 100_000, "smoke_teacher": True, "batch_size": 64, "lr": 0.05, "max_nodes": 4},
}


def apply_preset(name: str, overrides: dict[str, Any]) -> SearchSettings:
    """The preset's values, then every explicitly given override (None means not given)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    values: dict[str, Any] = {**PRESETS[name], "preset": name}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return settings_from_dict(values, f"preset {name}")


def settings_from_dict(values: dict[str, Any], where: str) -> SearchSettings:
    known = {f.name for f in fields(SearchSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    return replace(SearchSettings(), **values)


def load_experiment(name_or_path: str) -> dict[str, Any]:
    """Settings of an experiment file (`experiments/NAME.yaml` or a path): a preset plus overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = resource_dir("experiments") / f"{name_or_path}.yaml"
    try:
        obj = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"experiment file {path} not found") from None
    except yaml.YAMLError as exc:
        raise UserError(f"experiment file {path}: invalid YAML ({exc})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("search", {}), dict):
        raise UserError(f"experiment file {path}: expected a mapping with a 'search' mapping")
    return obj
