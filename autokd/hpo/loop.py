"""The search loop: ask the driver for work while workers are free, submit it, wait, and for each result decide what
it means (the configuration's result, a lost node to rerun, or the environment's failure that stops the search),
journal it, tell the driver, keep best.json and the progress line current. Ctrl-C stops at the next turn; nothing
finished is lost."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from autokd.errors import UserError
from autokd.fsutil import read_json
from autokd.progress import Board, fmt_seconds
from autokd.ray_cluster import MAX_LOST_RETRIES
from autokd.hpo.objective import Objective
from autokd.hpo.brackets import BracketDriver
from autokd.hpo.executors import TrialRunner
from autokd.hpo.hyperband import schedule_summary
from autokd.hpo.plan import trunk_share
from autokd.hpo.rundir import searched_space, write_best
from autokd.hpo.start import Prepared, executor_kind, make_executor, prepare_logit_cache, use_logit_cache
from autokd.hpo.summary import closing_line
from autokd.hpo.trial import TrialContext, TrialResult
from autokd.space.configspace import theta_of
from autokd.space.prescreen import make_prescreen
from autokd.rungs import rungs_of

EvaluationKey = tuple[tuple[int, ...], float]  # (configuration id, budget)


class InterruptFlag:
    """Ctrl-C / SIGINT (and SIGTERM, which Ray's driver would turn into a bare exit) raises KeyboardInterrupt and
    also sets a flag that the search loop checks: Python drops an interrupt that lands in a destructor or in a
    library's bare `except:`, and a search must still stop at the next loop turn instead of running on. Only the
    main thread can install it; elsewhere it is inert."""

    def __init__(self) -> None:
        self.set = False
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.set = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.set:
            raise KeyboardInterrupt

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}


@dataclass
class SearchOutcome:
    run_dir: Path
    finished: int = 0
    failed: int = 0
    replayed: int = 0
    best: dict[str, Any] | None = None
    seconds: float = 0.0
    results: list[TrialResult] = field(default_factory=list)
    model_based: int = 0
    proposals: int = 0
    already_complete: bool = False
    linear_baseline: float | None = None  # a linear classifier's accuracy on the same split
    summary: str = ""  # the closing line (best against teacher, linear baseline, chance)


def incumbent(results: list[TrialResult]) -> TrialResult | None:
    """Highest budget first, then highest validation accuracy (then the earliest trial)."""
    ok = [r for r in results if r.status == "ok" and r.val_acc is not None]
    return max(ok, key=lambda r: (r.budget, r.val_acc, -r.trial_id)) if ok else None


def trial_line(r: TrialResult, driver: BracketDriver, done: int, failed: int, best: TrialResult | None,
               running: int, elapsed: float, eta: float | None) -> str:
    """One line per finished trial: where in the schedule, the result, counts, best so far, elapsed, projected."""
    b = driver.brackets[r.config_id[0]]
    rung = b.budgets.index(r.budget) if r.budget in b.budgets else -1
    outcome = f"val_acc {r.val_acc:.4f}" if r.status == "ok" else f"FAILED ({(r.error or '')[:80]})"
    best_txt = f"best {best.val_acc:.4f} @{best.budget:g}" if best else "best -"
    return (f"[bracket {r.config_id[0]} rung {rung} @{r.budget:g} ep] trial {r.trial_id} cfg {tuple(r.config_id)}: "
            f"{outcome} in {r.seconds:.0f}s | running {running}, done {done}, failed {failed} | {best_txt} | "
            f"{fmt_seconds(elapsed)} elapsed, ~{fmt_seconds(eta)} left")


def drop_finished_trunks(driver: BracketDriver, states: Path) -> None:
    """Delete the trunk states of brackets that are complete (nothing will continue them): a paper-size student's
    state is tens of MB, and a search has hundreds of evaluations."""
    for b in driver.brackets:
        if driver.bracket_complete(b):
            for path in states.glob(f"b{b.index}-*.pt"):
                path.unlink(missing_ok=True)


@dataclass
class EpochClock:
    """The projected time left: epochs still to train at the rate this session has trained them."""

    total: float  # planned epochs of the whole search (continued rungs count what they train)
    done: float  # trained so far, earlier sessions included
    t0: float = field(default_factory=time.time)
    session: float = 0.0  # trained by this session

    def add(self, r: TrialResult) -> None:
        trained = r.budget  # a continued rung trains only what its lower rung's trunk had not
        if r.extra.get("continued_from_step") and r.steps:
            trained = r.budget * (1.0 - r.extra["continued_from_step"] / r.steps)
        self.done += trained
        self.session += trained

    def elapsed(self) -> float:
        return time.time() - self.t0

    def eta(self) -> float:
        return self.elapsed() / self.session * max(0.0, self.total - self.done) if self.session else 0.0


class SearchLoop:
    """One session of a prepared search (a new run or a resumed one) in `run_dir`."""

    def __init__(self, prep: Prepared, run_dir: Path, board: Board, trial_fn: Callable | None = None,
                 executor: TrialRunner | None = None) -> None:
        self.settings, self.run, self.journal = prep.settings, prep.run, prep.journal
        self.prep, self.run_dir, self.board = prep, run_dir, board
        self.trial_fn, self.executor = trial_fn, executor
        s = self.settings
        self.driver = BracketDriver(searched_space(self.run), s.budgets(), s.eta, s.iterations, s.seed,
                                 optimizer=s.optimizer, rounding=s.bracket_rounding, promotion=s.promotion,
                                 rungs=rungs_of(s), refill_failed=s.refill_failed,
                                 min_points_in_model=s.min_points_in_model, random_fraction=s.random_fraction,
                                 objective=Objective(s.objective, tuple(self.run["objective_bounds"])
                                                     if self.run.get("objective_bounds") else None),
                                 prescreen=make_prescreen(s.prescreen, self.run["input_shape"], self.run["num_classes"],
                                                          self.run["param_limit"], s.merge_width),
                                 prescreen_pool=s.prescreen_pool)
        self.outcome = SearchOutcome(run_dir)
        self.outcome.replayed = self.driver.replay(prep.events)
        self.results = list(self.driver.results.values())
        self.done = sum(r.status == "ok" for r in self.results)
        self.failed = len(self.results) - self.done
        self.best = incumbent(self.results)
        self.states = run_dir / "states"  # continued rungs: the trunks promoted configurations continue
        self.env_failure: TrialResult | None = None
        self.lost_tries: dict[EvaluationKey, int] = {}  # reruns after lost nodes, per (configuration, budget)

    # ------------------------------------------------------------------------------------------ the session
    def run_session(self) -> SearchOutcome:
        if self.prep.resumed:
            self.driver.settle()
            if self.driver.done():
                return self._already_complete()
            self.board.line(f"autokd search: resuming {self.run_dir}: {self.outcome.replayed} results replayed, "
                            f"{len(self.driver.requeue)} unfinished to rerun, {self.settings.iterations} brackets",
                            force=True)
        ex = self._executor()
        s = self.settings
        clock = EpochClock(schedule_summary(s.budgets(), s.eta, s.iterations, s.bracket_rounding,
                                            trunk_share(s))["epochs"], sum(r.budget for r in self.results))
        interrupt = InterruptFlag()
        try:
            while not self.driver.done():
                interrupt.check()
                self._fill(ex)
                if ex.in_flight() == 0:
                    if self.driver.done() or self.env_failure is not None:
                        break
                    if ex.capacity < 1:
                        raise UserError(f"the Ray cluster has no node left that can run a trial; add nodes, then "
                                        f"continue with: autokd search --run-dir {self.run_dir} --resume")
                    raise RuntimeError("search scheduler stalled: nothing in flight and nothing to run")
                for r in ex.wait(timeout=1.0):
                    self._handle(r, ex, clock)
        except KeyboardInterrupt:
            self.board.line(f"interrupted; nothing finished is lost. Continue with: autokd search --run-dir "
                            f"{self.run_dir} --resume", force=True)
            raise
        finally:
            interrupt.restore()
            ex.shutdown()
        return self._finish(clock)

    def _executor(self) -> TrialRunner:
        ctx = TrialContext.from_settings(self.settings, self.run.get("teacher_path"), int(self.run["param_limit"]),
                                         self.settings.device, use_logit_cache(self.settings),
                                         self.run.get("threads_per_trial"))
        if self.driver.rungs.continues:
            ctx = replace(ctx, state_dir=str(self.states.resolve()))
        if self.executor is not None:
            return self.executor
        if self.trial_fn is None:
            prepare_logit_cache(self.settings, ctx, self.board)
            if executor_kind(self.settings) == "ray":
                from autokd.ray_cluster import log_errors_to

                log_errors_to(self.run_dir / "ray-errors.log")  # Ray's text of a dying node: there, not the terminal
        return make_executor(self.settings, ctx, int(self.run.get("workers") or 1), self.board, self.trial_fn)

    def _fill(self, ex: TrialRunner) -> None:
        """Submit work while a worker is free (nothing new after an environment failure)."""
        while self.env_failure is None and ex.in_flight() < ex.capacity:
            spec = self.driver.ask()
            if spec is None:
                return
            self.journal.append("started", **spec.to_json(),
                                proposal=self.driver.proposal_info.get(spec.config_id, {}))
            ex.submit(spec)

    # ------------------------------------------------------------------------------------------ one result
    def _handle(self, r: TrialResult, ex: TrialRunner, clock: EpochClock) -> None:
        cfg = self.driver.configs[r.config_id]
        record = {**r.to_json(), "theta": theta_of(cfg), "temperature": cfg.get("temperature"),
                  "alpha": cfg.get("alpha"), "seed": self.driver.arch_seed(r.config_id)}
        key = (tuple(r.config_id), float(r.budget))
        if r.status == "lost" and self.lost_tries.get(key, 0) < MAX_LOST_RETRIES:  # beyond: stop, resume later
            self._rerun_lost(r, record, key, ex)
        elif r.status in ("environment", "lost"):
            self._environment_failed(r, record)
        else:
            self._record(r, record, ex, clock)

    def _rerun_lost(self, r: TrialResult, record: dict[str, Any], key: EvaluationKey, ex: TrialRunner) -> None:
        """A lost node is the cluster's failure, not the configuration's: the same evaluation runs again at once."""
        self.lost_tries[key] = self.lost_tries.get(key, 0) + 1
        spec = self.driver.retry(r.trial_id)
        self.journal.append("env_failed", **record, retried_as=spec.trial_id if spec else None)
        self.board.line(f"trial {r.trial_id}: {r.error}; running it again as trial {spec.trial_id if spec else '?'} "
                        f"({ex.capacity} trial(s) fit the nodes left)", force=True)

    def _environment_failed(self, r: TrialResult, record: dict[str, Any]) -> None:
        """Nothing counts against the configuration; the search stops once the trials in flight are in."""
        self.driver.release(r.trial_id)
        self.journal.append("env_failed", **record)
        self.env_failure = self.env_failure or r
        self.board.line(f"trial {r.trial_id}: failed for a reason outside the configuration: {r.error}", force=True)

    def _record(self, r: TrialResult, record: dict[str, Any], ex: TrialRunner, clock: EpochClock) -> None:
        """The configuration's own result (ok or failed): told to the model, journaled, counted."""
        self.driver.tell(r)
        self.journal.append("finished" if r.status == "ok" else "failed", **record)
        if self.driver.rungs.continues:
            drop_finished_trunks(self.driver, self.states)
        self.results.append(r)
        self.outcome.results.append(r)
        self.done, self.failed = self.done + (r.status == "ok"), self.failed + (r.status != "ok")
        clock.add(r)
        new_best = incumbent(self.results)
        if new_best is not None and new_best is not self.best:
            self.outcome.best = write_best(self.run_dir, self.driver, new_best, self.run)
        self.best = new_best
        self.board.line(trial_line(r, self.driver, self.done, self.failed, self.best, ex.in_flight(),
                                   clock.elapsed(), clock.eta()))

    # ------------------------------------------------------------------------------------------ the end
    def _counts(self) -> None:
        self.outcome.finished, self.outcome.failed = self.done, self.failed
        self.outcome.model_based, self.outcome.proposals = self.driver.model_based_proposals()

    def _seal(self, seconds: float, **extra: Any) -> None:
        """The journal's last event: counts, the best trial, the closing numbers."""
        self.journal.append("search_finished", trial_id=-1, config_id=[-1, -1, -1], budget=0.0, finished=self.done,
                            failed=self.failed, seconds=seconds, model_based_proposals=self.outcome.model_based,
                            proposals=self.outcome.proposals, best_trial=self.best.trial_id if self.best else None,
                            **extra)
        self.journal.close()

    def _finish(self, clock: EpochClock) -> SearchOutcome:
        if self.driver.rungs.continues and self.driver.done():
            drop_finished_trunks(self.driver, self.states)  # the last bracket's rungs: chosen by the final ask()
        self._counts()
        self.outcome.seconds = clock.elapsed()
        if self.best is not None and self.outcome.best is None:
            self.outcome.best = write_best(self.run_dir, self.driver, self.best, self.run)
        if self.env_failure is not None:
            self.journal.close()
            raise UserError(f"stopped: {self.env_failure.error} (not the configuration's fault: nothing counted "
                            f"against it). Fix it, then continue with: autokd search --run-dir {self.run_dir} "
                            f"--resume")
        self.outcome.summary, self.outcome.linear_baseline = closing_line(self.settings, self.run, self.best)
        self._seal(round(self.outcome.seconds, 3), linear_baseline=self.outcome.linear_baseline)
        return self.outcome

    def _already_complete(self) -> SearchOutcome:
        """A resume of a finished run: nothing to train; a run killed after its last result is sealed now."""
        self.outcome.already_complete = True
        self._counts()
        best_json = self.run_dir / "best.json"
        if not any(e.get("event") == "search_finished" for e in self.prep.events):
            self.outcome.best = write_best(self.run_dir, self.driver, self.best, self.run) if self.best else None
            self._seal(0.0, linear_baseline=None, sealed_on_resume=True)
            self.board.line(f"autokd search: {self.run_dir} had every result but no seal (stopped before its end); "
                            "best.json rewritten from the journal and the run sealed", force=True)
        elif best_json.is_file():
            self.outcome.best = read_json(best_json, "best file")
        elif self.best is not None:
            self.outcome.best = write_best(self.run_dir, self.driver, self.best, self.run)
        self.board.line(f"autokd search: {self.run_dir} is already complete ({self.done} finished, {self.failed} "
                        f"failed); nothing to do. Extend it with --resume --iterations N (now "
                        f"{self.settings.iterations}).", force=True)
        return self.outcome
