"""One evaluation of a search: plain-data spec in, plain-data result out (they cross process boundaries)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from autokd.errors import UserError


@dataclass(frozen=True)
class TrialSpec:
    trial_id: int
    config_id: tuple[int, int, int]  # (bracket, 0, index in bracket), as hpbandster numbers configurations
    theta: dict[str, Any]  # the 8 generator keys
    temperature: float
    alpha: float
    budget: float  # epochs
    seed: int  # architecture, split and training seed (the same for every budget of a configuration)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "config_id": list(self.config_id)}


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a search shares: data, teacher checkpoint path, recipe. Plain data only."""

    dataset: str
    data_dir: str | None
    teacher_path: str | None  # a checkpoint file; None for a search without KD
    param_limit: int
    subset: int | None
    val_fraction: float
    batch_size: int
    lr: float
    weight_decay: float
    split_seed: int  # one train/validation split for the whole search
    device: str | None = None
    memory_fraction: float | None = None  # cap on this process's share of GPU memory (packed trials)
    logit_cache: bool = False  # gather teacher logits from the per-view cache instead of a forward per step


@dataclass
class TrialResult:
    trial_id: int
    config_id: tuple[int, int, int]
    budget: float
    status: str  # "ok" or "failed"
    val_acc: float | None = None
    loss: float | None = None  # 1 - val_acc, what BOHB minimises; None (∞ to the model) for a failure
    params: int | None = None
    macs: int | None = None
    seconds: float = 0.0
    arch_id: str | None = None
    peak_memory_mb: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "config_id": list(self.config_id)}


_TEACHERS: dict[tuple[Any, ...], Any] = {}  # per process: teacher functions, built once per search


def _teacher_fn(ctx: TrialContext, ds: Any, train: Any, augment: Any) -> Any:
    from autokd.kd.cache import CachedTeacher, load_or_build
    from autokd.kd.teacher import OnTheFlyTeacher, resolve_teacher
    from autokd.train import pick_device

    # The split (seed, fraction, subset) decides which images the cache rows map to.
    key = (str(ctx.teacher_path), ds.info.name, str(ctx.device), ctx.logit_cache, ctx.split_seed, ctx.val_fraction,
           ctx.subset, augment)
    if key not in _TEACHERS:
        teacher = resolve_teacher(str(ctx.teacher_path), ds, device=ctx.device, quiet=True)
        if ctx.logit_cache:
            device = pick_device(ctx.device)
            logits, _ = load_or_build(teacher.module, str(ctx.teacher_path), train, augment, ds.info.mean,
                                      ds.info.std, device, quiet=True)
            _TEACHERS.clear()  # one cache on the device at a time
            _TEACHERS[key] = CachedTeacher(logits, train, train.image_ids(), device)
        else:
            _TEACHERS[key] = OnTheFlyTeacher(teacher, ds.info.mean, ds.info.std)
    return _TEACHERS[key]


def run_trial(spec: TrialSpec, ctx: TrialContext) -> TrialResult:
    """Sample the architecture, build it, train it with KD for the budget, score it. Never raises for a trial's
    own failure (invalid generator, NaN, OOM, exception): that is a result with status "failed"."""
    from autokd.data.dataset import load_dataset, train_val_split
    from autokd.nn.student import build_student
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_macs
    from autokd.train import KDConfig, TrainConfig, train_and_evaluate

    t0 = time.perf_counter()
    result = TrialResult(spec.trial_id, tuple(spec.config_id), spec.budget, "failed")
    try:
        if ctx.memory_fraction and torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(min(1.0, ctx.memory_fraction))
        ds = load_dataset(ctx.dataset, ctx.data_dir)
        arch = sample_architecture(spec.theta, spec.seed, ds.input_shape, ds.num_classes, ctx.param_limit)
        result.arch_id = arch.arch_id
        train, val = train_val_split(ds.train, ctx.val_fraction, ctx.split_seed, ctx.subset)
        use_kd = ctx.teacher_path is not None and spec.alpha > 0
        cfg = TrainConfig(epochs=spec.budget, batch_size=ctx.batch_size, lr=ctx.lr, weight_decay=ctx.weight_decay,
                          seed=spec.seed)
        teacher = _teacher_fn(ctx, ds, train, cfg.augment) if use_kd else None
        torch.manual_seed(spec.seed)
        model = build_student(arch)
        r = train_and_evaluate(model, train, val, ds.info.mean, ds.info.std, cfg, device=ctx.device,
                               teacher=teacher, kd=KDConfig(spec.temperature, spec.alpha) if use_kd else None,
                               macs=count_macs(arch))
        result.status, result.val_acc, result.params, result.macs = r.status, r.val_acc, r.params, r.macs
        result.peak_memory_mb, result.error = r.peak_memory_mb, r.error
        result.extra = {"train_loss": r.train_loss, "val_loss": r.val_loss, "device": r.device, "steps": r.steps}
        if r.status == "ok" and r.val_acc is not None:
            result.loss = 1.0 - r.val_acc
    except UserError as exc:  # invalid generator and the like: this configuration's failure
        result.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # anything else still must not stop the search
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - t0
    return result
