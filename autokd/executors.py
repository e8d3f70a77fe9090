"""Where work runs: one protocol for the search's trials and retrain's samples.

An executor runs *jobs*: plain data in (a `Job`'s payload), plain data out (an `Outcome`'s value), through one job
function given at construction — `fn(payload, context, progress) -> dict`, a module-level function so that worker
processes and Ray tasks import it by name. `context` is plain data too, sent once (what every job of the run shares:
the dataset's name, the teacher's path, the recipe).

- `LocalExecutor`: one job at a time in this process.
- `ProcessExecutor`: `workers` jobs at once in worker processes on this machine, each with its torch thread count;
  a worker keeps what it loaded (datasets, teachers: autokd.memo) for every job it runs, and the cores of idle
  workers are lent to the running jobs (a rung's last trial runs alone on all of them).
- `RayExecutor`: Ray Core tasks on any Ray cluster; with GPUs, ⌊GPUs / gpus_per_job⌋ jobs at once, each capped to
  its share of GPU memory; progress comes back through a Ray queue.

An outcome says what happened, not what it means: `done` (the function returned), `error` (it raised), `crashed`
(its worker process died: out of memory, a segfault), `lost` (its Ray node died). The search turns error/crashed into
a failed trial and reruns a lost one; retrain reruns a crashed or lost sample, which resumes from its last saved
training state.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from autokd.errors import UserError
from autokd.progress import Board

Progress = Callable[[dict[str, Any]], None]
JobFn = Callable[[dict[str, Any], dict[str, Any], "Progress | None"], dict[str, Any]]

DONE, ERROR, CRASHED, LOST = "done", "error", "crashed", "lost"


@dataclass(frozen=True)
class Job:
    key: str  # unique among the jobs in flight: "trial 7", "resnet sample 2"
    label: str  # what the progress board shows while it runs
    payload: dict[str, Any]  # plain data for the job function


@dataclass(frozen=True)
class Outcome:
    key: str
    status: str  # DONE, ERROR, CRASHED or LOST
    value: dict[str, Any] | None = None  # what the job function returned (DONE only)
    error: str | None = None  # one line (the others)
    where: dict[str, Any] = field(default_factory=dict)  # pid, worker, host, started, ended, threads (+ Ray's node)
    trace: str | None = None  # ERROR: the job's traceback as the worker saw it (for a log, never the terminal)
    bad_input: bool = False  # ERROR: the job raised UserError (the user's input, not the job, is at fault)


class RemoteTraceback(Exception):
    """A worker's traceback as the cause of the driver's exception (what concurrent.futures does): a log written
    from the driver's exception then shows where the job failed."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0] if self.args else "")


class Executor(Protocol):
    name: str
    capacity: int  # jobs that may run at once (on Ray: follows the nodes alive)
    threads: int | None  # torch threads per job (None: torch's default)

    def submit(self, job: Job) -> None: ...

    def wait(self, timeout: float | None = None) -> list[Outcome]: ...

    def in_flight(self) -> int: ...

    def shutdown(self) -> None: ...


def configure_process(threads: int | None) -> None:
    """Per-process settings of a worker: its torch thread count (set before any parallel work)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already set: only possible before the first parallel work


def _one_line(exc: BaseException) -> str:
    """An exception as one line: a UserError's own message (it is written for the user), else `Type: first line`."""
    text = str(exc).strip().splitlines()
    if isinstance(exc, UserError):
        return text[0] if text else "bad input"
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------------- local
class LocalExecutor:
    """One job at a time in this process. `fn` need not be importable (tests pass closures)."""

    name = "local"

    def __init__(self, fn: JobFn, context: dict[str, Any] | None = None, board: Board | None = None,
                 threads: int | None = None) -> None:
        self.fn, self.context, self.board = fn, dict(context or {}), board
        self.capacity, self.threads = 1, threads
        self.pending: list[Job] = []

    def submit(self, job: Job) -> None:
        self.pending.append(job)

    def in_flight(self) -> int:
        return len(self.pending)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        import torch

        if not self.pending:
            return []
        job = self.pending.pop(0)
        if self.threads:
            torch.set_num_threads(self.threads)
        report = self.board.reporter(job.key, job.label) if self.board else None
        started, trace, bad_input = time.time(), None, False
        try:
            value, status, error = self.fn(job.payload, self.context, report), DONE, None
        except Exception as exc:  # noqa: BLE001 - the job's own failure is its outcome
            value, status, error, trace = None, ERROR, _one_line(exc), traceback.format_exc()
            bad_input = isinstance(exc, UserError)
        finally:
            if self.board:
                self.board.done(job.key)
        return [Outcome(job.key, status, value, error, where={
            "pid": os.getpid(), "worker": 0, "host": socket.gethostname(), "started": started, "ended": time.time(),
            "threads": torch.get_num_threads()}, trace=trace, bad_input=bad_input)]

    def shutdown(self) -> None:
        self.pending.clear()


# ---------------------------------------------------------------------------------------------------- processes
def _worker_main(index: int, fn: JobFn, inbox: Any, outbox: Any, progress: Any, context: dict[str, Any],
                 threads: int | None, share: Any = None) -> None:
    """A worker process: runs the jobs it is given, one at a time, until it receives None. `share` (a shared int,
    0 = leave alone) is the thread count the executor currently gives this worker: more while other workers sit
    idle, applied at the job's start and at each progress report (≤ 10 s apart)."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop (and terminates us)
    configure_process(threads)

    def follow_share() -> None:
        wanted = share.value if share is not None else 0
        if wanted and wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)

    while True:
        msg = inbox.get()
        if msg is None:
            return
        key, label, payload = msg

        def report(event: dict[str, Any], key: str = key, label: str = label) -> None:
            follow_share()
            progress.put({**event, "task": key, "label": label})

        follow_share()
        started, trace, bad_input = time.time(), None, False
        try:
            value, status, error = fn(payload, context, report), DONE, None
        except Exception as exc:  # noqa: BLE001 - the job's own failure is its outcome
            value, status, error, trace = None, ERROR, _one_line(exc), traceback.format_exc()
            bad_input = isinstance(exc, UserError)
        outbox.put((key, status, value, error, {"pid": os.getpid(), "worker": index, "host": socket.gethostname(),
                                                "started": started, "ended": time.time(),
                                                "threads": torch.get_num_threads()},  # the count it finished with
                    trace, bad_input))


class ProcessExecutor:
    """`workers` processes on this machine; a worker that dies is its job's CRASHED outcome and is replaced. With a
    thread count per worker, the cores of idle workers are lent to the running jobs and taken back when new jobs
    arrive."""

    name = "process"

    def __init__(self, fn: JobFn, context: dict[str, Any], workers: int, threads: int | None = None,
                 board: Board | None = None) -> None:
        self.fn, self.context, self.threads, self.board = fn, dict(context), threads, board
        self.capacity = int(workers)
        self.mp = mp.get_context("spawn")  # fork would copy torch's thread pools and locks
        self.outbox = self.mp.Queue()
        self.progress = self.mp.Queue()
        self.workers: list[Any] = []
        self.inboxes: list[Any] = []
        self.running: dict[int, Job] = {}  # worker index → its job
        self.cores = self.capacity * int(self.threads or 0)  # 0: thread counts left to torch (no lending)
        self.shares = [self.mp.Value("i", int(self.threads or 0), lock=False) for _ in range(self.capacity)]
        for i in range(self.capacity):
            self._start(i)

    def _start(self, i: int) -> None:
        inbox = self.mp.Queue()
        proc = self.mp.Process(target=_worker_main, args=(i, self.fn, inbox, self.outbox, self.progress, self.context,
                                                          self.threads, self.shares[i]), daemon=True,
                               name=f"autokd-worker-{i}")
        proc.start()
        if i < len(self.workers):
            self.workers[i], self.inboxes[i] = proc, inbox
        else:
            self.workers.append(proc)
            self.inboxes.append(inbox)

    def submit(self, job: Job) -> None:
        idle = [i for i in range(self.capacity) if i not in self.running]
        if not idle:
            raise RuntimeError("no idle worker: submit at most `capacity` jobs")
        i = idle[0]
        self.running[i] = job
        self._share_cores()
        self.inboxes[i].put((job.key, job.label, job.payload))

    def _share_cores(self) -> None:
        """Split this executor's cores over the running jobs (the first ones get the remainder)."""
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

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self.running:
            return []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._drain_progress()
            try:
                key, status, value, error, where, trace, bad_input = self.outbox.get(timeout=0.25)
            except queue.Empty:
                key = None
            if key is not None:
                worker = next((i for i, j in self.running.items() if j.key == key), None)
                if worker is not None:
                    del self.running[worker]
                    self._share_cores()
                if self.board:
                    self.board.done(key)
                return [Outcome(key, status, value, error, where, trace, bad_input)]
            lost = self._dead_workers()
            if lost:
                return lost
            if deadline is not None and time.monotonic() >= deadline:
                return []

    def _dead_workers(self) -> list[Outcome]:
        out = []
        for i, proc in enumerate(self.workers):
            if proc.is_alive():
                continue
            job = self.running.pop(i, None)
            if job is not None:
                out.append(Outcome(job.key, CRASHED, error=f"worker process died (exit code {proc.exitcode}); "
                                                           "out of memory?", where={"worker": i}))
                self._share_cores()
                if self.board:
                    self.board.done(job.key)
            self._start(i)
        return out

    def shutdown(self) -> None:
        for inbox in self.inboxes:
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
def ray_job(fn: JobFn, key: str, label: str, payload: dict[str, Any], context: dict[str, Any], threads: int,
            memory_fraction: float | None, events: Any) -> dict[str, Any]:
    """The Ray task body: runs the job function on the task's threads and GPU share; returns its value and where
    it ran (node, GPU ids, pid, times). Progress events go to the driver's queue actor (best effort)."""
    import ray
    import torch

    from autokd.ray_cluster import where_am_i

    configure_process(max(1, threads))
    if memory_fraction and memory_fraction < 1.0 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(memory_fraction)  # packed jobs share the GPU's memory

    def report(event: dict[str, Any]) -> None:
        try:
            events.put_nowait({**event, "task": key, "label": label})
        except Exception:  # noqa: BLE001 - a full or gone queue costs a progress line, never the job
            pass

    started = time.time()
    value = fn(payload, context, report if events is not None else None)
    return {"value": value, "where": {**where_am_i(), "host": socket.gethostname(), "pid": os.getpid(),
                                      "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "started": started,
                                      "ended": time.time(), "threads": torch.get_num_threads(),
                                      "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}}


class RayExecutor:
    """Ray Core tasks; with GPUs, ⌊GPUs / gpus_per_job⌋ jobs at once, each capped to its share of GPU memory; on
    CPUs, threads per job fitted to the biggest node and ⌊CPUs / threads⌋ jobs a node.

    `address` joins an existing cluster (`ray start --head` / `--address`); without it a private local Ray starts.
    `num_cpus` / `num_gpus` declare a local cluster's resources (tests use logical GPUs on a CPU machine). A job whose
    node dies comes back LOST; after that the capacity follows the nodes still alive.
    """

    name = "ray"

    def __init__(self, fn: JobFn, context: dict[str, Any], threads: int | None = None, gpus_per_job: float = 1.0,
                 address: str | None = None, num_cpus: int | None = None, num_gpus: float | None = None,
                 board: Board | None = None) -> None:
        import ray

        from autokd.ray_cluster import fit_trials, join

        self.ray, self.board = ray, board
        cluster = join(address, num_cpus=num_cpus, num_gpus=num_gpus)
        self.gpus_per_job: float | None = None
        if cluster.gpus > 0:
            self.threads = int(threads or 1)
            self.gpus_per_job = gpus_per_job
        else:
            self.threads, _ = fit_trials(cluster, int(threads or 1))
        self.memory_fraction = min(1.0, self.gpus_per_job) if self.gpus_per_job else None
        self.capacity = self._capacity(cluster)
        self.nodes = len(cluster.node_cpus)
        self.dead: frozenset[str] = frozenset()  # node ids lost during this run
        self.fn, self.context = fn, dict(context)
        opts: dict[str, Any] = {"num_cpus": self.threads, "max_retries": 0}
        if self.gpus_per_job:
            opts["num_gpus"] = self.gpus_per_job
        self.task = ray.remote(ray_job).options(**opts)
        self.events = self._event_queue() if board is not None else None
        self.pending: dict[Any, Job] = {}

    def _event_queue(self) -> Any:
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # a zero-CPU actor: it never takes a core a job could use; on the driver's node, which lives as long as the
        # driver (a worker node that dies takes only its jobs' progress lines); bounded: a stalled driver costs lines
        here = NodeAffinitySchedulingStrategy(self.ray.get_runtime_context().get_node_id(), soft=True)
        return Queue(maxsize=10_000, actor_options={"num_cpus": 0, "scheduling_strategy": here})

    def _capacity(self, cluster: Any) -> int:
        if self.gpus_per_job:
            return max(1, int(math.floor(cluster.gpus / self.gpus_per_job + 1e-9)))
        return sum(c // self.threads for c in cluster.node_cpus)

    def submit(self, job: Job) -> None:
        ref = self.task.remote(self.fn, job.key, job.label, job.payload, self.context, self.threads,
                               self.memory_fraction, self.events)
        self.pending[ref] = job

    def in_flight(self) -> int:
        return len(self.pending)

    def _drain_progress(self) -> None:
        if self.events is None or self.board is None:
            return
        try:
            for event in self.events.get_nowait_batch(self.events.qsize()):
                self.board.update(event)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self.pending:
            return []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._drain_progress()
            step = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=step)
            if ready:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return []
        out = [self._outcome(ref) for ref in ready]
        self._drain_progress()
        if self.board:
            for o in out:
                self.board.done(o.key)
        return out

    def _outcome(self, ref: Any) -> Outcome:
        from autokd.ray_cluster import lost_node, lost_node_id, shape

        job = self.pending.pop(ref)
        try:
            got = self.ray.get(ref)
            return Outcome(job.key, DONE, got["value"], where=got["where"])
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            if lost_node_id(exc):
                self.dead = self.dead | {lost_node_id(exc)}
            now = shape(self.dead)
            # a crashed worker on a node that is gone too is the node's death seen from the worker's side
            crashed = type(exc).__name__ == "WorkerCrashedError"
            gone = lost_node(exc) or (crashed and len(now.node_cpus) < self.nodes)
            self.capacity, self.nodes = self._capacity(now), len(now.node_cpus)
            if gone:  # the environment's failure: the caller may run it again on a node still alive
                return Outcome(job.key, LOST, error=f"its Ray node {(lost_node_id(exc) or '?')[:12]} was lost "
                                                    f"({type(exc).__name__})")
            if crashed or type(exc).__name__ in ("OutOfMemoryError", "TaskUnschedulableError"):
                return Outcome(job.key, CRASHED, error=f"worker lost: {type(exc).__name__}: {first}")
            cause = getattr(exc, "cause", None)  # RayTaskError: the job function raised
            error = _one_line(cause) if isinstance(cause, BaseException) else f"{type(exc).__name__}: {first}"
            return Outcome(job.key, ERROR, error=error, trace=str(exc), bad_input=isinstance(cause, UserError))

    def shutdown(self) -> None:
        for ref in list(self.pending):
            self.ray.cancel(ref, force=True)
        self.pending.clear()
        if self.events is not None:
            try:
                self.ray.kill(self.events.actor)
            except Exception:  # noqa: BLE001 - Ray may be gone already
                pass
            self.events = None


# ---------------------------------------------------------------------------------------------------- registry
EXECUTORS: dict[str, type] = {"local": LocalExecutor, "process": ProcessExecutor, "ray": RayExecutor}


def make_executor(kind: str, fn: JobFn, context: dict[str, Any], *, workers: int = 1, threads: int | None = None,
                  board: Board | None = None, gpus_per_job: float = 1.0, address: str | None = None) -> Executor:
    """The one factory: `local` (one worker in this process, or `workers` processes), `process`, or `ray`."""
    if kind == "local" and workers > 1:
        kind = "process"
    if kind == "local":
        return LocalExecutor(fn, context, board=board, threads=threads)
    if kind == "process":
        return ProcessExecutor(fn, context, workers, threads=threads, board=board)
    if kind == "ray":
        return RayExecutor(fn, context, threads=threads, gpus_per_job=gpus_per_job, address=address, board=board)
    raise ValueError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
