"""One evaluation of a search: plain-data spec in, plain-data result out (they cross process boundaries)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from autokd.errors import DatasetError, InvalidGenerator, TeacherError, is_programming_error
from autokd.memo import Memo
from autokd.recipe import DEFAULT_KD, Recipe, recipe_of
from autokd.space.configspace import kd_of, theta_of
from autokd.validate import identity

class Status(StrEnum):
    """A trial's status (a str: it compares equal to, and is written as, its value)."""

    OK = "ok"
    FAILED = "failed"  # the configuration's own failure: invalid generator, NaN, out of memory, an exception in its
    #                    training — told to the model as infinite loss, never promoted
    ENVIRONMENT = "environment"  # the teacher file, dataset or device went away — not the configuration's verdict:
    #                              not told to the model, rerun on resume
    LOST = "lost"  # the Ray node running it died — the environment's failure too, but one a cluster survives: rerun


STATUSES = tuple(s.value for s in Status)


@dataclass(frozen=True)
class TrialSpec:
    """One evaluation to run (SMAC3's TrialInfo): an opaque configuration — the plain values the space defines, as
    its ConfigSpace sampled them — at a budget, with the seed. What the configuration means (θ, τ, α, a searched KD
    loss) is read from it by the space's functions (autokd.space.configspace: theta_of, kd_of), in one place."""

    trial_id: int
    config_id: tuple[int, int, int]  # (bracket, stage, index), as hpbandster numbers configurations
    config: Mapping[str, Any]  # the space's values: θ's keys, and temperature / alpha / loss (+ its parameters)
    budget: float  # epochs
    seed: int  # architecture and training seed (the same for every budget of a configuration)
    continue_from: float | None = None  # continued rungs: the lower budget whose trunk this one continues
    keep_trunk: bool = False  # continued rungs: save this budget's trunk for the next rung
    # The seed of the weights' initialisation and the data order; None: `seed`. A study that trains every budget
    # from scratch with its own seed (the paper's protocol) sets it; the architecture always comes from `seed`.
    train_seed: int | None = None

    @classmethod
    def of(cls, trial_id: int, config_id: tuple[int, int, int], theta: Mapping[str, Any], temperature: float,
           alpha: float, budget: float, seed: int, *, kd_loss: str | None = None,
           kd_params: Mapping[str, float] | None = None, **rest: Any) -> "TrialSpec":
        """A NAGO configuration from its parts (θ, τ, α, optionally a KD loss and its parameters)."""
        config = {**theta, "temperature": float(temperature), "alpha": float(alpha),
                  **({"loss": kd_loss, **(kd_params or {})} if kd_loss is not None else {})}
        return cls(trial_id, tuple(config_id), config, float(budget), int(seed), **rest)  # type: ignore[arg-type]

    @property
    def theta(self) -> dict[str, Any]:
        return theta_of(self.config)

    @property
    def temperature(self) -> float:
        return float(self.config.get("temperature", DEFAULT_KD.temperature))

    @property
    def alpha(self) -> float:
        return float(self.config.get("alpha", 0.0))  # a space without α (no KD) trains without a teacher

    @property
    def kd_loss(self) -> str | None:
        """A space that searches the KD loss: this configuration's loss, overriding the recipe's; None: the
        recipe's (--kd-loss)."""
        return kd_of(self.config).get("kd_loss")

    @property
    def kd_params(self) -> dict[str, float] | None:
        return kd_of(self.config).get("kd_params")

    @property
    def training_seed(self) -> int:
        return self.seed if self.train_seed is None else self.train_seed

    def to_json(self) -> dict[str, Any]:
        """The configuration, and beside it θ/τ/α (and a searched loss) as the journal's readers of every release
        read them."""
        out = {**asdict(self), "config_id": list(self.config_id), "config": dict(self.config),
               "theta": self.theta, "temperature": self.temperature, "alpha": self.alpha}
        if self.kd_loss is not None:
            out.update(kd_loss=self.kd_loss, kd_params=self.kd_params)
        if out["train_seed"] is None:
            del out["train_seed"]  # the journal's records stay as earlier releases wrote them
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TrialSpec":
        """From `to_json`, or a journal record of an earlier release (θ, τ, α and a searched loss as flat fields)."""
        rest = {k: d[k] for k in ("continue_from", "keep_trunk", "train_seed") if d.get(k) is not None}
        if isinstance(d.get("config"), Mapping):
            return cls(int(d["trial_id"]), tuple(d["config_id"]), dict(d["config"]), float(d["budget"]),
                       int(d["seed"]), **rest)
        return cls.of(int(d["trial_id"]), tuple(d["config_id"]), dict(d["theta"]), float(d["temperature"]),
                      float(d["alpha"]), float(d["budget"]), int(d["seed"]), kd_loss=d.get("kd_loss"),
                      kd_params=d.get("kd_params"), **rest)


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a search shares: data, teacher, recipe, threads. Plain data only."""

    dataset: str
    data_dir: str | None
    teacher_path: str | None  # checkpoint / TorchScript / export file or module:callable; None without KD
    param_limit: int
    subset: int | None
    val_fraction: float
    split_seed: int  # one train/validation split for the whole search
    device: str | None = None
    logit_cache: bool = False  # gather teacher logits from the per-view cache instead of a forward per step
    teacher_weights: str | None = None
    val_images: int | None = None
    recipe: Recipe = Recipe()  # how every trial trains (autokd.recipe: each setting declared there)
    state_dir: str | None = None  # continued rungs: where trunk states live (RUN_DIR/states)
    threads: int | None = None  # torch threads for the trial; None leaves torch's choice
    merge_width: str = "cell"
    eval_at: tuple[float, ...] = ()  # also score at these lower epochs on the way (a step schedule's prefixes)
    macs_limit: float | None = None  # hard limits beside param_limit: a student over one is rejected before training
    memory_limit: float | None = None  # activation MB per image (autokd.deploy.activation_mb)
    latency_limit: float | None = None  # ms at batch 1 (autokd.deploy.student_latency); also makes trials measure it
    objective: str = "accuracy"  # accuracy+latency makes trials measure their latency

    @classmethod
    def from_settings(cls, settings: Any, teacher_path: str | None, param_limit: int, device: str | None,
                      logit_cache: bool, threads: int | None) -> "TrialContext":
        names = {f.name for f in fields(cls)} - {"recipe"}
        values = {k: v for k, v in asdict(settings).items() if k in names}
        values.update(teacher_path=teacher_path, param_limit=param_limit, split_seed=settings.seed, device=device,
                      logit_cache=logit_cache, threads=threads, recipe=recipe_of(settings))
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrialContext":
        """From `to_json` (what crosses to a worker process or Ray task)."""
        recipe = d.get("recipe")
        return cls(**{**d, "recipe": Recipe(**recipe) if isinstance(recipe, dict) else (recipe or Recipe()),
                      "eval_at": tuple(d.get("eval_at") or ())})

    def train_config(self, budget: float, seed: int) -> Any:
        from autokd.train import TrainConfig

        return TrainConfig.of(self.recipe, budget, seed=seed, eval_at=tuple(e for e in self.eval_at if e < budget))


@dataclass(frozen=True)
class TrialResult:
    """What one evaluation gave: frozen once made (an executor adds where it ran with `with_extra`)."""

    trial_id: int
    config_id: tuple[int, int, int]
    budget: float
    status: Status
    val_acc: float | None = None
    loss: float | None = None  # 1 - val_acc, what BOHB minimises; None (∞ to the model) for a failure
    params: int | None = None
    macs: int | None = None
    seconds: float = 0.0
    arch_id: str | None = None
    peak_memory_mb: float | None = None
    activation_mb: float | None = None  # per image, fp32, what a training step keeps (autokd.deploy.activation_mb)
    latency_ms: float | None = None  # batch 1, as deployed (only when a latency limit or objective asks for it)
    error: str | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    steps: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: train loss, lr, seconds
    checkpoints: list[dict[str, float]] = field(default_factory=list)  # validation scores at ctx.eval_at
    extra: dict[str, Any] = field(default_factory=dict)  # where it ran: device, pid, threads, times

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))  # a plain string (journal, tests) becomes a Status

    def with_extra(self, **extra: Any) -> "TrialResult":
        return replace(self, extra={**self.extra, **extra})

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "config_id": list(self.config_id), "status": self.status.value}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrialResult":
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in names}, "config_id": tuple(d["config_id"])})


Progress = Callable[[dict[str, Any]], None]


def over_limits(macs: int, activation: float, ctx: "TrialContext", latency: float | None = None) -> str | None:
    """Why a student breaks a hard limit beside the parameter limit (None: it does not)."""
    if ctx.macs_limit is not None and macs > ctx.macs_limit:
        return f"rejected before training: {macs:,} MACs per image, over --macs-limit {ctx.macs_limit:,.0f}"
    if ctx.memory_limit is not None and activation > ctx.memory_limit:
        return (f"rejected before training: {activation:.3f} MB of activations per image, over --memory-limit "
                f"{ctx.memory_limit:g}")
    if ctx.latency_limit is not None and latency is not None and latency > ctx.latency_limit:
        return f"rejected before training: {latency:.3f} ms at batch 1, over --latency-limit {ctx.latency_limit:g}"
    return None


LATENCIES = Memo("student latencies", max_items=512)  # per process: (arch_id, threads) → student_latency's facts


def _is_environment_error(exc: BaseException) -> bool:
    """Failures of the machine or its files, not of the configuration: a missing/corrupt teacher or dataset, a
    filesystem error, a device that is gone."""
    if isinstance(exc, InvalidGenerator):
        return False
    if isinstance(exc, (TeacherError, DatasetError, OSError)):
        return True
    return isinstance(exc, RuntimeError) and _device_lost(str(exc))


def _device_lost(text: str) -> bool:
    return any(s in text for s in ("CUDA error", "no CUDA GPUs", "device-side assert", "CUDA driver"))


def trunk_path(ctx: TrialContext, config_id: tuple[int, ...], budget: float) -> Path:
    """The trunk state a configuration's evaluation at `budget` leaves for its next rung."""
    return Path(str(ctx.state_dir)) / f"b{config_id[0]}-s{config_id[1]}-c{config_id[2]}-at{budget:g}.pt"


def _trunk(spec: TrialSpec, ctx: TrialContext, arch_id: str, n_train: int) -> Any:
    """Where this evaluation's trunk comes from and goes; the key ties a state to what it trained (architecture,
    seed, recipe, KD, data size), so a state of anything else is never continued."""
    from autokd.train import Trunk

    recipe = json.dumps(identity(ctx.recipe), sort_keys=True)  # without the same_result settings
    key = "|".join(map(str, (arch_id, spec.training_seed, spec.temperature, spec.alpha, recipe, n_train,
                             ctx.teacher_path)))
    load = trunk_path(ctx, spec.config_id, spec.continue_from) if spec.continue_from is not None else None
    return Trunk(load, trunk_path(ctx, spec.config_id, spec.budget) if spec.keep_trunk else None, key)


def run_trial(spec: TrialSpec, ctx: TrialContext, progress: Progress | None = None) -> TrialResult:
    """Sample the architecture, build it, train it with KD for the budget, score it (autokd.factory, as retrain and
    evaluate do). Never raises for a trial's own failure (invalid generator, NaN, OOM, exception): that is a result
    with status "failed"; a failure of the environment is status "environment"; a programming error raises."""
    from autokd.deploy import activation_mb, student_latency
    from autokd.factory import Architecture, DataSplit, TeacherSource, fit, prepare
    from autokd.recipe import KDConfig
    from autokd.space.plan import count_parameters

    t0 = time.perf_counter()
    result: dict[str, Any] = {"status": Status.FAILED, "extra": {}}  # the TrialResult's fields, made at the end
    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    result["extra"]["threads"] = torch.get_num_threads()
    try:
        cfg = ctx.train_config(spec.budget, spec.training_seed)
        if spec.kd_loss is not None:  # the space searches the loss: this configuration's, not the recipe's
            cfg = replace(cfg, kd_loss=spec.kd_loss, **(spec.kd_params or {}))
        teacher = TeacherSource(str(ctx.teacher_path), ctx.teacher_weights, cached=ctx.logit_cache) \
            if ctx.teacher_path is not None else None
        student = prepare(Architecture(spec.seed, generator=spec.theta, merge_width=ctx.merge_width,
                                       param_limit=ctx.param_limit),
                          ctx.dataset, DataSplit("validation", ctx.split_seed, ctx.val_fraction, ctx.subset,
                                                 ctx.val_images),
                          cfg, teacher=teacher, kd=KDConfig(spec.temperature, spec.alpha), device=ctx.device,
                          data_dir=ctx.data_dir, init_seed=spec.training_seed)
        result["arch_id"] = student.arch_id
        if ctx.state_dir and cfg.lr_schedule == "wsd" and (spec.continue_from is not None or spec.keep_trunk):
            student.cfg = replace(cfg, trunk=_trunk(spec, ctx, student.arch_id, len(student.train)))
        model, shape = student.model, student.ds.input_shape
        result["activation_mb"] = round(activation_mb(model, shape), 4)
        if ctx.latency_limit is not None or ctx.objective == "accuracy+latency":
            lat = LATENCIES.get((student.arch_id, torch.get_num_threads()),
                                lambda: student_latency(model, shape, torch.get_num_threads()))
            result["latency_ms"], result["extra"]["latency"] = lat["batch1_ms"], lat
        macs = int(student.macs or 0)
        over = over_limits(macs, result["activation_mb"], ctx, result.get("latency_ms"))
        if over:  # rejected before training: the configuration's failure, in one line
            result.update(error=over, params=count_parameters(student.spec), macs=macs)
            return TrialResult(spec.trial_id, tuple(spec.config_id), spec.budget,
                               seconds=time.perf_counter() - t0, **result)
        r = fit(student, progress=progress)
        result.update(status=r.status, val_acc=r.eval_acc, params=r.params, macs=r.macs,
                      peak_memory_mb=r.peak_memory_mb, error=r.error, train_loss=r.train_loss, val_loss=r.eval_loss,
                      steps=r.steps, history=r.history, checkpoints=r.checkpoints)
        if r.speed and (r.speed["probe_ms"] or r.speed["layout"] != "contiguous" or r.speed["compiled"]):
            result["extra"]["speed"] = r.speed  # a run that probed or left the default (autokd.speed)
        if r.continued_from_step is not None:
            result["extra"]["continued_from_step"] = r.continued_from_step
        result["extra"].update(device=r.device, train_images=len(student.train), val_images=len(student.scored))
        if r.status == "ok" and r.eval_acc is not None:
            result["loss"] = 1.0 - r.eval_acc
        elif r.error and _device_lost(r.error):
            result["status"] = Status.ENVIRONMENT
    except Exception as exc:  # an invalid generator (the configuration's), a teacher/dataset problem (not), or
        #                       anything else: a trial's failure must not stop the search ...
        if is_programming_error(exc):
            raise  # ... but a fault of the code does (exit 1 with a log), not told to the optimizer as infinite loss
        result["error"] = f"{type(exc).__name__}: {exc}"
        if _is_environment_error(exc):
            result["status"] = Status.ENVIRONMENT
    return TrialResult(spec.trial_id, tuple(spec.config_id), spec.budget, seconds=time.perf_counter() - t0,
                       **result)
