"""Where trials run: in-process (`local`) or on Ray Core tasks (`ray`), several per GPU with fractional `num_gpus`.

Only plain data crosses processes: TrialSpec / TrialContext as dicts in, TrialResult as a dict out.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from typing import Any, Callable, Protocol

from autokd.errors import UserError
from autokd.search.trial import TrialContext, TrialResult, TrialSpec, run_trial

TrialFn = Callable[[TrialSpec], TrialResult]


class Executor(Protocol):
    capacity: int  # trials that may run at once
    name: str

    def submit(self, spec: TrialSpec) -> None: ...

    def wait(self, timeout: float | None = None) -> list[TrialResult]: ...

    def in_flight(self) -> int: ...

    def shutdown(self) -> None: ...


class LocalExecutor:
    """Runs one trial at a time in this process (the default without CUDA)."""

    name = "local"

    def __init__(self, fn: TrialFn) -> None:
        self.fn = fn
        self.capacity = 1
        self.pending: list[TrialSpec] = []

    def submit(self, spec: TrialSpec) -> None:
        self.pending.append(spec)

    def in_flight(self) -> int:
        return len(self.pending)

    def wait(self, timeout: float | None = None) -> list[TrialResult]:
        return [self.fn(self.pending.pop(0))] if self.pending else []

    def shutdown(self) -> None:
        self.pending.clear()


def _spec_from_json(d: dict[str, Any]) -> TrialSpec:
    return TrialSpec(**{**d, "config_id": tuple(d["config_id"])})


def _result_from_json(d: dict[str, Any]) -> TrialResult:
    return TrialResult(**{**d, "config_id": tuple(d["config_id"])})


def ray_trial(spec: dict[str, Any], ctx: dict[str, Any], threads: int) -> dict[str, Any]:
    """The Ray task body: plain dicts in and out. Records where and when it ran (GPU ids, pid, times)."""
    import ray
    import torch

    torch.set_num_threads(max(1, threads))
    started = time.time()
    result = run_trial(_spec_from_json(spec), TrialContext(**ctx))
    out = result.to_json()
    out["extra"] = {**out.get("extra", {}), "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "pid": os.getpid(),
                    "started": started, "ended": time.time(),
                    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    return out


class RayExecutor:
    """Ray Core tasks; with GPUs, ⌊GPUs / gpus_per_trial⌋ trials at once, each capped to its share of GPU memory.

    `address` joins an existing cluster (`ray start --head` / `--address`); without it a local Ray starts. The
    `num_cpus` / `num_gpus` arguments declare a local cluster's resources (tests use logical GPUs on a CPU machine).
    """

    name = "ray"

    def __init__(self, ctx: TrialContext, gpus_per_trial: float = 1.0, address: str | None = None,
                 num_cpus: int | None = None, num_gpus: float | None = None, cpus_per_trial: int = 1) -> None:
        try:
            import ray
        except ImportError:  # pragma: no cover - ray is a dependency
            raise UserError("the ray executor needs the ray package: pip install ray") from None
        self.ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus)
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise UserError(f"cannot join the Ray cluster at {address}: {exc}") from None
        res = ray.cluster_resources()
        gpus, cpus = float(res.get("GPU", 0.0)), int(res.get("CPU", 1))
        if gpus > 0:
            self.capacity = max(1, int(math.floor(gpus / gpus_per_trial + 1e-9)))
            per_trial_gpu: float | None = gpus_per_trial
            ctx = TrialContext(**{**asdict(ctx), "memory_fraction": min(1.0, gpus_per_trial)})
        else:
            self.capacity = max(1, cpus // cpus_per_trial)
            per_trial_gpu = None
        self.ctx = asdict(ctx)
        self.cpus_per_trial = cpus_per_trial
        opts: dict[str, Any] = {"num_cpus": cpus_per_trial, "max_retries": 0}
        if per_trial_gpu:
            opts["num_gpus"] = per_trial_gpu
        self.task = ray.remote(ray_trial).options(**opts)
        self.pending: dict[Any, TrialSpec] = {}

    def submit(self, spec: TrialSpec) -> None:
        ref = self.task.remote(spec.to_json(), self.ctx, self.cpus_per_trial)
        self.pending[ref] = spec

    def in_flight(self) -> int:
        return len(self.pending)

    def wait(self, timeout: float | None = None) -> list[TrialResult]:
        if not self.pending:
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            spec = self.pending.pop(ref)
            try:
                out.append(_result_from_json(self.ray.get(ref)))
            except Exception as exc:  # the worker died (OOM-killed, segfault): the trial failed
                out.append(TrialResult(spec.trial_id, spec.config_id, spec.budget, "failed",
                                       error=f"worker lost: {type(exc).__name__}: {str(exc).splitlines()[0]}"))
        return out

    def shutdown(self) -> None:
        for ref in list(self.pending):
            self.ray.cancel(ref, force=True)
        self.pending.clear()
