"""Taking a run elsewhere: the winning architecture with how to rebuild and load it, and a copy of the run in an
Optuna storage (parameter importances, parallel coordinates and optuna-dashboard on autokd runs)."""

from __future__ import annotations

from pathlib import Path

from autokd.errors import RunDirError, UserError
from autokd.fsutil import read_json, write_atomic, write_json

README = """# {title}

- `arch.json`: the winning architecture (`autokd.arch/1`, arch_id {arch_id}, {params:,} parameters, input
  {shape}, {classes} classes), sampled from the generator with its seed {seed}.
- `generator.json`: its generator (θ, τ = {tau:.2f}, α = {alpha:.2f}) with the trial's recipe in
  `source`: retrain the family with `autokd retrain --generator generator.json`.

Rebuild the untrained network in PyTorch:

```python
from autokd.space.spec import load_arch
from autokd.nn.student import build_student
model = build_student(load_arch("arch.json"))   # the same parameter names and shapes every time
```

It was scored at {budget:g} epochs on {val_images} validation images: {val_acc:.2%}. Inputs are normalised with
the dataset's mean {mean} and std {std} (per channel, pixels scaled to [0, 1]).
"""


def _picked(run_dir: Path, best: dict, pick: str) -> dict:
    """best.json's content for the evaluation `pick` names on the front (autokd.report.pareto): its θ, τ/α and
    architecture seed from the journal's started record, the rest (recipe, data, teacher) the run's."""
    from autokd.report.data import kd_of_started, load_run_data, started_record
    from autokd.report.pareto import pick as pick_on_front

    run = load_run_data(run_dir)
    chosen = pick_on_front(run, pick)
    started = started_record(run.events, chosen["trial_id"])
    if started is None or started.get("seed") is None:
        raise RunDirError(f"{run_dir}/journal.jsonl has no started record of trial {chosen['trial_id']}; cannot "
                          f"rebuild the picked network")
    src = {**best["source"], "config_id": chosen["config_id"], "budget": chosen["budget"],
           "val_acc": chosen["val_acc"], "arch_id": chosen.get("arch_id"), "params": chosen.get("params"),
           "trial_id": chosen["trial_id"], "seed": started["seed"], "macs": chosen.get("macs"),
           "activation_mb": chosen.get("activation_mb"), "picked": pick,
           "recipe": {**best["source"].get("recipe", {}), "budget_epochs": chosen["budget"]}}
    return {**best, "generator": dict(started["theta"]), "kd": kd_of_started(started), "source": src}


def export_winner(run_dir: str | Path, out: str | Path, pick: str = "best") -> Path:
    """The winner (or the front's point `pick` names: see autokd.report.pareto.parse_pick) as arch.json,
    generator.json and a README."""
    from autokd.data.registry import dataset_info
    from autokd.space.generator import sample_architecture
    from autokd.space.genfile import generator_from_json

    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "best.json").is_file():
        raise RunDirError(f"{run_dir} has no best.json (no finished trial yet); nothing to export")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    obj = read_json(run_dir / "best.json", "best file")
    if pick != "best":
        obj = _picked(run_dir, obj, pick)
    gen = generator_from_json(obj, f"{run_dir}/best.json")
    run = read_json(run_dir / "run.json", "run file") if (run_dir / "run.json").is_file() else {}
    src = gen.source
    if src.get("seed") is None:
        raise RunDirError(f"{run_dir}/best.json does not record the winner's seed (written by an older autokd); "
                          f"rerun the search or use `autokd sample --seed N`")
    shape = tuple(run.get("input_shape") or dataset_info(src["dataset"]).input_shape)
    classes = int(run.get("num_classes") or dataset_info(src["dataset"]).num_classes)
    spec = sample_architecture(gen.generator, int(src["seed"]), shape, classes, gen.param_limit or 4_000_000,
                               merge=gen.merge_width)
    if src.get("arch_id") and spec.arch_id != src["arch_id"]:
        raise RunDirError(f"the architecture rebuilt from best.json ({spec.arch_id}) is not the winner "
                          f"({src['arch_id']}); the file was edited")
    info = dataset_info(src["dataset"])
    from autokd.space.plan import count_parameters

    write_atomic(out / "arch.json", spec.dumps())
    write_json(out / "generator.json", obj)
    title = ("The winner of an autokd search" if pick == "best" else
             f"An autokd search's pick on the accuracy/cost front (--pick {pick}: {src.get('macs') or 0:,} MACs, "
             f"{src.get('activation_mb') or 0:.3f} MB of activations per image)")
    write_atomic(out / "README.md", README.format(title=title,
        arch_id=spec.arch_id, params=count_parameters(spec), shape="×".join(map(str, shape)), classes=classes,
        seed=src["seed"], tau=gen.kd["temperature"], alpha=gen.kd["alpha"], budget=src.get("budget", 0),
        val_images=src.get("val_images") or "?", val_acc=src.get("val_acc") or 0.0, mean=list(info.mean),
        std=list(info.std)))
    return out


def export_optuna(run_dir: str | Path, storage: str, study_name: str | None = None) -> int:
    """Every finished or failed trial as an Optuna trial (value: validation accuracy, maximised; budget and ids as
    user attributes). Returns the number of trials written."""
    try:
        import optuna
    except ImportError:
        raise UserError("export-optuna needs optuna: pip install 'autokd[optuna]' (or pip install optuna)") from None
    from autokd.report.data import load_run_data
    from autokd.hpo.rundir import run_space

    run = load_run_data(run_dir)
    space = run_space({"space": "nago", **run.run}).with_max_nodes(run.settings.get("max_nodes"))
    dists = {}
    for p in space.params():
        if p.type == "int":
            dists[p.name] = optuna.distributions.IntDistribution(int(p.lower), int(p.upper))
        elif p.type == "float":
            dists[p.name] = optuna.distributions.FloatDistribution(p.lower, p.upper)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name or f"autokd-{run.name}"
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        raise UserError(f"study {name} already exists in {storage}; pass another --study-name") from None
    except Exception as exc:
        raise UserError(f"cannot open Optuna storage {storage} ({type(exc).__name__}: {exc})") from None
    trials = []
    for e in run.results:
        params = {**(e.get("theta") or {}), "temperature": e.get("temperature"), "alpha": e.get("alpha")}
        params = {k: v for k, v in params.items() if k in dists and v is not None}
        ok = e["event"] == "finished"
        trials.append(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params},
            value=float(e["val_acc"]) if ok else None,
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
            user_attrs={"budget_epochs": e["budget"], "config_id": list(e["config_id"]), "trial_id": e["trial_id"],
                        "params_count": e.get("params"), "seconds": e.get("seconds"), "error": e.get("error")}))
    study.add_trials(trials)
    return len(trials)
