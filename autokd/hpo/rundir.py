"""The run directory of a search: whether a path can hold one, run.json (written at the start, validated on
resume), the space it searches, best.json, and the machine facts run.json records."""

from __future__ import annotations

import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from autokd._version import __version__
from autokd.errors import RunDirError, UserError
from autokd.fsutil import read_json, write_json
from autokd.recipe import DEFAULT_KD, RECIPE_KEYS
from autokd.runlock import LOCK_NAME
from autokd.hpo.brackets import BracketDriver
from autokd.hpo.trial import TrialResult
from autokd.space.configspace import (BUILTIN_SPACES, NO_KD_SECTION, kd_of, resolve_space, space_definition,
                                      theta_of)
from autokd.space.genfile import GENERATOR_FORMAT
from autokd.validate import Field, check_object

RUN_FORMAT = "autokd.run/1"


def versions() -> dict[str, str]:
    """Versions of the packages a run depends on, from their installed metadata."""
    from importlib import metadata

    out = {"autokd": __version__, "python": platform.python_version()}
    for dist in ("torch", "numpy", "ConfigSpace", "hpbandster", "ray", "networkx", "scipy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


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
        check_empty(run_dir)  # again under the lock, before anything is written


def check_empty(run_dir: Path) -> None:
    if (run_dir / "run.json").exists() or (run_dir / "journal.jsonl").exists():
        raise RunDirError(f"{run_dir} already holds a run; continue it with --resume or choose another --run-dir")
    if any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise RunDirError(f"{run_dir} is not empty; choose a new or empty --run-dir")


RUN_FIELDS = {
    "format": Field("str", required=True, choices=(RUN_FORMAT,)), "settings": Field("dict", required=True),
    "space": Field("str", required=True), "space_definition": Field("dict", nullable=True),
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


def space_record(settings: Any, space: Any) -> dict[str, Any]:
    """What run.json records of the space: a built-in's name; a user's space file by its name and its definition,
    copied in, so that resume, report, export and best.json's readers never need the file again."""
    if settings.space in BUILTIN_SPACES:
        return {"space": settings.space}
    definition = space_definition(settings.search_space)
    if settings.no_kd:
        definition = {**definition, "kd": NO_KD_SECTION}
    return {"space": space.name, "space_definition": {**definition, "name": space.name}}


def run_space(run: dict[str, Any]) -> Any:
    """The SearchSpace of a run, as recorded (`space_record`); a run.json naming an unknown space without its
    definition is a one-line error."""
    try:
        return resolve_space(run["space"], run.get("space_definition"))
    except UserError as exc:
        raise RunDirError(f"run.json: {exc}; restore the file the search wrote") from None


def searched_space(run: dict[str, Any]) -> Any:
    """The space a run searches: its recorded space, node cap, and the dimensions fixed as dead when it was created (a
    run of an earlier release has no `fixed_dimensions` and searches every dimension, as it did)."""
    space = run_space(run).with_max_nodes(run["settings"].get("max_nodes"))
    fixed = run.get("fixed_dimensions") or {}
    names = {p.name for p in space.generator}
    if any(k not in names or isinstance(v, bool) or not isinstance(v, (int, float)) for k, v in fixed.items()):
        raise RunDirError(f"run.json: fixed_dimensions must map generator keys of {run['space']} to numbers, got "
                          f"{fixed}; restore the file the search wrote")
    return space.fixing(fixed)


def standard_error(acc: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on n images."""
    return math.sqrt(max(acc * (1 - acc), 0.0) / n) if n else float("nan")


def _searched_loss(cfg: dict[str, Any]) -> dict[str, Any]:
    """best.json's kd.loss and that loss's parameters, where the space searched them."""
    kd = kd_of(cfg)
    return {"loss": kd["kd_loss"], **kd["kd_params"]} if kd else {}


def write_best(run_dir: Path, driver: BracketDriver, best: TrialResult, run: dict[str, Any]) -> dict[str, Any]:
    """best.json: the winning generator, its τ/α, and the winning trial (architecture seed and recipe), so that
    `sample`, `evaluate`, `retrain` and the report rebuild the very network that won."""
    cfg = driver.configs[tuple(best.config_id)]
    st = run["settings"]
    val_images = best.extra.get("val_images") or run.get("val_images")
    recipe = {k: st.get(k) for k in (*RECIPE_KEYS, "subset", "val_images", "val_fraction") if k in st}
    obj = {"format": GENERATOR_FORMAT, "space": run["space"],
           **({"space_definition": run["space_definition"]} if run.get("space_definition") else {}),
           "merge_width": st.get("merge_width", "cell"),
           "generator": theta_of(cfg),
           "kd": {"temperature": float(cfg.get("temperature", DEFAULT_KD.temperature)),
                  "alpha": float(cfg.get("alpha", 0.0)), **_searched_loss(cfg)},
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
