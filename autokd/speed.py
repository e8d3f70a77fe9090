"""How a training step runs fastest on this machine without changing what it computes: the memory layout
(contiguous or channels_last) and whether the step is compiled (torch.compile, inductor). Chosen per architecture by a
measured probe on the machine at hand, never assumed from the CPU's vendor (the same lever paid 1.65× on one CPU and
0.7× on another: docs/benchmarks.md, "Today's students at the CPU's limit").

Every candidate computes the same function in fp32 (the fused CPU arithmetic of autokd.nn.fused, the reference
modules in either layout, the compiled reference): results differ only by floating-point reassociation, which is
why the choice is not part of a result's identity. Lower precision (bf16) changes the arithmetic and is not a
candidate here.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autokd.accel import autocast
from autokd.recipe import SPEEDS  # declared with the setting

# auto: probe the layouts once a run has at least this many steps (the probe costs about 8 steps; a layout 1.3×
# faster repays it after about 35): the search's 1.8- and 5.4-epoch rungs of 10,000 images (140, 421 steps) ...
PROBE_MIN_STEPS = 100
# ... and also try compiling once it has this many: compiling took 15–45 s on a 2-core machine for the cpu space's
# students, which a 7-epoch retrain (≈ 3,300 steps of 0.2–0.35 s) repays many times and a search trial does not
COMPILE_MIN_STEPS = 1500
_PROBE_STEPS = 3  # timed steps per candidate, after one warmup step (the median is kept)


@dataclass
class StepPlan:
    """What a run's training steps use, and what the probe measured (ms per step, forward + backward)."""

    layout: str = "contiguous"  # or "channels_last"
    compiled: bool = False
    requested: str = "eager"
    probe_ms: dict[str, float] = field(default_factory=dict)
    probe_seconds: float = 0.0  # wall time of the probe, compiling included
    note: str | None = None  # why a candidate was dropped (a compile that failed on this machine)

    @property
    def channels_last(self) -> bool:
        return self.layout == "channels_last"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _set_reference(model: nn.Module) -> None:
    """The reference modules (the NAGO student's fused CPU path is opaque to layouts and to the compiler)."""
    if hasattr(model, "arithmetic"):
        model.arithmetic = "reference"


def _time_steps(run: Any, x: torch.Tensor, y: torch.Tensor, params: list[nn.Parameter]) -> float:
    """Median ms of forward + cross entropy + backward over _PROBE_STEPS, after one warmup step."""
    times = []
    for i in range(_PROBE_STEPS + 1):
        t0 = time.perf_counter()
        out = run(x)
        out = out[0] if isinstance(out, tuple) else out
        F.cross_entropy(out.float(), y).backward()
        for p in params:
            p.grad = None
        if i:
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def plan_step(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, num_classes: int,
              device: torch.device, total_steps: int, requested: str = "auto",
              compile_ok: bool = True, precision: str = "auto") -> tuple[Any, StepPlan]:
    """(the callable a training step runs, the plan). `model` is changed in place (its layout, its arithmetic) but
    not in value: its weights, buffers and torch's RNG are as before. `compile_ok=False` where a step needs the
    model's hooks (feature-map distillation). The probe times steps in the training's `precision`."""
    if requested not in SPEEDS:
        raise ValueError(f"speed must be one of {SPEEDS}, got {requested!r}")
    if device.type == "cuda":  # one layout on a GPU (tensor cores want NHWC); the step runs under bf16 autocast
        _set_reference(model)
        model.to(memory_format=torch.channels_last)
        return model, StepPlan(layout="channels_last", requested=requested)
    plan = StepPlan(requested=requested)
    if requested == "eager" or (requested == "auto" and total_steps < PROBE_MIN_STEPS):
        return model, plan
    if requested == "channels_last":
        _set_reference(model)
        model.to(memory_format=torch.channels_last)
        plan.layout = "channels_last"
        return model, plan
    t0 = time.perf_counter()
    snapshot = copy.deepcopy(model.state_dict())  # the probe's forward passes move BatchNorm's running statistics
    rng = torch.get_rng_state()
    was_training = model.training
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *input_shape, generator=gen)
    y = torch.randint(0, num_classes, (batch_size,), generator=gen)
    run: Any = model
    try:
        with autocast(device, precision):
            run = _probe(model, x, y, params, plan, requested, compile_ok, total_steps)
    finally:
        model.load_state_dict(snapshot)
        torch.set_rng_state(rng)
        model.train(was_training)
        for p in params:
            p.grad = None
    plan.probe_seconds = round(time.perf_counter() - t0, 2)
    return run, plan


def _probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: list[nn.Parameter], plan: StepPlan,
           requested: str, compile_ok: bool, total_steps: int) -> Any:
    """Time the layouts (and the compiler) on `model`, leave it in the fastest layout and return what a step runs."""
    run: Any = model
    if requested == "auto":
        plan.probe_ms["eager"] = _time_steps(model, x, y, params)
        _set_reference(model)
        model.to(memory_format=torch.channels_last)
        plan.probe_ms["channels_last"] = _time_steps(model, x.contiguous(memory_format=torch.channels_last), y,
                                                      params)
        if plan.probe_ms["channels_last"] < plan.probe_ms["eager"]:
            plan.layout = "channels_last"
        else:
            model.to(memory_format=torch.contiguous_format)
            if hasattr(model, "arithmetic"):
                model.arithmetic = "auto"
    if compile_ok and (requested == "compile" or total_steps >= COMPILE_MIN_STEPS):
        compiled = _try_compile(model, x, y, params, plan)
        if compiled is not None:
            run, plan.compiled = compiled, True
    return run


def _try_compile(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: list[nn.Parameter],
                 plan: StepPlan) -> Any:
    """Compile the reference modules in the layout chosen so far: the compiled module if its steps are faster
    (or compiling was asked for), else None (the model as it was)."""
    layout_ms = min(plan.probe_ms.values()) if plan.probe_ms else None
    arithmetic = getattr(model, "arithmetic", None)
    _set_reference(model)
    xl = x.contiguous(memory_format=torch.channels_last) if plan.channels_last else x
    try:
        import torch._inductor.config as inductor_config

        # dropout's masks from torch's own generator, as the eager step draws them (inductor's are other numbers)
        inductor_config.fallback_random = True
        compiled = torch.compile(model, dynamic=False)
        plan.probe_ms["compile"] = _time_steps(compiled, xl, y, params)
    except Exception as exc:  # no C++ compiler, an operator inductor cannot lower: the eager step it is
        plan.note = f"compile failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        if arithmetic is not None:
            model.arithmetic = arithmetic
        return None
    if layout_ms is None or plan.probe_ms["compile"] < 0.95 * layout_ms:
        return compiled
    if arithmetic is not None:
        model.arithmetic = arithmetic
    return None


def probe_only(model: nn.Module, input_shape: tuple[int, ...], batch_size: int, num_classes: int) -> StepPlan:
    """The auto plan for a copy of `model` at retrain scale (benchmarks: what would a long run choose?)."""
    _, plan = plan_step(copy.deepcopy(model), input_shape, batch_size, num_classes, torch.device("cpu"),
                        COMPILE_MIN_STEPS, "auto")
    return plan
