"""train_and_evaluate: train a network for a budget in epochs and score it; failures are results, not crashes."""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from autokd.data.augment import cutout
from autokd.data.loader import Batch, DeviceLoader
from autokd.data.readers import ImageSet
from autokd.kd.loss import feature_kd_loss, kd_loss, loss_params, needs_features
from autokd.nn.features import feature_maps
from autokd.recipe import RECIPE_KEYS, SCHEDULES, KDConfig, Recipe
from autokd.errors import is_programming_error
from autokd.optim import make_optimizer
from autokd.speed import plan_step
from autokd.accel import autocast, peak_memory_mb, pick_device, release_memory, reset_peak_memory

__all__ = ["TrainConfig", "Trunk", "KDConfig", "EvalResult", "Checkpointing", "train_and_evaluate",
           "evaluate_accuracy", "pick_device", "parameter_groups", "lr_factor", "trunk_steps", "count_macs_of"]

TeacherFn = Callable[[Batch], torch.Tensor]  # a batch → teacher logits (B, K) for exactly the student's views
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Recipe):
    """One training run: a recipe (autokd.recipe, where every recipe setting is declared) at a budget."""

    epochs: float  # the budget; fractional budgets train that fraction of an epoch's steps
    seed: int = 0
    progress_seconds: float = 10.0  # at most one progress report per this many seconds (and one per epoch)
    eval_at: tuple[float, ...] = ()  # also score on the validation set after these epochs (lower budgets of a run
    #                                   whose schedule makes them prefixes: lr_schedule="step")
    trunk: Trunk | None = None  # wsd: continue a lower budget's trunk, and/or keep this one's for a higher budget

    @classmethod
    def of(cls, recipe: Recipe, epochs: float, **run: Any) -> "TrainConfig":
        """The recipe at a budget (`run`: seed, eval_at, trunk, progress_seconds)."""
        return cls(**{k: getattr(recipe, k) for k in RECIPE_KEYS}, epochs=epochs, **run)


@dataclass(frozen=True)
class Trunk:
    """Warmup-stable-decay runs share their constant-lr trunk: a run of budget b trains steps [0, (1 − f)·b) at the
    full rate, then decays over the last f·b. The trunk's end state (weights, momentum, schedule position, data
    order, RNG) saved by a lower budget is where a higher budget of the same configuration starts, so a continued
    run trains exactly the steps a from-scratch run of that budget would (docs/training.md)."""

    load: Path | None  # a lower budget's trunk state to start from (ignored when missing or under another key)
    save: Path | None  # where this run's trunk end state goes (for the next rung); None at the top rung
    key: str  # what is trained (architecture, recipe, data, seed): a state under another key is not used


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning-rate multiplier at `step`. Cosine is annealed to each budget, so a 30-epoch run is not a prefix
    of a 120-epoch run; the step schedule depends only on the epoch, so a low budget is a prefix of a high one."""
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    if cfg.lr_schedule == "step":
        return cfg.lr_step_gamma ** math.floor(step / steps_per_epoch / cfg.lr_step_epochs + 1e-9)
    if cfg.lr_schedule == "wsd":  # constant, then linear to 0 over the last lr_decay_fraction of this budget
        trunk_end = trunk_steps(cfg, total_steps)
        return 1.0 if step < trunk_end else max(0.0, (total_steps - step) / max(1, total_steps - trunk_end))
    raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {cfg.lr_schedule!r}")


def trunk_steps(cfg: TrainConfig, total_steps: int) -> int:
    """wsd: the steps of a budget's constant-rate trunk; at least one step decays (a tiny budget's rounding)."""
    return max(0, min(int(round((1.0 - cfg.lr_decay_fraction) * total_steps)), total_steps - 1))


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """SGD parameter groups: weight decay on every parameter, or on weights only (≥ 2-d tensors)."""
    if cfg.weight_decay_scope == "all":
        return [{"params": list(model.parameters()), "weight_decay": cfg.weight_decay}]
    if cfg.weight_decay_scope != "weights":
        raise ValueError(f"weight_decay_scope must be all or weights, got {cfg.weight_decay_scope!r}")
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # BN scales/shifts, biases and merge gates are 1-d
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class EvalResult:
    status: str  # "ok" or "failed"
    eval_acc: float | None = None  # top-1 on the evaluation set given (validation in a search; test in retrain and
    #                                teacher training), in [0, 1]
    eval_loss: float | None = None  # cross entropy on that set
    train_loss: float | None = None  # mean training loss of the last epoch
    params: int = 0
    macs: int | None = None  # per image
    seconds: float = 0.0
    peak_memory_mb: float | None = None  # CUDA: peak allocated; CPU: the process's peak RSS
    epochs: float = 0.0
    steps: int = 0
    device: str = "cpu"
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int | None = None  # continued from a saved training state
    continued_from_step: int | None = None  # wsd: started from a lower budget's trunk, saved at this step
    prior_seconds: float = 0.0  # training seconds spent by earlier processes before that state was saved
    checkpoints: list[dict[str, float]] = field(default_factory=list)  # validation scores at cfg.eval_at
    speed: dict[str, Any] | None = None  # how the steps ran (autokd.speed.StepPlan): layout, compiled, probe

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def count_macs_of(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> int:
    """MACs per image of any module, from torch's FLOP counter (2 FLOPs per multiply-accumulate)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    return int(fc.get_total_flops() // 2)


def _logits(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@torch.inference_mode()
def evaluate_accuracy(model: nn.Module, loader: DeviceLoader, precision: str = "auto") -> tuple[float, float]:
    """(top-1 accuracy, mean cross entropy) over every image of the loader, in the training's precision."""
    model.eval()
    correct = torch.zeros((), device=loader.device)
    loss = torch.zeros((), device=loader.device)
    for batch in loader.epoch(0):
        with autocast(loader.device, precision):
            logits = _logits(model(batch.x)).float()
        correct += (logits.argmax(1) == batch.y).sum()
        loss += F.cross_entropy(logits, batch.y, reduction="sum")
    n = loader.num_images
    return float(correct) / n, float(loss) / n


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often a long training run saves its state (at epoch ends), so a kill loses at most
    `every_seconds` of work. `key` names what is being trained (architecture, recipe, data): a state saved under
    another key is ignored."""

    path: Path
    key: str
    every_seconds: float = 120.0


def _save_state(path: Path, key: str, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, epoch: int,
                step: int, gen: torch.Generator, history: list[dict[str, float]]) -> None:
    from autokd.fsutil import write_atomic

    buf = io.BytesIO()
    torch.save({"key": key, "epoch": epoch, "step": step, "model": model.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "gen": gen.get_state(), "rng": torch.get_rng_state(),
                "history": history}, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())


def _load_state(path: Path | None, key: str) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file: start over rather than trust it
        return None
    return state if isinstance(state, dict) and state.get("key") == key else None


def train_and_evaluate(model: nn.Module, train: ImageSet, val: ImageSet, mean: tuple[float, ...],
                       std: tuple[float, ...], cfg: TrainConfig, device: torch.device | str | None = None,
                       teacher: TeacherFn | None = None, kd: KDConfig | None = None, macs: int | None = None,
                       progress: Progress | None = None, checkpointing: Checkpointing | None = None) -> EvalResult:
    """Train `model` for `cfg.epochs` with the recipe's optimizer (SGD by default) and schedule, then score it
    on `val`. With a teacher and kd, the loss is the KD loss; otherwise cross entropy. On CUDA: bf16 autocast and
    channels_last; on CPU: fp32 (autokd.accel). NaN/inf loss, out-of-memory and any exception return status "failed" with the
    reason (KeyboardInterrupt still propagates)."""
    dev = pick_device(str(device) if device is not None else None)
    t0 = time.perf_counter()
    params = sum(p.numel() for p in model.parameters())
    result = EvalResult(status="failed", params=params, macs=macs, epochs=float(cfg.epochs), device=str(dev))
    try:
        _train(model, train, val, mean, std, cfg, dev, teacher, kd, result, progress, checkpointing)
        result.status = "ok"
    except torch.cuda.OutOfMemoryError as exc:
        result.error = f"out of memory: {str(exc).splitlines()[0]}"
    except FloatingPointError as exc:
        result.error = str(exc)
    except Exception as exc:  # a trial's failure is data for the search, never a crash of the caller ...
        if is_programming_error(exc):
            raise  # ... unless the code is at fault (TypeError, AttributeError, ...): that stops the run
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.seconds = time.perf_counter() - t0
        result.peak_memory_mb = round(peak_memory_mb(dev), 1)
        release_memory(dev)
    return result


def _train(model: nn.Module, train: ImageSet, val: ImageSet, mean: tuple[float, ...], std: tuple[float, ...],
           cfg: TrainConfig, dev: torch.device, teacher: TeacherFn | None, kd: KDConfig | None,
           result: EvalResult, progress: Progress | None, checkpointing: Checkpointing | None = None) -> None:
    """The loop, in the order a reader follows it: set up (device, loaders, step plan, optimizer and schedule),
    find where to start (`_starting_state`, `_restore`), train each step (`_step_loss`), record each epoch (history,
    checkpoint, progress), score."""
    reset_peak_memory(dev)
    model.to(dev)
    if result.macs is None:
        result.macs = count_macs_of(model, tuple(train.images.shape[1:]), dev)
    train_loader = DeviceLoader(train, cfg.batch_size, dev, mean, std, cfg.augment, shuffle=True, seed=cfg.seed,
                                drop_last=len(train) > cfg.batch_size)
    steps_per_epoch = len(train_loader)
    total_steps = max(1, round(cfg.epochs * steps_per_epoch))
    distil = _Distillation.of(cfg, teacher, kd)
    # the fastest way this machine runs the step, same arithmetic (autokd.speed); feature KD needs the module's hooks
    step_model, plan = plan_step(model, tuple(train.images.shape[1:]), min(cfg.batch_size, len(train)),
                                 int(train.labels.max()) + 1, dev, total_steps, cfg.speed,
                                 compile_ok=not (distil and distil.features), precision=cfg.precision)
    result.speed = plan.to_json()
    train_loader.channels_last = plan.channels_last
    val_loader = DeviceLoader(val, cfg.eval_batch_size, dev, mean, std, channels_last=plan.channels_last)
    opt = make_optimizer(cfg.opt, parameter_groups(model, cfg), cfg)  # autokd/optim.py: sgd, adamw
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, total_steps, steps_per_epoch))
    gen = torch.Generator().manual_seed(cfg.seed + 7919)  # cutout positions
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    trunk = cfg.trunk if cfg.lr_schedule == "wsd" else None
    trunk_end = trunk_steps(cfg, total_steps) if trunk is not None else None
    saved, continued = _starting_state(checkpointing, trunk, trunk_end)
    step, first_epoch, skip = _restore(saved, continued, model, opt, sched, gen, result, steps_per_epoch)
    eval_steps = {max(1, round(e * steps_per_epoch)) for e in cfg.eval_at}
    reporter = _Reporter(progress, cfg, total_steps, steps_per_epoch, step, dev)
    last_save = time.perf_counter()

    for epoch in range(first_epoch, n_epochs):
        model.train()
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = cfg.drop_path * epoch / max(1, n_epochs)
        loss_sum = torch.zeros((), device=dev)
        seen = 0
        for batch in train_loader.epoch(epoch, skip=skip if epoch == first_epoch else 0):
            if step >= total_steps:
                break
            if trunk is not None and trunk.save is not None and step == trunk_end:  # the next rung starts here
                _save_state(trunk.save, trunk.key, model, opt, sched, epoch, step, gen, result.history)
            loss = _step_loss(step_model, model, batch, cfg, distil, gen, dev)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            loss_sum += loss.detach()
            seen += 1
            step += 1
            reporter.add(loss.detach())
            if step in eval_steps and step < total_steps:  # a lower budget's score on the way (eval_at)
                acc, val_loss = evaluate_accuracy(model, val_loader, cfg.precision)
                result.checkpoints.append({"epoch": step / steps_per_epoch, "val_acc": acc, "val_loss": val_loss,
                                           "steps": step, "seconds": reporter.elapsed()})
                model.train()
            reporter.maybe(step)
        mean_loss = float(loss_sum) / max(1, seen)  # one host sync per epoch
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"training loss became {mean_loss} in epoch {epoch + 1}")
        result.train_loss, result.steps = mean_loss, step
        result.history.append({"epoch": round(step / steps_per_epoch, 4), "train_loss": mean_loss,
                               "lr": opt.param_groups[0]["lr"],
                               "seconds": round(result.prior_seconds + reporter.elapsed(), 3)})  # across resumes
        if checkpointing is not None and epoch + 1 < n_epochs and \
                time.perf_counter() - last_save >= checkpointing.every_seconds:
            _save_state(checkpointing.path, checkpointing.key, model, opt, sched, epoch + 1, step, gen,
                        result.history)
            last_save = time.perf_counter()
        reporter.epoch_end(step)
    reporter.scoring(step, result.train_loss)
    result.eval_acc, result.eval_loss = evaluate_accuracy(model, val_loader, cfg.precision)
    if not math.isfinite(result.eval_loss):
        raise FloatingPointError(f"validation loss is {result.eval_loss}")


@dataclass(frozen=True)
class _Distillation:
    """What a step distils from: the teacher, KD's temperature and weight, the named loss and its parameters, and
    whether that loss matches feature maps (attention transfer) rather than logits."""

    teacher: TeacherFn
    kd: KDConfig
    loss: str
    params: dict[str, float]
    features: bool

    @classmethod
    def of(cls, cfg: TrainConfig, teacher: TeacherFn | None, kd: KDConfig | None) -> "_Distillation | None":
        if teacher is None or kd is None or kd.alpha <= 0:
            return None
        features = needs_features(cfg.kd_loss)
        if features and not callable(getattr(teacher, "feature_maps", None)):
            raise ValueError(f"KD loss {cfg.kd_loss!r} needs the teacher's feature maps; the teacher-logit cache has "
                             "none")
        return cls(teacher, kd, cfg.kd_loss, {k: getattr(cfg, k) for k in loss_params(cfg.kd_loss)}, features)


def _step_loss(step_model: nn.Module, model: nn.Module, batch: Batch, cfg: TrainConfig,
               distil: _Distillation | None, gen: torch.Generator, dev: torch.device) -> torch.Tensor:
    """One step's loss: cross entropy on the hard labels (smoothed by the recipe); with a teacher, (1 − α)·that +
    α·the KD term, the teacher seeing the view without cutout; plus an auxiliary head's cross entropy."""
    t_logits = distil.teacher(batch) if distil and not distil.features else None
    t_maps = distil.teacher.feature_maps(batch) if distil and distil.features else None  # type: ignore[attr-defined]
    x = cutout(batch.x, cfg.augment.cutout, gen) if cfg.augment.cutout > 0 else batch.x
    with autocast(dev, cfg.precision):
        out, s_maps = feature_maps(model, x) if distil and distil.features else (step_model(x), None)
    logits = _logits(out)
    hard = F.cross_entropy(logits.float(), batch.y, label_smoothing=cfg.label_smoothing)
    if distil is None:
        loss = hard
    elif distil.features:
        loss = feature_kd_loss(s_maps, t_maps, hard, distil.kd.alpha, name=distil.loss, **distil.params)
    else:
        loss = kd_loss(logits, batch.y, t_logits, distil.kd.temperature, distil.kd.alpha, hard=hard, name=distil.loss,
                       **distil.params)
    if isinstance(out, tuple) and cfg.aux_weight > 0 and out[1] is not None:
        loss = loss + cfg.aux_weight * F.cross_entropy(out[1].float(), batch.y)
    return loss


def _starting_state(checkpointing: Checkpointing | None, trunk: Trunk | None,
                    trunk_end: int | None) -> tuple[dict[str, Any] | None, bool]:
    """(state, continued): a killed run's own last save first; else (wsd) a lower rung's trunk (continued=True),
    unless that trunk is longer than this budget's (not a lower rung's: train from the start)."""
    saved = _load_state(checkpointing.path, checkpointing.key) if checkpointing is not None else None
    if saved is not None or trunk is None:
        return saved, False
    saved = _load_state(trunk.load, trunk.key)
    if saved is not None and int(saved["step"]) > int(trunk_end or 0):
        saved = None
    return saved, saved is not None


def _restore(saved: dict[str, Any] | None, continued: bool, model: nn.Module, opt: torch.optim.Optimizer,
             sched: Any, gen: torch.Generator, result: EvalResult, steps_per_epoch: int) -> tuple[int, int, int]:
    """Load a saved state into the run (weights, momentum, schedule, cutout and global RNG: dropout masks continue
    as if never interrupted) and say where it was: (step, first epoch, batches of that epoch already trained — a
    trunk may end inside an epoch)."""
    if saved is None:
        return 0, 0, 0
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    gen.set_state(saved["gen"])
    torch.set_rng_state(saved["rng"])
    step, result.history = int(saved["step"]), list(saved["history"])
    first_epoch, skip = divmod(step, steps_per_epoch)
    if continued:
        result.continued_from_step = step
    else:
        result.resumed_from_epoch = first_epoch
    result.prior_seconds = float(result.history[-1]["seconds"]) if result.history else 0.0
    return step, first_epoch, skip


class _Reporter:
    """Progress of a run: at most one report per `cfg.progress_seconds` and one per epoch, each with the mean
    training loss since the last (one host sync per report) and an ETA from the steps this process ran (not the
    resumed ones)."""

    def __init__(self, progress: Progress | None, cfg: TrainConfig, total_steps: int, steps_per_epoch: int,
                 start_step: int, dev: torch.device) -> None:
        self.progress, self.cfg, self.total, self.per_epoch = progress, cfg, total_steps, steps_per_epoch
        self.start_step, self.dev = start_step, dev
        self.t_start = self.last = time.perf_counter()
        self.loss, self.steps = torch.zeros((), device=dev), 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    def add(self, loss: torch.Tensor) -> None:
        self.loss += loss
        self.steps += 1

    def _epoch(self, step: int) -> float:
        # a budget below one step still trains one step; never show more epochs than the budget
        return min(step / self.per_epoch, float(self.cfg.epochs))

    def _send(self, phase: str, step: int, loss: float | None, elapsed: float, eta: float | None) -> None:
        assert self.progress is not None
        self.progress({"phase": phase, "step": step, "steps": self.total, "epoch": self._epoch(step),
                       "epochs": float(self.cfg.epochs), "train_loss": loss, "seconds": elapsed,
                       "eta_seconds": eta})

    def report(self, step: int) -> None:
        loss = float(self.loss) / self.steps if self.steps else None  # the host sync, before the clock is read
        self.loss, self.steps, self.last = torch.zeros((), device=self.dev), 0, time.perf_counter()
        if self.progress is not None:
            ran, elapsed = step - self.start_step, self.elapsed()  # one reading: the ETA's rate and its seconds
            self._send("train", step, loss, elapsed, elapsed / ran * (self.total - step) if ran > 0 else None)

    def maybe(self, step: int) -> None:
        if self.progress is not None and time.perf_counter() - self.last >= self.cfg.progress_seconds:
            self.report(step)

    def epoch_end(self, step: int) -> None:
        if self.progress is not None and self.steps:
            self.report(step)

    def scoring(self, step: int, train_loss: float | None) -> None:
        if self.progress is not None:
            self._send("eval", step, train_loss, self.elapsed(), None)
