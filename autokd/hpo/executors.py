"""Where trials run.

- `LocalExecutor`: one trial at a time in this process (the simple path: one worker).
- `ProcessExecutor`: `workers` trials at once in worker processes on this machine, each with its torch thread count
  set; a worker loads the dataset and the teacher once and keeps them for every trial it runs. On a CPU, several
  single-thread trials beat one trial with every thread (docs/benchmarks.md).
- `RayExecutor`: Ray Core tasks on any Ray cluster; with GPUs, ⌊GPUs / gpus_per_trial⌋ trials at once.

Only plain data crosses processes: TrialSpec / TrialContext as dicts in, TrialResult as a dict out, progress
events as dicts.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import socket
import time
from dataclasses import replace
from typing import Any, Callable, Protocol

from autokd.progress import Board
from autokd.hpo.trial import TrialContext, TrialResult, TrialSpec, run_trial

TrialFn = Callable[[TrialSpec], TrialResult]


class Executor(Protocol):
    capacity: int  # trials that may run at once
    name: str

    def submit(self, spec: TrialSpec) -> None: ...

    def wait(self, timeout: float | None = None) -> list[TrialResult]: ...

    def in_flight(self) -> int: ...

    def shutdown(self) -> None: ...


def trial_label(spec: TrialSpec) -> str:
    return f"trial {spec.trial_id} cfg {tuple(spec.config_id)} @{spec.budget:g} ep"


class LocalExecutor:
    """Runs one trial at a time in this process (one worker)."""

    name = "local"

    def __init__(self, fn: TrialFn | None = None, ctx: TrialContext | None = None, board: Board | None = None) -> None:
        if fn is None and ctx is None:
            raise ValueError("LocalExecutor needs a trial function or a context")
        self.fn = fn
        self.ctx = ctx
        self.board = board
        self.capacity = 1
        self.threads = ctx.threads if ctx is not None else None
        self.pending: list[TrialSpec] = []

    def submit(self, spec: TrialSpec) -> None:
        self.pending.append(spec)

    def in_flight(self) -> int:
        return len(self.pending)

    def wait(self, timeout: float | None = None) -> list[TrialResult]:
        if not self.pending:
            return []
        spec = self.pending.pop(0)
        if self.fn is not None:
            return [self.fn(spec)]
        assert self.ctx is not None
        task = f"trial {spec.trial_id}"
        report = self.board.reporter(task, trial_label(spec)) if self.board else None
        try:
            result = run_trial(spec, self.ctx, progress=report)
        finally:
            if self.board:
                self.board.done(task)
        return [result.with_extra(pid=os.getpid(), worker=0, host=socket.gethostname())]

    def shutdown(self) -> None:
        self.pending.clear()


# ---------------------------------------------------------------------------------------------------- processes
def configure_process(threads: int | None) -> None:
    """Per-process settings of a trial worker: its torch thread count (set before any parallel work)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already set: only possible before the first parallel work


def _worker_main(index: int, inbox: Any, outbox: Any, progress: Any, ctx: dict[str, Any],
                 threads: int | None, share: Any = None) -> None:
    """A trial worker: runs the trials it is given, one at a time, until it receives None. `share` (a shared int,
    0 = leave alone) is the thread count the executor currently gives this worker: more while other workers sit
    idle (the last trial of a rung), applied at the trial's start and at each progress report (≤ 10 s apart)."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop (and terminates us)
    configure_process(threads)
    context = TrialContext.from_json({**ctx, "threads": None})  # this worker sets the thread count (follow_share)

    def follow_share() -> None:
        wanted = share.value if share is not None else 0
        if wanted and wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)

    while True:
        msg = inbox.get()
        if msg is None:
            return
        spec = TrialSpec(**{**msg, "config_id": tuple(msg["config_id"])})
        task, label = f"trial {spec.trial_id}", trial_label(spec)

        def report(event: dict[str, Any], task: str = task, label: str = label) -> None:
            follow_share()
            progress.put({**event, "task": task, "label": label})

        follow_share()
        started = time.time()
        result = run_trial(spec, context, progress=report).with_extra(
            pid=os.getpid(), worker=index, host=socket.gethostname(), started=started, ended=time.time(),
            threads=torch.get_num_threads())  # the count it finished with
        outbox.put(result.to_json())


class ProcessExecutor:
    """`workers` trial processes on this machine; a dead worker is a failed trial and is replaced. With a thread
    count per worker, the cores of idle workers are lent to the running trials (a rung's last trial runs alone on
    all of them) and taken back when new trials arrive."""

    name = "local"

    def __init__(self, ctx: TrialContext, workers: int, board: Board | None = None) -> None:
        self.ctx = ctx.to_json()
        self.threads = ctx.threads
        self.board = board
        self.capacity = int(workers)
        self.mp = mp.get_context("spawn")  # fork would copy torch's thread pools and locks
        self.outbox = self.mp.Queue()
        self.progress = self.mp.Queue()
        self.workers: list[Any] = []
        self.inboxes: list[Any] = []
        self.running: dict[int, TrialSpec] = {}  # worker index → its trial
        self.cores = self.capacity * int(self.threads or 0)  # 0: thread counts left to torch (no lending)
        self.shares = [self.mp.Value("i", int(self.threads or 0), lock=False) for _ in range(self.capacity)]
        for i in range(self.capacity):
            self._start(i)

    def _start(self, i: int) -> None:
        inbox = self.mp.Queue()
        proc = self.mp.Process(target=_worker_main, args=(i, inbox, self.outbox, self.progress, self.ctx,
                                                          self.threads, self.shares[i]), daemon=True,
                                name=f"autokd-worker-{i}")
        proc.start()
        if i < len(self.workers):
            self.workers[i], self.inboxes[i] = proc, inbox
        else:
            self.workers.append(proc)
            self.inboxes.append(inbox)

    def submit(self, spec: TrialSpec) -> None:
        idle = [i for i in range(self.capacity) if i not in self.running]
        if not idle:
            raise RuntimeError("no idle worker: submit at most `capacity` trials")
        i = idle[0]
        self.running[i] = spec
        self._share_cores()
        self.inboxes[i].put(spec.to_json())

    def _share_cores(self) -> None:
        """Split this executor's cores over the running trials (the first ones get the remainder)."""
        if not self.cores:
            return
        busy = sorted(self.running)
        for rank, i in enumerate(busy):
            self.shares[i].value = self.cores // len(busy) + (1 if rank < self.cores % len(busy) else 0)
        for i in range(self.capacity):
            if i not in self.running:
                self.shares[i].value = int(self.threads or 0)

    def in_flight(self) -> int:
        return len(self.running)

    def _drain_progress(self) -> None:
        while True:
            try:
                event = self.progress.get_nowait()
            except (queue.Empty, OSError, EOFError):
                return
            if self.board:
                self.board.update(event)

    def wait(self, timeout: float | None = None) -> list[TrialResult]:
        if not self.running:
            return []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._drain_progress()
            try:
                data = self.outbox.get(timeout=0.25)
            except queue.Empty:
                data = None
            if data is not None:
                result = TrialResult.from_json(data)
                worker = next((i for i, s in self.running.items() if s.trial_id == result.trial_id), None)
                if worker is not None:
                    del self.running[worker]
                    self._share_cores()
                if self.board:
                    self.board.done(f"trial {result.trial_id}")
                return [result]
            lost = self._lost_workers()
            if lost:
                return lost
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def _lost_workers(self) -> list[TrialResult]:
        out = []
        for i, proc in enumerate(self.workers):
            if proc.is_alive():
                continue
            spec = self.running.pop(i, None)
            if spec is not None:
                out.append(TrialResult(spec.trial_id, spec.config_id, spec.budget, "failed",
                                       error=f"worker process died (exit code {proc.exitcode}); out of memory?"))
                self._share_cores()
                if self.board:
                    self.board.done(f"trial {spec.trial_id}")
            self._start(i)
        return out

    def shutdown(self) -> None:
        for i, inbox in enumerate(self.inboxes):
            try:
                inbox.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + (2.0 if not self.running else 0.0)
        for proc in self.workers:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        self.running.clear()
        self._drain_progress()


# ---------------------------------------------------------------------------------------------------- ray
def _spec_from_json(d: dict[str, Any]) -> TrialSpec:
    return TrialSpec(**{**d, "config_id": tuple(d["config_id"])})


def ray_trial(spec: dict[str, Any], ctx: dict[str, Any], threads: int) -> dict[str, Any]:
    """The Ray task body: plain dicts in and out. Records where and when it ran (node, GPU ids, pid, times)."""
    import ray

    from autokd.ray_cluster import where_am_i

    configure_process(max(1, threads))
    started = time.time()
    result = run_trial(_spec_from_json(spec), TrialContext.from_json(ctx))
    out = result.to_json()
    out["extra"] = {**out.get("extra", {}), **where_am_i(), "host": socket.gethostname(),
                    "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                    "pid": os.getpid(), "started": started, "ended": time.time(),
                    "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    return out


class RayExecutor:
    """Ray Core tasks; with GPUs, ⌊GPUs / gpus_per_trial⌋ trials at once, each capped to its share of GPU memory; on
    CPUs, threads per trial fitted to the biggest node and ⌊CPUs / threads⌋ trials a node.

    `address` joins an existing cluster (`ray start --head` / `--address`); without it a private local Ray starts.
    The `num_cpus` / `num_gpus` arguments declare a local cluster's resources (tests use logical GPUs on a CPU
    machine). A trial whose node dies comes back with status "lost" (the loop reruns it); after that the capacity
    follows the nodes still alive.
    """

    name = "ray"

    def __init__(self, ctx: TrialContext, gpus_per_trial: float = 1.0, address: str | None = None,
                 num_cpus: int | None = None, num_gpus: float | None = None, cpus_per_trial: int | None = None) -> None:
        import ray

        from autokd.ray_cluster import fit_trials, join

        self.ray = ray
        cluster = join(address, num_cpus=num_cpus, num_gpus=num_gpus)
        self.gpus_per_trial: float | None = None
        if cluster.gpus > 0:
            self.cpus_per_trial = int(cpus_per_trial or ctx.threads or 1)
            self.gpus_per_trial = gpus_per_trial
            ctx = replace(ctx, memory_fraction=min(1.0, gpus_per_trial))
        else:
            self.cpus_per_trial, _ = fit_trials(cluster, int(cpus_per_trial or ctx.threads or 1))
        self.capacity = self._capacity(cluster)
        self.nodes = len(cluster.node_cpus)
        self.dead: frozenset[str] = frozenset()  # node ids lost during this search
        self.ctx = ctx.to_json()
        self.threads = self.cpus_per_trial
        opts: dict[str, Any] = {"num_cpus": self.cpus_per_trial, "max_retries": 0}
        if self.gpus_per_trial:
            opts["num_gpus"] = self.gpus_per_trial
        self.task = ray.remote(ray_trial).options(**opts)
        self.pending: dict[Any, TrialSpec] = {}

    def _capacity(self, cluster: Any) -> int:
        if self.gpus_per_trial:
            return max(1, int(math.floor(cluster.gpus / self.gpus_per_trial + 1e-9)))
        return sum(c // self.cpus_per_trial for c in cluster.node_cpus)

    def submit(self, spec: TrialSpec) -> None:
        ref = self.task.remote(spec.to_json(), self.ctx, self.cpus_per_trial)
        self.pending[ref] = spec

    def in_flight(self) -> int:
        return len(self.pending)

    def wait(self, timeout: float | None = None) -> list[TrialResult]:
        from autokd.ray_cluster import lost_node, lost_node_id, shape

        if not self.pending:
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            spec = self.pending.pop(ref)
            try:
                out.append(TrialResult.from_json(self.ray.get(ref)))
            except Exception as exc:
                first = str(exc).splitlines()[0] if str(exc) else ""
                if lost_node_id(exc):
                    self.dead = self.dead | {lost_node_id(exc)}
                now = shape(self.dead)
                # a crashed worker on a node that is gone too is the node's death seen from the worker's side
                crashed = type(exc).__name__ == "WorkerCrashedError"
                gone = lost_node(exc) or (crashed and len(now.node_cpus) < self.nodes)
                self.capacity, self.nodes = self._capacity(now), len(now.node_cpus)
                if gone:  # the environment's failure: run it again on a node still alive
                    out.append(TrialResult(spec.trial_id, spec.config_id, spec.budget, "lost",
                                           error=f"its Ray node {(lost_node_id(exc) or '?')[:12]} was lost "
                                                 f"({type(exc).__name__})"))
                else:  # the worker died (OOM-killed, segfault) or the task raised: the trial failed
                    out.append(TrialResult(spec.trial_id, spec.config_id, spec.budget, "failed",
                                           error=f"worker lost: {type(exc).__name__}: {first}"))
        return out

    def shutdown(self) -> None:
        for ref in list(self.pending):
            self.ray.cancel(ref, force=True)
        self.pending.clear()
