"""The method's claims, measured with the product (issue 12). One command, driven by an experiment file, resumable:
every unit of work writes its result file (or run directory) once, and a rerun skips what exists.

    python benchmarks/study.py --experiment experiments/study-cpu.yaml --out runs/study            # all parts
    python benchmarks/study.py --experiment experiments/study-cpu.yaml --out runs/study --part rank
    python benchmarks/study_report.py runs/study --experiment experiments/study-cpu.yaml           # docs/results.md

Parts
- rank: the same configurations (θ, τ, α, architecture seed) at three budgets, in arms that differ in one thing
  each: KD against α = 0, and cosine (annealed per budget) against the step schedule (a low budget is a prefix of a
  high one, so one run is scored at every budget) or against continued wsd rungs (each budget continues the lower
  budget's trunk and is scored after its own decay branch, as `--rung-training continue` does).
- search: BOHB against random search, same brackets and evaluation budget, several seeds: real `autokd search` runs.
- families: after retraining, the best family found, a family from a random θ and hand-designed students at the same
  parameter limit, each with KD and without: real `autokd retrain` folders.
Change the experiment file (dataset, teacher, budgets, sizes) for the paper-scale version on GPUs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from autokd.fsutil import write_atomic, write_json

ARMS = {  # name → (KD on, lr schedule)
    "kd-cosine": (True, "cosine"), "nokd-cosine": (False, "cosine"), "kd-step": (True, "step"),
    "nokd-step": (False, "step"),
    # the cpu preset's rungs: wsd, each budget continuing the lower budget's undecayed trunk (rung_training continue)
    "kd-continue": (True, "wsd"),
    "nokd-continue": (False, "wsd"),  # issue 35: the same rungs without the teacher (α = 0)
    # issue 25: the paper's protocol: every budget trained from scratch (cosine annealed to it) with its own training
    # seed, the architecture the configuration's; the top budget's run is also scored at the lower budgets on the way
    # (recorded apart, as "prefix", for the secondary analysis)
    "kd-scratch": (True, "cosine"), "nokd-scratch": (False, "cosine"),
}
OWN_SEED_ARMS = ("kd-scratch", "nokd-scratch")


def load_study(path: str) -> dict[str, Any]:
    from autokd.config import load_experiment

    exp = load_experiment(path)
    if "study" not in exp:
        raise SystemExit(f"{path} has no study: section")
    return exp["study"]


# ------------------------------------------------------------------------------------------------ part: rank
def study_configs(st: dict[str, Any]) -> list[dict[str, Any]]:
    """The configurations every arm evaluates: drawn from the search space with the study's seed."""
    from autokd.space.configspace import OPTIONAL_THETA_KEYS, THETA_KEYS, config_to_plain, load_space
    from autokd.space.generator import sample_architecture

    cs = load_space(st.get("space", "nago")).with_max_nodes(st.get("max_nodes")).to_configspace(seed=st["seed"])
    out: list[dict[str, Any]] = []
    while len(out) < st["rank"]["configs"]:
        c = config_to_plain(cs.sample_configuration())
        theta = {k: c[k] for k in THETA_KEYS + OPTIONAL_THETA_KEYS if k in c}  # nago-small searches the head
        seed = 1000 + len(out)
        try:
            sample_architecture(theta, seed, (1, 28, 28), 10, st["param_limit"])
        except Exception:
            continue  # invalid generators are the search's business, not this study's
        out.append({"index": len(out), "theta": theta, "temperature": c["temperature"], "alpha": c["alpha"],
                    "seed": seed})
    return out


def _rank_job(job: dict[str, Any], states: Path) -> dict[str, Any]:
    """One (configuration, arm): cosine arms train once per budget; step arms once, scored at every budget; the
    continue arm once per budget from the lower budget's trunk (kept in `states` until the job ends)."""
    import shutil

    from autokd.recipe import Recipe
    from autokd.hpo.trial import TrialContext, TrialSpec, run_trial

    st, cfg, arm = job["study"], job["config"], job["arm"]
    kd, schedule = ARMS[arm]
    budgets = [float(b) for b in st["rank"]["budgets"]]
    recipe = Recipe(batch_size=st["recipe"]["batch_size"], lr=st["recipe"]["lr"],
                    weight_decay=st["recipe"]["weight_decay"], lr_schedule=schedule,
                    lr_step_epochs=st["rank"].get("step_epochs", 20.0),
                    augment_pad=st["recipe"].get("augment_pad", 0), augment_flip=st["recipe"].get("augment_flip", True),
                    eval_batch_size=st["recipe"].get("eval_batch_size", 256))
    own_seed = arm in OWN_SEED_ARMS
    ctx = TrialContext(dataset=st["dataset"], data_dir=st.get("data_dir"),
                       teacher_path=job["teacher_path"] if kd else None, param_limit=st["param_limit"],
                       subset=st.get("subset"), val_fraction=0.1, val_images=st.get("val_images"),
                       split_seed=st["seed"], device=st.get("device"), logit_cache=kd and st.get("logit_cache", True),
                       recipe=recipe, threads=1,
                       eval_at=tuple(budgets[:-1]) if schedule == "step" or own_seed else (),
                       state_dir=str(states) if schedule == "wsd" else None)
    alpha = cfg["alpha"] if kd else 0.0
    out = {"config": cfg["index"], "arm": arm, "results": {}, **({"prefix": {}} if own_seed else {})}
    runs = [budgets[-1]] if schedule == "step" else budgets
    for i, budget in enumerate(runs):
        continued = {"continue_from": runs[i - 1] if i else None, "keep_trunk": i < len(runs) - 1} \
            if schedule == "wsd" else {}
        if own_seed:  # one seed per (configuration, budget), shared by the KD and no-KD arms (common random numbers)
            continued = {"train_seed": 10 * cfg["seed"] + i + 1}
        spec = TrialSpec.of(0, (0, 0, cfg["index"]), cfg["theta"], cfg["temperature"], alpha, budget, cfg["seed"],
                         **continued)
        r = run_trial(spec, ctx)  # (a budget is scored on the way only at the lower budgets: train_config)
        out["results"][str(budget)] = {"val_acc": r.val_acc, "status": r.status, "error": r.error,
                                       "seconds": r.seconds, "params": r.params, "steps": r.steps,
                                       "continued_from_step": r.extra.get("continued_from_step")}
        for cp in r.checkpoints:
            nearest = min(budgets[:-1], key=lambda b: abs(b - cp["epoch"]))
            out["prefix" if own_seed else "results"][str(nearest)] = {
                "val_acc": cp["val_acc"], "status": "ok", "seconds": cp["seconds"], "params": r.params,
                "steps": cp["steps"]}
    shutil.rmtree(states, ignore_errors=True)
    return out


def _worker(jobs: Any, out_dir: str) -> None:
    """Takes (configuration, arm) jobs from the shared queue until it is empty: costs differ by configuration."""
    from autokd.executors import configure_process

    configure_process(1)
    while True:
        try:
            job = jobs.get(timeout=1.0)
        except queue.Empty:
            return
        path = Path(out_dir) / job["arm"] / f"config-{job['config']['index']:03d}.json"
        if path.is_file():
            continue
        t0 = time.time()
        result = _rank_job(job, path.with_suffix(".states"))
        write_json(path, result)
        accs = {b: round(v["val_acc"], 3) if v["val_acc"] is not None else None for b, v in result["results"].items()}
        print(f"rank: {job['arm']} config {job['config']['index']}: {accs} ({time.time() - t0:.0f}s)", flush=True)


def part_rank(st: dict[str, Any], out: Path) -> None:
    from autokd.data.dataset import load_dataset
    from autokd.kd.teacher import resolve_teacher

    ds = load_dataset(st["dataset"], st.get("data_dir"))
    teacher = resolve_teacher(st["teacher"], ds, device="cpu", quiet=True)
    configs = study_configs(st)
    write_json(out / "rank" / "configs.json", configs)
    limit = st["rank"].get("arm_configs") or {}
    jobs = [{"study": st, "config": c, "arm": arm, "teacher_path": str(teacher.path)}
            for c in configs for arm in st["rank"]["arms"] if c["index"] < limit.get(arm, len(configs))]
    workers = int(st.get("workers") or os.cpu_count() or 1)
    ctx = mp.get_context("spawn")
    todo = ctx.Queue()
    for job in jobs:
        todo.put(job)
    procs = [ctx.Process(target=_worker, args=(todo, str(out / "rank"))) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


# ------------------------------------------------------------------------------------------------ part: search
def part_search(st: dict[str, Any], out: Path) -> None:
    from autokd.cli import main as autokd

    sv = st["search"]
    for optimizer in ("bohb", "random"):
        for seed in sv["seeds"]:
            run = out / "search" / f"{optimizer}-seed{seed}"
            flags = [f"--{k.replace('_', '-')}={v}" for k, v in (sv.get("flags") or {}).items()]
            args = ["search", "--run-dir", str(run), "--quiet"]
            if (run / "search_done").is_file():
                continue
            if (run / "run.json").is_file():
                args.append("--resume")
            else:
                args += ["--dataset", st["dataset"], "--preset", sv.get("preset", "cpu"), "--optimizer", optimizer,
                         "--seed", str(seed), *flags]
            t0 = time.time()
            rc = autokd(args)
            if rc != 0:
                raise SystemExit(f"search {run} ended with exit code {rc}")
            write_atomic(run / "search_done", f"{time.time() - t0:.0f}s\n")
            print(f"search: {optimizer} seed {seed} done in {time.time() - t0:.0f}s", flush=True)


# ------------------------------------------------------------------------------------------------ part: families
def part_families(st: dict[str, Any], out: Path, searched_generator: str | None = None) -> None:
    from autokd.cli import main as autokd

    fam = st["families"]
    searched = Path(searched_generator) if searched_generator else best_search_run(out) / "best.json"
    random_gen = out / "families" / "random-generator.json"
    if not random_gen.is_file():
        write_random_generator(st, random_gen)
    students = {"searched": ["--generator", str(searched)],
                "random": ["--generator", str(random_gen)],
                **{name: ["--student", name, "--dataset", st["dataset"], "--param-limit", str(st["param_limit"])]
                   for name in fam.get("handmade", ["resnet"])}}
    common = ["--samples", str(fam["samples"]), "--epochs", str(fam["epochs"]), "--preset", "cpu", "--workers",
              str(st.get("workers", 2))]
    if fam.get("subset"):
        common += ["--subset", str(fam["subset"])]
    for name, source in students.items():
        for kd in (True, False):
            folder = out / "families" / f"{name}-{'kd' if kd else 'nokd'}"
            args = ["retrain", *source, *common, "--out", str(folder)]
            args += ["--teacher", st["teacher"]] if kd else ["--no-kd"]
            if kd and name not in ("searched", "random"):
                args += ["--alpha", str(fam.get("handmade_alpha", 0.9)), "--temperature",
                         str(fam.get("handmade_temperature", 4.0))]
            t0 = time.time()
            if autokd(args) != 0:
                raise SystemExit(f"retrain {folder} failed")
            print(f"families: {folder.name} in {time.time() - t0:.0f}s", flush=True)


def best_search_run(out: Path) -> Path:
    runs = sorted((out / "search").glob("bohb-seed*"))
    best = max(runs, key=lambda r: json.loads((r / "best.json").read_text())["source"]["val_acc"])
    return best


def write_random_generator(st: dict[str, Any], path: Path) -> None:
    """A family from a random θ (and the searched family's τ/α is not used: this one draws its own)."""
    from autokd.space.configspace import OPTIONAL_THETA_KEYS, THETA_KEYS, config_to_plain, load_space

    space = st.get("space", "nago")
    cs = load_space(space).with_max_nodes(st.get("max_nodes")).to_configspace(seed=st["seed"] + 777)
    c = config_to_plain(cs.sample_configuration())
    theta = {k: c[k] for k in THETA_KEYS + OPTIONAL_THETA_KEYS if k in c}
    write_json(path, {"format": "autokd.generator/1", "space": space, "generator": theta,
                      "kd": {"temperature": c["temperature"], "alpha": c["alpha"]},
                      "param_limit": st["param_limit"],
                      "source": {"dataset": st["dataset"], "teacher": st["teacher"], "note": "random θ"}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--part", choices=("rank", "search", "families"), action="append")
    ap.add_argument("--searched-generator", help="families part: the searched family's best.json (default: the best "
                    "BOHB run of the search part)")
    ap.add_argument("--workers", type=int, help="processes of the rank part (default: the experiment file's)")
    args = ap.parse_args()
    st = load_study(args.experiment)
    if args.workers:
        st["workers"] = args.workers
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "study.yaml", yaml.safe_dump(st))
    parts = args.part or ["rank", "search", "families"]
    for part in parts:
        t0 = time.time()
        if part == "families":
            part_families(st, out, args.searched_generator)
        else:
            {"rank": part_rank, "search": part_search}[part](st, out)
        print(f"part {part} done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
