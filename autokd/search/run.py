"""`autokd search`: the run directory, the plan, the ask/submit/wait/tell loop, best.json, progress, resume."""

from __future__ import annotations

import datetime
import math
import os
import platform
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TextIO

from autokd import __version__
from autokd.config import SETTING_FIELDS, SearchSettings, settings_from_dict
from autokd.errors import RunDirError, UserError
from autokd.fsutil import read_json, write_atomic, write_json
from autokd.progress import Board, fmt_seconds
from autokd.recipe import DEFAULT_KD, RECIPE_KEYS
from autokd.runlock import LOCK_NAME, RunLock
from autokd.search.bohb import BOHBDriver
from autokd.search.executors import Executor, LocalExecutor, ProcessExecutor, RayExecutor
from autokd.search.hyperband import schedule_summary
from autokd.search.journal import Journal
from autokd.ray_cluster import MAX_LOST_RETRIES
from autokd.search.plan import CPU_REFUSE_HOURS, Plan, check_size, make_plan, trunk_share
from autokd.search.trial import TrialContext, TrialResult
from autokd.space.configspace import BUILTIN_SPACES, load_space, theta_of
from autokd.space.genfile import GENERATOR_FORMAT, default_param_limit
from autokd.validate import Field, check_object

RUN_FORMAT = "autokd.run/1"


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


def _versions() -> dict[str, str]:
    """Versions of the packages a run depends on, from their installed metadata."""
    from importlib import metadata

    out = {"autokd": __version__, "python": platform.python_version()}
    for dist in ("torch", "numpy", "ConfigSpace", "hpbandster", "ray", "networkx", "scipy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _gpu() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def check_run_dir_path(run_dir: Path) -> None:
    """A usable place for a new run directory (before anything is written)."""
    try:
        if len(run_dir.name.encode()) > 255:
            raise OSError(36, "File name too long")
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirError(f"--run-dir {run_dir} is a file, not a folder; choose another --run-dir")
        probe = run_dir
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise OSError(20, "Not a directory")
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".autokd-probe-")  # the real test: can we create files?
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise RunDirError(f"cannot create {run_dir} ({exc.strerror}); choose a writable --run-dir") from None
    if run_dir.is_dir():
        _check_empty(run_dir)  # again under the lock, before anything is written


def _check_empty(run_dir: Path) -> None:
    if (run_dir / "run.json").exists() or (run_dir / "journal.jsonl").exists():
        raise RunDirError(f"{run_dir} already holds a run; continue it with --resume or choose another --run-dir")
    if any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise RunDirError(f"{run_dir} is not empty; choose a new or empty --run-dir")


RUN_FIELDS = {
    "format": Field("str", required=True, choices=(RUN_FORMAT,)), "settings": Field("dict", required=True),
    "space": Field("str", required=True, choices=BUILTIN_SPACES),
    "param_limit": Field("int", min=1000, required=True), "input_shape": Field("list", required=True),
    "num_classes": Field("int", min=2, required=True), "teacher_path": Field("str", nullable=True),
    "created": Field("str", required=True), "fixed_dimensions": Field("dict", nullable=True),
}


def load_run(run_dir: Path) -> dict[str, Any]:
    """run.json, validated (a hand-edited or foreign file is a one-line error)."""
    if not (run_dir / "run.json").is_file():
        raise RunDirError(f"{run_dir} holds no run to resume (no run.json); start one without --resume")
    run = read_json(run_dir / "run.json", "run file")
    try:
        run = check_object(run, RUN_FIELDS, f"{run_dir}/run.json", allow_unknown=True)
    except UserError as exc:
        raise RunDirError(f"{exc}; the run cannot be resumed (start a new --run-dir)") from None
    return run


def incumbent(results: list[TrialResult]) -> TrialResult | None:
    """Highest budget first, then highest validation accuracy (then the earliest trial)."""
    ok = [r for r in results if r.status == "ok" and r.val_acc is not None]
    return max(ok, key=lambda r: (r.budget, r.val_acc, -r.trial_id)) if ok else None


def standard_error(acc: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on n images."""
    return math.sqrt(max(acc * (1 - acc), 0.0) / n) if n else float("nan")


def write_best(run_dir: Path, driver: BOHBDriver, best: TrialResult, run: dict[str, Any]) -> dict[str, Any]:
    """best.json: the winning generator, its τ/α, and the winning trial (architecture seed and recipe), so that
    `sample`, `evaluate`, `retrain` and the report rebuild the very network that won."""
    cfg = driver.configs[tuple(best.config_id)]
    st = run["settings"]
    val_images = best.extra.get("val_images") or run.get("val_images")
    recipe = {k: st.get(k) for k in (*RECIPE_KEYS, "subset", "val_images", "val_fraction") if k in st}
    obj = {"format": GENERATOR_FORMAT, "space": run["space"], "merge_width": st.get("merge_width", "cell"),
           "generator": theta_of(cfg),
           "kd": {"temperature": float(cfg.get("temperature", DEFAULT_KD.temperature)),
                  "alpha": float(cfg.get("alpha", 0.0))},
           "param_limit": run["param_limit"],
           "source": {"run_dir": str(run_dir.resolve()), "dataset": st["dataset"],
                      "teacher": run.get("teacher_path"), "teacher_weights": st.get("teacher_weights"),
                      "data_dir": st.get("data_dir"), "config_id": list(best.config_id), "budget": best.budget,
                      "val_acc": best.val_acc, "val_images": val_images,
                      "val_acc_se": standard_error(best.val_acc or 0.0, val_images) if val_images else None,
                      "arch_id": best.arch_id, "params": best.params, "trial_id": best.trial_id,
                      "seed": driver.arch_seed(tuple(best.config_id)), "split_seed": st["seed"],
                      "recipe": {**recipe, "budget_epochs": best.budget}}}
    write_json(run_dir / "best.json", obj)
    return obj


def _use_logit_cache(settings: SearchSettings) -> bool:
    import torch

    return settings.logit_cache == "on" or (settings.logit_cache == "auto" and torch.cuda.is_available())


def executor_kind(settings: SearchSettings) -> str:
    """local or ray: `auto` is Ray on a machine with CUDA or with --ray-address, else local."""
    import torch

    if settings.executor != "auto":
        return settings.executor
    return "ray" if torch.cuda.is_available() or settings.ray_address else "local"


def make_executor(settings: SearchSettings, ctx: TrialContext, workers: int, board: Board,
                  trial_fn: Callable | None = None) -> Executor:
    kind = executor_kind(settings)
    if kind == "local":
        if trial_fn is not None or workers <= 1:
            return LocalExecutor(trial_fn, ctx=ctx, board=board)
        return ProcessExecutor(ctx, workers, board)
    return RayExecutor(ctx, settings.gpus_per_trial, settings.ray_address, cpus_per_trial=ctx.threads)


def prepare_logit_cache(settings: SearchSettings, ctx: TrialContext, board: Board) -> None:
    """Build the teacher-logit cache once, here, before the workers start (each would otherwise build its own)."""
    if not ctx.logit_cache or settings.no_kd or not ctx.teacher_path:
        return
    from autokd.data.dataset import load_dataset, train_val_split
    from autokd.kd.cache import load_or_build
    from autokd.kd.teacher import resolve_teacher
    from autokd.train import pick_device

    ds = load_dataset(ctx.dataset, ctx.data_dir)
    train, _ = train_val_split(ds.train, ctx.val_fraction, ctx.split_seed, ctx.subset, ctx.val_images)
    aug = ctx.train_config(1.0, 0).augment
    t0 = time.time()
    teacher = resolve_teacher(ctx.teacher_path, ds, device=ctx.device, quiet=True, weights=ctx.teacher_weights)
    _, path = load_or_build(teacher, train, aug, ds.info.mean, ds.info.std, pick_device(ctx.device), quiet=True)
    board.line(f"teacher logits for {len(train):,} images × {aug.views} views ready in {time.time() - t0:.0f}s "
               f"({path})")


def trial_line(r: TrialResult, driver: BOHBDriver, done: int, failed: int, best: TrialResult | None,
               running: int, elapsed: float, eta: float | None) -> str:
    """One line per finished trial: where in the schedule, the result, counts, best so far, elapsed, projected."""
    b = driver.brackets[r.config_id[0]]
    rung = b.budgets.index(r.budget) if r.budget in b.budgets else -1
    outcome = f"val_acc {r.val_acc:.4f}" if r.status == "ok" else f"FAILED ({(r.error or '')[:80]})"
    best_txt = f"best {best.val_acc:.4f} @{best.budget:g}" if best else "best -"
    return (f"[bracket {r.config_id[0]} rung {rung} @{r.budget:g} ep] trial {r.trial_id} cfg {tuple(r.config_id)}: "
            f"{outcome} in {r.seconds:.0f}s | running {running}, done {done}, failed {failed} | {best_txt} | "
            f"{fmt_seconds(elapsed)} elapsed, ~{fmt_seconds(eta)} left")


# ------------------------------------------------------------------------------------------------ starting
@dataclass
class Prepared:
    settings: SearchSettings
    run: dict[str, Any]
    events: list[dict[str, Any]]
    journal: Journal
    plan: Plan | None
    resumed: bool


def _teacher_for_plan(settings: SearchSettings, ds: Any) -> Any:
    """The teacher's network for timing its forward pass: loaded when it is a file, built untrained when it is a
    built-in that would be trained (nothing heavy happens before the plan is printed)."""
    if settings.no_kd:
        return None
    from autokd.kd.teacher import resolve_teacher, shipped_path, teacher_cache_path
    from autokd.nn.teachers import TEACHERS, build_teacher

    name = str(settings.teacher)
    if name in TEACHERS and not (shipped_path(ds.info.name, name) or
                                 teacher_cache_path(ds.info.name, name, settings.smoke_teacher).is_file()):
        spec = TEACHERS[name]
        return build_teacher(name, ds.num_classes, ds.input_shape[0],
                             dict(spec.smoke_args if settings.smoke_teacher else spec.args))
    return resolve_teacher(name, ds, smoke=settings.smoke_teacher, device="cpu", quiet=True,
                           weights=settings.teacher_weights, check=True).module


def _linear_baseline(settings: SearchSettings) -> float | None:
    """A linear softmax classifier on the search's own split: the floor a student must clear."""
    from autokd.baselines import linear_baseline
    from autokd.data.dataset import load_dataset, train_val_split

    ds = load_dataset(settings.dataset, settings.data_dir)
    train, val = train_val_split(ds.train, settings.val_fraction, settings.seed, settings.subset,
                                 settings.val_images)
    return linear_baseline(train, val, ds.info.mean, ds.info.std)


def start_search(settings: SearchSettings, run_dir: Path, board: Board, lock: RunLock, dry_run: bool = False,
                 yes: bool = False, measure_speed: bool = True, join_cluster: bool = True) -> Prepared | None:
    """Validate, print the plan, refuse a week-long CPU job, resolve the teacher, then write the run directory.
    Returns None after --dry-run."""
    import torch

    from autokd.data.dataset import load_dataset
    from autokd.kd.teacher import default_teacher, resolve_teacher, teacher_summary
    from autokd.train import pick_device

    settings = settings.check()
    check_size(settings)
    if not settings.no_kd and settings.teacher is None:
        settings = replace(settings, teacher=default_teacher(settings.dataset))
    check_run_dir_path(run_dir)
    ds = load_dataset(settings.dataset, settings.data_dir)
    limit = settings.param_limit or default_param_limit(ds.input_shape)
    device = pick_device(settings.device)
    cluster = None
    if join_cluster and executor_kind(settings) == "ray":  # joined (and checked) before anything is written
        from autokd.ray_cluster import join

        cluster = join(settings.ray_address)
    plan = make_plan(settings, len(ds.train), ds.input_shape, ds.num_classes, limit, device,
                     _teacher_for_plan(settings, ds) if measure_speed else None, measure_speed=measure_speed,
                     use_cache=_use_logit_cache(settings), cluster=cluster)
    wanted = settings.threads_per_trial
    if cluster is not None and wanted and plan.threads < wanted:
        board.line(f"--threads-per-trial {wanted} is more than the biggest Ray node's {max(cluster.node_cpus)} "
                   f"CPUs: each trial runs {plan.threads} thread(s)", force=True)
    board.line(f"autokd search: {settings.dataset}, preset {settings.preset}, teacher "
               f"{settings.teacher if not settings.no_kd else 'none (no KD)'}, budgets "
               f"{'/'.join(f'{b:g}' for b in settings.budgets())} epochs (eta {settings.eta}), "
               f"{settings.optimizer} ({settings.promotion} promotion, rungs trained {settings.rung_training}, lr "
               f"{settings.lr_schedule}), space {settings.space}, parameter limit "
               f"{limit:,}", force=True)
    board.line(plan.describe(), force=True)
    projected = plan.seconds()
    if dry_run:
        return None
    if (device.type != "cuda" and projected is not None and projected > CPU_REFUSE_HOURS * 3600 and not yes):
        raise UserError(f"this search is projected to take {fmt_seconds(projected)} on this CPU; use --preset cpu "
                        f"(about 10 minutes), lower --iterations or the budgets, or pass --yes to run it anyway")
    teacher_meta = teacher_path = None
    if not settings.no_kd:
        progress = board.reporter("teacher", f"teacher {settings.teacher}")
        try:
            teacher = resolve_teacher(str(settings.teacher), ds, smoke=settings.smoke_teacher,
                                      device=settings.device, weights=settings.teacher_weights, progress=progress,
                                      check=True)
        finally:
            board.done("teacher")
        teacher_path, teacher_meta = str(teacher.path.resolve()), teacher_summary(teacher)
        warn_if_weak_teacher(teacher_meta, ds.info.name, board)
    lock.acquire()
    _check_empty(run_dir)
    dead = load_space(settings.space).with_max_nodes(settings.max_nodes).dead_dimensions()
    if dead:
        board.line("fixed, as they cannot change an architecture of this space (BOHB's model leaves them out): "
                   + ", ".join(f"{k} = {v:g}" for k, v in dead.items()), force=True)
    run = {"format": RUN_FORMAT, "settings": settings.to_json(), "space": settings.space, "param_limit": limit,
           "fixed_dimensions": dead,
           "input_shape": list(ds.input_shape), "num_classes": ds.num_classes, "teacher_path": teacher_path,
           "teacher": teacher_meta, "train_images": plan.train_images, "val_images": plan.val_images,
           "workers": plan.workers, "threads_per_trial": plan.threads, "device": str(device),
           "plan": {**plan.__dict__, "projected_seconds": projected}, "versions": _versions(),
           "host": socket.gethostname(), "cpu": _cpu_model(), "cores": os.cpu_count(), "gpu": _gpu(),
           "command": sys.argv[:], "torch_threads_default": torch.get_num_threads(),
           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    write_json(run_dir / "run.json", run)
    space_cs = searched_space(run).to_configspace()
    from ConfigSpace.read_and_write import json as cs_json

    write_atomic(run_dir / "space.json", cs_json.write(space_cs) + "\n")
    journal = Journal.create(run_dir / "journal.jsonl", {"created": run["created"], "space": settings.space,
                                                         "promotion": settings.promotion,
                                                         "rung_training": settings.rung_training})
    return Prepared(settings, run, [], journal, plan, False)


def searched_space(run: dict[str, Any]) -> Any:
    """The space a run searches: its file, node cap, and the dimensions fixed as dead when it was created (a run of
    an earlier release has no `fixed_dimensions` and searches every dimension, as it did)."""
    space = load_space(run["space"]).with_max_nodes(run["settings"].get("max_nodes"))
    fixed = run.get("fixed_dimensions") or {}
    names = {p.name for p in space.generator}
    if any(k not in names or isinstance(v, bool) or not isinstance(v, (int, float)) for k, v in fixed.items()):
        raise RunDirError(f"run.json: fixed_dimensions must map generator keys of {run['space']} to numbers, got "
                          f"{fixed}; restore the file the search wrote")
    return space.fixing(fixed)


def warn_if_weak_teacher(meta: dict[str, Any], dataset: str, board: Board) -> None:
    from autokd.data.registry import dataset_info

    acc = meta.get("test_acc")
    floor = meta.get("linear_baseline") or dataset_info(dataset).linear_baseline
    if acc is not None and floor is not None and acc < floor:
        board.line(f"WARNING: the teacher's test accuracy {100 * acc:.1f}% is below a linear classifier's "
                   f"{100 * floor:.1f}% on {dataset}: distilling from it will hold students back. Train a better "
                   f"one (`autokd teacher train`) or search with --no-kd.", force=True)


RESUMABLE = {"iterations"}  # the only setting a resume may change (to extend a search)


def resume_search(run_dir: Path, overrides: dict[str, Any], board: Board, lock: RunLock) -> Prepared:
    if not (run_dir / "run.json").is_file():  # before the lock, which would create the (mistyped) path
        raise RunDirError(f"{run_dir} holds no run to resume (no run.json); check the path, or start a search there "
                          "without --resume")
    lock.acquire()
    run = load_run(run_dir)
    settings = settings_from_dict(run["settings"], f"{run_dir}/run.json").check()
    changed = {k: v for k, v in overrides.items() if v is not None and k in SETTING_FIELDS
               and v != getattr(settings, k)}
    refused = sorted(set(changed) - RESUMABLE)
    if refused:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in refused)
        raise UserError(f"{flags}: a resumed run keeps the settings in {run_dir}/run.json; only --iterations can "
                        f"grow (to extend the search). Start a new --run-dir for other settings")
    if "iterations" in changed:
        if changed["iterations"] < settings.iterations:
            raise UserError(f"--iterations {changed['iterations']} is fewer than the run's {settings.iterations}; "
                            f"a resume can only add brackets")
        settings = replace(settings, iterations=changed["iterations"])
        check_size(settings)
        run["settings"] = settings.to_json()
        run.setdefault("extended", []).append({"iterations": settings.iterations, "at": datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec="seconds")})
        write_json(run_dir / "run.json", run)
    if (run_dir / "journal.jsonl").exists():
        journal, _, events = Journal.resume(run_dir / "journal.jsonl")
    else:  # killed between run.json and the journal's header: nothing ran yet
        journal, events = Journal.create(run_dir / "journal.jsonl", {"created": run["created"]}), []
    if run.get("teacher_path") and not settings.no_kd and not Path(run["teacher_path"]).is_file() \
            and ":" not in str(settings.teacher):
        raise UserError(f"the run's teacher {run['teacher_path']} is gone; put it back, then resume")
    return Prepared(settings, run, events, journal, None, True)


# ------------------------------------------------------------------------------------------------ the loop
def _key(r: TrialResult) -> tuple[tuple[int, ...], float]:
    return tuple(r.config_id), float(r.budget)

def run_search(settings: SearchSettings | None, run_dir: str | Path, resume: bool = False,
               stream: TextIO | None = None, quiet: bool = False, trial_fn: Callable | None = None,
               executor: Executor | None = None, overrides: dict[str, Any] | None = None, dry_run: bool = False,
               yes: bool = False, live: bool | None = None, measure_speed: bool = True) -> SearchOutcome:
    run_dir = Path(run_dir)
    board = Board(stream, quiet=quiet, live=live)
    lock = RunLock(run_dir)
    try:
        if resume:
            prep = resume_search(run_dir, overrides or {}, board, lock)
        else:
            assert settings is not None
            own = trial_fn is None and executor is None  # tests may hand in their own executor or trial function
            maybe = start_search(settings, run_dir, board, lock, dry_run=dry_run, yes=yes,
                                 measure_speed=measure_speed and own, join_cluster=own)
            if maybe is None:
                return SearchOutcome(run_dir)
            prep = maybe
        return _loop(prep, run_dir, board, trial_fn, executor)
    finally:
        board.close()
        lock.release()


def _loop(prep: Prepared, run_dir: Path, board: Board, trial_fn: Callable | None,
          executor: Executor | None) -> SearchOutcome:
    settings, run, journal = prep.settings, prep.run, prep.journal
    space = searched_space(run)
    driver = BOHBDriver(space, settings.budgets(), settings.eta, settings.iterations, settings.seed,
                        optimizer=settings.optimizer, rounding=settings.bracket_rounding, promotion=settings.promotion,
                        rung_training=settings.rung_training,
                        refill_failed=settings.refill_failed, min_points_in_model=settings.min_points_in_model,
                        random_fraction=settings.random_fraction)
    outcome = SearchOutcome(run_dir)
    outcome.replayed = driver.replay(prep.events)
    results = list(driver.results.values())
    workers = int(run.get("workers") or 1)
    threads = run.get("threads_per_trial")
    ctx = TrialContext.from_settings(settings, run.get("teacher_path"), int(run["param_limit"]), settings.device,
                                     _use_logit_cache(settings), threads)
    states = run_dir / "states"  # rung_training continue: the trunks promoted configurations continue
    if settings.rung_training == "continue":
        ctx = replace(ctx, state_dir=str(states.resolve()))
    done = sum(r.status == "ok" for r in results)
    failed = len(results) - done
    best = incumbent(results)
    if prep.resumed:
        driver.settle()
        if driver.done():
            outcome.already_complete = True
            outcome.finished, outcome.failed = done, failed
            outcome.model_based, outcome.proposals = driver.model_based_proposals()
            sealed = any(e.get("event") == "search_finished" for e in prep.events)
            if not sealed:  # killed after its last result, before the seal: best.json may be stale
                outcome.best = write_best(run_dir, driver, best, run) if best else None
                journal.append("search_finished", trial_id=-1, config_id=[-1, -1, -1], budget=0.0, finished=done,
                               failed=failed, seconds=0.0, model_based_proposals=outcome.model_based,
                               proposals=outcome.proposals, best_trial=best.trial_id if best else None,
                               linear_baseline=None, sealed_on_resume=True)
                journal.close()
                board.line(f"autokd search: {run_dir} had every result but no seal (stopped before its end); "
                           "best.json rewritten from the journal and the run sealed", force=True)
            outcome.best = outcome.best or (
                read_json(run_dir / "best.json", "best file") if (run_dir / "best.json").is_file()
                else (write_best(run_dir, driver, best, run) if best else None))
            board.line(f"autokd search: {run_dir} is already complete ({done} finished, {failed} failed); nothing "
                       f"to do. Extend it with --resume --iterations N (now {settings.iterations}).", force=True)
            return outcome
        board.line(f"autokd search: resuming {run_dir}: {outcome.replayed} results replayed, "
                   f"{len(driver.requeue)} unfinished to rerun, {settings.iterations} brackets", force=True)
    if executor is None and trial_fn is None:
        prepare_logit_cache(settings, ctx, board)
    if executor is None and trial_fn is None and executor_kind(settings) == "ray":
        from autokd.ray_cluster import log_errors_to

        log_errors_to(run_dir / "ray-errors.log")  # Ray's text of a dying node: there, not in the terminal
    ex = executor or make_executor(settings, ctx, workers, board, trial_fn)
    t0 = time.time()
    epochs_total = schedule_summary(settings.budgets(), settings.eta, settings.iterations,
                                    settings.bracket_rounding, trunk_share(settings))["epochs"]
    epochs_done = sum(r.budget for r in results)
    session_epochs = 0.0
    env_failure: TrialResult | None = None
    lost_tries: dict[tuple[tuple[int, ...], float], int] = {}  # (configuration, budget) → reruns after lost nodes
    interrupt = InterruptFlag()
    try:
        while not driver.done():
            interrupt.check()
            while env_failure is None and ex.in_flight() < ex.capacity:
                spec = driver.ask()
                if spec is None:
                    break
                journal.append("started", **spec.to_json(), proposal=driver.proposal_info.get(spec.config_id, {}))
                ex.submit(spec)
            if ex.in_flight() == 0:
                if driver.done() or env_failure is not None:
                    break
                if ex.capacity < 1:
                    raise UserError(f"the Ray cluster has no node left that can run a trial; add nodes, then "
                                    f"continue with: autokd search --run-dir {run_dir} --resume")
                raise RuntimeError("search scheduler stalled: nothing in flight and nothing to run")
            for r in ex.wait(timeout=1.0):
                cfg = driver.configs[r.config_id]
                fields_ = {k: v for k, v in r.to_json().items()}
                fields_.update(theta=theta_of(cfg), temperature=cfg.get("temperature"),
                               alpha=cfg.get("alpha"), seed=driver.arch_seed(r.config_id))
                if r.status == "lost" and lost_tries.get(_key(r), 0) < MAX_LOST_RETRIES:  # then: stop, resume later
                    lost_tries[_key(r)] = lost_tries.get(_key(r), 0) + 1
                    spec = driver.retry(r.trial_id)
                    journal.append("env_failed", **fields_, retried_as=spec.trial_id if spec else None)
                    board.line(f"trial {r.trial_id}: {r.error}; running it again as trial "
                               f"{spec.trial_id if spec else '?'} ({ex.capacity} trial(s) fit the nodes left)",
                               force=True)
                    continue
                if r.status in ("environment", "lost"):
                    driver.release(r.trial_id)
                    journal.append("env_failed", **fields_)
                    env_failure = env_failure or r
                    board.line(f"trial {r.trial_id}: failed for a reason outside the configuration: {r.error}",
                               force=True)
                    continue
                driver.tell(r)
                journal.append("finished" if r.status == "ok" else "failed", **fields_)
                if settings.rung_training == "continue":
                    drop_finished_trunks(driver, states)
                results.append(r)
                outcome.results.append(r)
                done, failed = done + (r.status == "ok"), failed + (r.status != "ok")
                trained = r.budget  # a continued rung trains only what its lower rung's trunk had not
                if r.extra.get("continued_from_step") and r.steps:
                    trained = r.budget * (1.0 - r.extra["continued_from_step"] / r.steps)
                epochs_done += trained
                session_epochs += trained
                new_best = incumbent(results)
                if new_best is not None and new_best is not best:
                    outcome.best = write_best(run_dir, driver, new_best, run)
                best = new_best
                elapsed = time.time() - t0
                eta = elapsed / session_epochs * max(0.0, epochs_total - epochs_done)
                board.line(trial_line(r, driver, done, failed, best, ex.in_flight(), elapsed, eta))
    except KeyboardInterrupt:
        board.line(f"interrupted; nothing finished is lost. Continue with: autokd search --run-dir {run_dir} "
                   f"--resume", force=True)
        raise
    finally:
        interrupt.restore()
        ex.shutdown()
    if settings.rung_training == "continue" and driver.done():
        drop_finished_trunks(driver, states)  # the last bracket's rungs are chosen by the ask() that ended the loop
    outcome.finished, outcome.failed, outcome.seconds = done, failed, time.time() - t0
    outcome.model_based, outcome.proposals = driver.model_based_proposals()
    if best is not None and outcome.best is None:
        outcome.best = write_best(run_dir, driver, best, run)
    if env_failure is not None:
        journal.close()
        raise UserError(f"stopped: {env_failure.error} (not the configuration's fault: nothing counted against it). "
                        f"Fix it, then continue with: autokd search --run-dir {run_dir} --resume")
    outcome.summary = closing_line(outcome, settings, run, best)
    journal.append("search_finished", trial_id=-1, config_id=[-1, -1, -1], budget=0.0, finished=done,
                   failed=failed, seconds=round(outcome.seconds, 3), model_based_proposals=outcome.model_based,
                   proposals=outcome.proposals, best_trial=best.trial_id if best else None,
                   linear_baseline=outcome.linear_baseline)
    journal.close()
    return outcome


def drop_finished_trunks(driver: BOHBDriver, states: Path) -> None:
    """Delete the trunk states of brackets that are complete (nothing will continue them): a paper-size student's
    state is tens of MB, and a search has hundreds of evaluations."""
    for b in driver.brackets:
        if driver.bracket_complete(b):
            for path in states.glob(f"b{b.index}-*.pt"):
                path.unlink(missing_ok=True)


def closing_line(outcome: SearchOutcome, settings: SearchSettings, run: dict[str, Any],
                 best: TrialResult | None) -> str:
    """The best student next to the teacher, a linear classifier on the same split, and chance."""
    try:
        linear = _linear_baseline(settings)
    except Exception:  # the closing line must not fail a finished search
        linear = None
    outcome.linear_baseline = linear
    n_val = int(run.get("val_images") or 0)
    parts = []
    if best is not None and best.val_acc is not None:
        se = standard_error(best.val_acc, n_val) if n_val else None
        parts.append(f"best student {100 * best.val_acc:.2f}%" + (f" ± {100 * se:.2f}" if se else "")
                     + f" validation accuracy ({best.params or 0:,} params, {best.budget:g} epochs)")
    teacher = run.get("teacher") or {}
    if teacher.get("test_acc") is not None:
        parts.append(f"teacher {teacher.get('arch')} {100 * teacher['test_acc']:.2f}% (test)")
    if linear is not None:
        parts.append(f"linear classifier {100 * linear:.2f}% (same split)")
    parts.append(f"chance {100 / int(run['num_classes']):.0f}%")
    return "; ".join(parts)
