"""`autokd search`: the run directory, the ask/submit/wait/tell loop, best.json, progress, resume."""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from ConfigSpace.read_and_write import json as cs_json

from autokd import __version__
from autokd.config import SearchSettings, settings_from_dict
from autokd.errors import RunDirError, UserError
from autokd.fsutil import write_atomic
from autokd.search.bohb import BOHBDriver
from autokd.search.executors import Executor, LocalExecutor, RayExecutor
from autokd.search.hyperband import schedule_summary
from autokd.search.journal import Journal
from autokd.search.trial import TrialContext, TrialResult, run_trial
from autokd.space.configspace import THETA_KEYS, load_space
from autokd.space.genfile import GENERATOR_FORMAT, default_param_limit

RUN_FORMAT = "autokd.run/1"


@dataclass
class SearchOutcome:
    run_dir: Path
    finished: int = 0
    failed: int = 0
    replayed: int = 0
    best: dict[str, Any] | None = None
    seconds: float = 0.0
    results: list[TrialResult] = field(default_factory=list)


def _versions() -> dict[str, str]:
    out = {"autokd": __version__, "python": platform.python_version()}
    for mod in ("torch", "numpy", "ConfigSpace", "hpbandster", "ray", "networkx"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            out[mod] = "unavailable"
    return out


def _gpu() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        if not (run_dir / "run.json").is_file():
            raise RunDirError(f"{run_dir} holds no run to resume (no run.json); start one without --resume")
        if not os.access(run_dir, os.W_OK):
            raise RunDirError(f"cannot write to {run_dir}; fix its permissions")
        return
    if (run_dir / "run.json").exists() or (run_dir / "journal.jsonl").exists():
        raise RunDirError(f"{run_dir} already holds a run; continue it with --resume or choose another --run-dir")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirError(f"{run_dir} is not empty; choose a new or empty --run-dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"cannot write to {run_dir} ({exc.strerror}); choose a writable --run-dir") from None


def load_run(run_dir: Path) -> dict[str, Any]:
    try:
        run = json.loads((run_dir / "run.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{run_dir}/run.json is unreadable ({exc}); the run cannot be resumed") from None
    if run.get("format") != RUN_FORMAT:
        raise RunDirError(f"{run_dir}/run.json is not an {RUN_FORMAT} file")
    return run


def incumbent(results: list[TrialResult]) -> TrialResult | None:
    """Highest budget first, then highest validation accuracy (then the earliest trial)."""
    ok = [r for r in results if r.status == "ok" and r.val_acc is not None]
    return max(ok, key=lambda r: (r.budget, r.val_acc, -r.trial_id)) if ok else None


def write_best(run_dir: Path, driver: BOHBDriver, best: TrialResult, run: dict[str, Any]) -> dict[str, Any]:
    cfg = driver.configs[tuple(best.config_id)]
    settings = run["settings"]
    obj = {"format": GENERATOR_FORMAT, "space": run["space"],
           "generator": {k: cfg[k] for k in THETA_KEYS},
           "kd": {"temperature": float(cfg.get("temperature", 4.0)), "alpha": float(cfg.get("alpha", 0.0))},
           "param_limit": run["param_limit"],
           "source": {"run_dir": str(run_dir.resolve()), "dataset": settings["dataset"],
                      "teacher": run.get("teacher_path"), "data_dir": settings.get("data_dir"),
                      "config_id": list(best.config_id), "budget": best.budget, "val_acc": best.val_acc,
                      "arch_id": best.arch_id, "params": best.params, "trial_id": best.trial_id}}
    write_atomic(run_dir / "best.json", json.dumps(obj, indent=1, sort_keys=True) + "\n")
    return obj


class Progress:
    """One line per finished trial on stderr: where in the schedule, counts, best so far, elapsed, projected."""

    def __init__(self, stream: TextIO, planned_epochs: float, quiet: bool = False) -> None:
        self.stream, self.planned, self.quiet = stream, planned_epochs, quiet
        self.t0 = time.time()
        self.epochs_done = 0.0
        self.seconds_done = 0.0

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def trial(self, r: TrialResult, driver: BOHBDriver, executor: Executor, done: int, failed: int,
              best: TrialResult | None) -> None:
        self.epochs_done += r.budget
        elapsed = time.time() - self.t0
        left = max(0.0, self.planned - self.epochs_done)
        eta = elapsed / self.epochs_done * left if self.epochs_done else float("nan")
        b = driver.brackets[r.config_id[0]]
        rung = b.budgets.index(r.budget) if r.budget in b.budgets else -1
        outcome = f"val_acc {r.val_acc:.4f}" if r.status == "ok" else f"FAILED ({(r.error or '')[:80]})"
        best_txt = f"best {best.val_acc:.4f} @{best.budget:g}" if best else "best -"
        self.say(f"[bracket {r.config_id[0]} rung {rung} @{r.budget:g} ep] trial {r.trial_id} cfg "
                 f"{tuple(r.config_id)}: {outcome} in {r.seconds:.0f}s | running {executor.in_flight()}, done "
                 f"{done}, failed {failed} | {best_txt} | {elapsed / 60:.1f} min elapsed, ~{eta / 60:.1f} min left")


def _use_logit_cache(settings: SearchSettings) -> bool:
    import torch

    return settings.logit_cache == "on" or (settings.logit_cache == "auto" and torch.cuda.is_available())


def make_executor(settings: SearchSettings, ctx: TrialContext, trial_fn: Callable | None = None) -> Executor:
    import torch

    kind = settings.executor
    if kind == "auto":
        kind = "ray" if torch.cuda.is_available() else "local"
    if kind == "local":
        return LocalExecutor(trial_fn or (lambda spec: run_trial(spec, ctx)))
    return RayExecutor(ctx, settings.gpus_per_trial, settings.ray_address)


def _resolve_inputs(settings: SearchSettings) -> tuple[Any, str | None, dict[str, Any] | None]:
    """Load the dataset and the teacher (training a missing built-in one) before anything is written."""
    from autokd.data.dataset import load_dataset
    from autokd.kd.teacher import resolve_teacher

    ds = load_dataset(settings.dataset, settings.data_dir)
    if settings.no_kd:
        return ds, None, None
    teacher = resolve_teacher(str(settings.teacher), ds, smoke=settings.smoke_teacher, device=settings.device)
    meta = {k: teacher.meta.get(k) for k in ("arch", "args", "dataset", "test_acc", "params", "epochs", "smoke")}
    return ds, str(teacher.path.resolve()), meta


def run_search(settings: SearchSettings | None, run_dir: str | Path, resume: bool = False,
               stream: TextIO | None = None, quiet: bool = False, trial_fn: Callable | None = None,
               executor: Executor | None = None) -> SearchOutcome:
    run_dir = Path(run_dir)
    stream = stream or sys.stderr
    prepare_run_dir(run_dir, resume)
    if resume:
        run = load_run(run_dir)
        settings = settings_from_dict(run["settings"], f"{run_dir}/run.json").check()
        if (run_dir / "journal.jsonl").exists():
            journal, _, events = Journal.resume(run_dir / "journal.jsonl")
        else:  # killed between run.json and the journal's header: nothing ran yet
            journal, events = Journal.create(run_dir / "journal.jsonl", {"created": run["created"]}), []
        teacher_path = run.get("teacher_path")
    else:
        assert settings is not None
        settings = settings.check()
        ds, teacher_path, teacher_meta = _resolve_inputs(settings)
        run = {"format": RUN_FORMAT, "settings": settings.to_json(), "space": settings.space,
               "param_limit": settings.param_limit or default_param_limit(ds.input_shape),
               "input_shape": list(ds.input_shape), "num_classes": ds.num_classes,
               "teacher_path": teacher_path, "teacher": teacher_meta, "versions": _versions(),
               "host": socket.gethostname(), "gpu": _gpu(),
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        write_atomic(run_dir / "run.json", json.dumps(run, indent=1, sort_keys=True) + "\n")
        space_cs = load_space(settings.space).with_max_nodes(settings.max_nodes).to_configspace()
        write_atomic(run_dir / "space.json", cs_json.write(space_cs) + "\n")
        journal = Journal.create(run_dir / "journal.jsonl", {"created": run["created"], "space": settings.space})
        events = []
    space = load_space(run["space"]).with_max_nodes(settings.max_nodes)
    budgets = settings.budgets()
    driver = BOHBDriver(space, budgets, settings.eta, settings.iterations, settings.seed)
    outcome = SearchOutcome(run_dir)
    outcome.replayed = driver.replay(events)
    results = [r for r in driver.results.values()]
    ctx = TrialContext(dataset=settings.dataset, data_dir=settings.data_dir, teacher_path=teacher_path,
                       param_limit=int(run["param_limit"]), subset=settings.subset,
                       val_fraction=settings.val_fraction, batch_size=settings.batch_size, lr=settings.lr,
                       weight_decay=settings.weight_decay, split_seed=settings.seed, device=settings.device,
                       logit_cache=_use_logit_cache(settings))
    plan = schedule_summary(budgets, settings.eta, settings.iterations)
    progress = Progress(stream, plan["epochs"] - sum(r.budget for r in results), quiet)
    ex = executor or make_executor(settings, ctx, trial_fn)
    progress.say(f"autokd search: {settings.dataset}, teacher {settings.teacher if not settings.no_kd else 'none'}"
                 f" ({run['space']}), budgets {'/'.join(f'{b:g}' for b in budgets)} epochs, eta {settings.eta}, "
                 f"{settings.iterations} brackets = up to {plan['evaluations']} evaluations "
                 f"({plan['epochs']:g} epochs), executor {ex.name} × {ex.capacity}, run dir {run_dir}"
                 + (f"; resumed with {outcome.replayed} results replayed, {len(driver.requeue)} to rerun"
                    if resume else ""))
    done = sum(r.status == "ok" for r in results)
    failed = len(results) - done
    best = incumbent(results)
    t0 = time.time()
    try:
        while not driver.done():
            while ex.in_flight() < ex.capacity:
                spec = driver.ask()
                if spec is None:
                    break
                journal.append("started", **spec.to_json(), proposal=driver.proposal_info.get(spec.config_id, {}))
                ex.submit(spec)
            if ex.in_flight() == 0:
                if driver.done():
                    break
                raise RuntimeError("search scheduler stalled: nothing in flight and nothing to run")
            for r in ex.wait(timeout=1.0):
                driver.tell(r)
                fields = {k: v for k, v in r.to_json().items() if k != "extra"}
                cfg = driver.configs[r.config_id]
                fields.update(theta={k: cfg[k] for k in THETA_KEYS}, temperature=cfg.get("temperature"),
                              alpha=cfg.get("alpha"), seed=driver.arch_seed(r.config_id))
                journal.append("finished" if r.status == "ok" else "failed", **fields)
                results.append(r)
                outcome.results.append(r)
                if r.status == "ok":
                    done += 1
                else:
                    failed += 1
                new_best = incumbent(results)
                if new_best is not None:
                    outcome.best = write_best(run_dir, driver, new_best, run)
                best = new_best
                progress.trial(r, driver, ex, done, failed, best)
    except KeyboardInterrupt:
        progress.say(f"interrupted; nothing finished is lost. Continue with: autokd search --run-dir {run_dir} "
                     f"--resume")
        raise
    finally:
        ex.shutdown()
        journal.close()
    outcome.finished, outcome.failed, outcome.seconds = done, failed, time.time() - t0
    if best is not None and outcome.best is None:
        outcome.best = write_best(run_dir, driver, best, run)
    return outcome
