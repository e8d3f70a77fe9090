"""Starting a search (check, plan, teacher, then the run directory) and resuming one (run.json and the journal),
and what both need to run trials: the executor and the teacher-logit cache."""

from __future__ import annotations

import datetime
import os
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ConfigSpace.read_and_write import json as cs_json

from autokd.config import SETTING_FIELDS, SearchSettings, settings_from_dict
from autokd.errors import RunDirError, UserError
from autokd.fsutil import write_atomic, write_json
from autokd.progress import Board, fmt_seconds
from autokd.runlock import RunLock
from autokd.hpo.executors import TrialRunner, trial_runner
from autokd.hpo.journal import Journal
from autokd.hpo.plan import CPU_REFUSE_HOURS, Plan, check_cost_limits, check_size, make_plan
from autokd.deploy import cpu_model
from autokd.hpo.rundir import (RUN_FORMAT, check_empty, check_run_dir_path, gpu_name, load_run,
                                  searched_space, space_record, versions)
from autokd.hpo.trial import TrialContext
from autokd.space.genfile import default_param_limit
from autokd.rungs import journal_fields, rungs_of

@dataclass
class Prepared:
    settings: SearchSettings
    run: dict[str, Any]
    events: list[dict[str, Any]]
    journal: Journal
    plan: Plan | None
    resumed: bool


def use_logit_cache(settings: SearchSettings) -> bool:
    import torch

    return settings.logit_cache == "on" or (settings.logit_cache == "auto" and torch.cuda.is_available())


def executor_kind(settings: SearchSettings) -> str:
    """local or ray: `auto` is Ray on a machine with CUDA or with --ray-address, else local."""
    import torch

    if settings.executor != "auto":
        return settings.executor
    return "ray" if torch.cuda.is_available() or settings.ray_address else "local"


def make_executor(settings: SearchSettings, ctx: TrialContext, workers: int, board: Board,
                  trial_fn: Callable | None = None) -> TrialRunner:
    return trial_runner(executor_kind(settings), ctx, workers, board, settings.gpus_per_trial, settings.ray_address,
                        trial_fn)


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


def start_search(settings: SearchSettings, run_dir: Path, board: Board, lock: RunLock, dry_run: bool = False,
                 yes: bool = False, measure_speed: bool = True, join_cluster: bool = True) -> Prepared | None:
    """Validate, print the plan, refuse a week-long CPU job, resolve the teacher, then write the run directory.
    Returns None after --dry-run."""
    import torch

    from autokd.data.dataset import load_dataset
    from autokd.kd.loss import needs_features
    from autokd.kd.teacher import check_feature_maps, default_teacher, resolve_teacher, teacher_summary
    from autokd.train import pick_device

    settings = settings.check()
    check_size(settings)
    if not settings.no_kd and settings.teacher is None:
        settings = replace(settings, teacher=default_teacher(settings.dataset))
    check_run_dir_path(run_dir)
    ds = load_dataset(settings.dataset, settings.data_dir)
    limit = settings.param_limit or default_param_limit(ds.input_shape)
    bounds = check_cost_limits(settings, ds.input_shape, ds.num_classes, limit)
    device = pick_device(settings.device)
    cluster = None
    if join_cluster and executor_kind(settings) == "ray":  # joined (and checked) before anything is written
        from autokd.ray_cluster import join

        cluster = join(settings.ray_address)
    losses = (settings.kd_loss, *settings.load_space().loss_choices())
    feature_kd = not settings.no_kd and any(needs_features(loss) for loss in losses)
    probe = _teacher_for_plan(settings, ds) if measure_speed or feature_kd else None
    for loss in losses if probe is not None else ():  # attention transfer: a teacher without feature maps, now
        check_feature_maps(probe, loss, f"teacher {settings.teacher}")
    plan = make_plan(settings, len(ds.train), ds.input_shape, ds.num_classes, limit, device,
                     probe if measure_speed else None, measure_speed=measure_speed,
                     use_cache=use_logit_cache(settings), cluster=cluster)
    wanted = settings.threads_per_trial
    if cluster is not None and wanted and plan.threads < wanted:
        board.line(f"--threads-per-trial {wanted} is more than the biggest Ray node's {max(cluster.node_cpus)} "
                   f"CPUs: each trial runs {plan.threads} thread(s)", force=True)
    board.line(f"autokd search: {settings.dataset}, preset {settings.preset}, teacher "
               f"{settings.teacher if not settings.no_kd else 'none (no KD)'}, budgets "
               f"{'/'.join(f'{b:g}' for b in settings.budgets())} epochs (eta {settings.eta}), "
               f"{settings.optimizer} ({settings.promotion} promotion, rungs trained {rungs_of(settings).name}, lr "
               f"{settings.lr_schedule}"
               + (f", each configuration the most parameters of {settings.prescreen_pool} proposals"
                  if settings.prescreen != "none" else "")
               + f"), space {settings.space}, parameter limit "
               f"{limit:,}" + (f", objective {settings.objective}" if settings.objective != "accuracy" else "")
               + "".join(f", {flag} {value:g}" for flag, value in (("--macs-limit", settings.macs_limit),
                                                                    ("--memory-limit", settings.memory_limit),
                                                                    ("--latency-limit", settings.latency_limit))
                         if value is not None), force=True)
    board.line(plan.describe(), force=True)
    projected = plan.seconds()
    if dry_run:
        from autokd.hpo.rung_probe import probe_lowest_rung

        rung = probe_lowest_rung(settings, limit, ds.num_classes, threads=plan.threads)
        board.line(rung.warning() or f"lowest rung ({rung.budget:g} epochs): {len(rung.accuracies)} probe "
                   f"configuration(s) scored {rung.scores()} (chance {100 * rung.chance:.0f}%): above chance "
                   f"({rung.seconds:.0f}s probe)", force=True)
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
        teacher_path, teacher_meta = teacher.resolvable(), teacher_summary(teacher)
        warn_if_weak_teacher(teacher_meta, ds.info.name, board)
    lock.acquire()
    check_empty(run_dir)
    space = settings.load_space()
    dead = space.with_max_nodes(settings.max_nodes).dead_dimensions()
    if dead:
        board.line("fixed, as they cannot change an architecture of this space (BOHB's model leaves them out): "
                   + ", ".join(f"{k} = {v:g}" for k, v in dead.items()), force=True)
    run = {"format": RUN_FORMAT, "settings": settings.to_json(), **space_record(settings, space),
           "param_limit": limit,
           "fixed_dimensions": dead, **({"objective_bounds": list(bounds)} if bounds else {}),
           "input_shape": list(ds.input_shape), "num_classes": ds.num_classes, "teacher_path": teacher_path,
           "teacher": teacher_meta, "train_images": plan.train_images, "val_images": plan.val_images,
           "workers": plan.workers, "threads_per_trial": plan.threads, "device": str(device),
           "plan": {**plan.__dict__, "projected_seconds": projected}, "versions": versions(),
           "host": socket.gethostname(), "cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu_name(),
           "command": sys.argv[:], "torch_threads_default": torch.get_num_threads(),
           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    write_json(run_dir / "run.json", run)
    space_cs = searched_space(run).to_configspace()
    write_atomic(run_dir / "space.json", cs_json.write(space_cs) + "\n")
    journal = Journal.create(run_dir / "journal.jsonl", {"created": run["created"], "space": run["space"],
                                                         "promotion": settings.promotion,
                                                         **journal_fields(settings)})
    return Prepared(settings, run, [], journal, plan, False)


def warn_if_weak_teacher(meta: dict[str, Any], dataset: str, board: Board) -> None:
    from autokd.data.registry import dataset_info

    acc = meta.get("test_acc")
    floor = meta.get("linear_baseline") or dataset_info(dataset).linear_baseline
    if acc is not None and floor is not None and acc < floor:
        board.line(f"WARNING: the teacher's test accuracy {100 * acc:.1f}% is below a linear classifier's "
                   f"{100 * floor:.1f}% on {dataset}: distilling from it will hold students back. Train a better "
                   f"one (`autokd teacher train`) or search with --no-kd.", force=True)


# what a resume may change: more brackets (to extend a search), another Ray cluster (where trials run does not change
# what they compute)
RESUMABLE = {"iterations", "ray_address"}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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
                        f"grow (to extend the search) and --ray-address move it to another cluster. Start a new "
                        f"--run-dir for other settings")
    if "iterations" in changed:
        if changed["iterations"] < settings.iterations:
            raise UserError(f"--iterations {changed['iterations']} is fewer than the run's {settings.iterations}; "
                            f"a resume can only add brackets")
        settings = replace(settings, iterations=changed["iterations"])
        check_size(settings)
        run.setdefault("extended", []).append({"iterations": settings.iterations, "at": _now()})
    if "ray_address" in changed:
        from autokd.ray_cluster import probe_address

        settings = replace(settings, ray_address=changed["ray_address"]).check()  # e.g. not with --executor local
        probe_address(settings.ray_address)  # an unreachable cluster fails in seconds, before run.json changes
        run.setdefault("moved", []).append({"ray_address": settings.ray_address, "at": _now()})
    if changed:
        run["settings"] = settings.to_json()
        write_json(run_dir / "run.json", run)
    if (run_dir / "journal.jsonl").exists():
        journal, _, events = Journal.resume(run_dir / "journal.jsonl")
    else:  # killed between run.json and the journal's header: nothing ran yet
        journal, events = Journal.create(run_dir / "journal.jsonl", {"created": run["created"]}), []
    gone = [p for p in str(run.get("teacher_path") or "").split(",") if p and not Path(p).is_file()]
    if gone and not settings.no_kd and ":" not in str(settings.teacher):
        raise UserError(f"the run's teacher {run['teacher_path']} is gone; put it back, then resume")
    return Prepared(settings, run, events, journal, None, True)
