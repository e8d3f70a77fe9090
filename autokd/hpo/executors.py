"""The search's trials on autokd.executors' one protocol: TrialSpecs in, TrialResults out.

`trial_job` is the job function every executor runs for a trial (plain data in and out); `TrialRunner` is what the
search loop talks to: it wraps any executor and turns its outcomes into trial results — an error or a crashed worker
is the trial's failure (told to the model), a lost Ray node the environment's (the loop reruns the trial).
"""

from __future__ import annotations

from typing import Any, Callable

from autokd.errors import names_programming_error
from autokd.executors import DONE, ERROR, LOST, Executor, Job, Outcome, RemoteTraceback, make_executor
from autokd.hpo.trial import Status, TrialContext, TrialResult, TrialSpec, run_trial
from autokd.progress import Board

__all__ = ["TrialRunner", "trial_job", "trial_label", "trial_runner"]

TrialFn = Callable[[TrialSpec], TrialResult]


def trial_label(spec: TrialSpec) -> str:
    return f"trial {spec.trial_id} cfg {tuple(spec.config_id)} @{spec.budget:g} ep"


def trial_job(payload: dict[str, Any], context: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    """One trial as an executor's job: TrialSpec JSON and TrialContext JSON in, TrialResult JSON out."""
    spec = TrialSpec.from_json(payload)
    return run_trial(spec, TrialContext.from_json(context), progress=progress).to_json()


class TrialRunner:
    """The search loop's view of an executor."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.specs: dict[str, TrialSpec] = {}

    @property
    def name(self) -> str:
        return self.executor.name

    @property
    def capacity(self) -> int:
        return self.executor.capacity

    @property
    def threads(self) -> int | None:
        return self.executor.threads

    def submit(self, spec: TrialSpec) -> None:
        key = f"trial {spec.trial_id}"
        self.specs[key] = spec
        self.executor.submit(Job(key, trial_label(spec), spec.to_json()))

    def in_flight(self) -> int:
        return self.executor.in_flight()

    def wait(self, timeout: float | None = None) -> list[TrialResult]:
        return [self._result(o) for o in self.executor.wait(timeout)]

    def _result(self, o: Outcome) -> TrialResult:
        spec = self.specs.pop(o.key)
        if o.status == DONE:
            assert o.value is not None
            return TrialResult.from_json(o.value).with_extra(**o.where)
        if o.status == ERROR and names_programming_error(o.error):  # the code's fault: stop the search
            raise RuntimeError(f"{trial_label(spec)}: {o.error}") from RemoteTraceback(o.trace or "")
        status = Status.LOST if o.status == LOST else Status.FAILED  # ERROR, CRASHED: the configuration's failure
        return TrialResult(spec.trial_id, spec.config_id, spec.budget, status, error=o.error).with_extra(**o.where)

    def shutdown(self) -> None:
        self.executor.shutdown()
        self.specs.clear()


def trial_runner(kind: str, ctx: TrialContext, workers: int = 1, board: Board | None = None,
                 gpus_per_trial: float = 1.0, address: str | None = None,
                 trial_fn: TrialFn | None = None) -> TrialRunner:
    """Trials on `kind` (local, process, ray). `trial_fn` (tests) replaces run_trial, in this process."""
    if trial_fn is not None:
        from autokd.executors import LocalExecutor

        def run_fn(payload: dict[str, Any], _context: dict[str, Any], _progress: Any) -> dict[str, Any]:
            return trial_fn(TrialSpec.from_json(payload)).to_json()

        return TrialRunner(LocalExecutor(run_fn, {}, board=board))
    # the executor sets each job's threads (a worker process re-lends idle cores; Ray fits them to its nodes), not
    # the trial
    context = {**ctx.to_json(), "threads": None}
    return TrialRunner(make_executor(kind, trial_job, context, workers=workers, threads=ctx.threads, board=board,
                                     gpus_per_job=gpus_per_trial, address=address))
