"""Settings: the search's (one frozen dataclass whose fields declare every setting; the recipe part is
`autokd.recipe.Recipe`), the table derived from it that validates every value wherever it comes from (CLI flags,
presets, experiment files, run.json), the presets of search and retrain, and experiment files (experiments/*.yaml).

Override order, for search and retrain alike: the preset's values < an experiment file's section < flags."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from autokd.errors import UserError
from autokd.recipe import Recipe
from autokd.resources import SPACE_FILE_SUFFIXES, builtin_spaces, resource_dir
from autokd.rungs import RUNG_TRAININGS, rungs_of
from autokd.space.prescreen import PRESCREENS
from autokd.validate import Field, check_depth, check_object, check_value, setting, settings_table

_DEVICE_HELP = "use cpu, cuda, cuda:N or auto"
_COUNT = Field("int", min=1, max=1024, nullable=True)
# Where jobs run, for a search's trials and a retrain's samples alike (autokd.executors; `process` is `local` with
# --workers > 1); a GPU share and a cluster address are Ray's
_EXECUTOR = Field("str", choices=("auto", "local", "ray"))
_GPU_SHARE = Field("float", above=0, max=64)
_RAY_ADDRESS = Field("str", nullable=True)


@dataclass(frozen=True, kw_only=True)
class SearchSettings(Recipe):
    """Every setting of a search, each declared once (here, or in `Recipe` for how students train): type, range,
    help and default. The defaults are the paper's protocol; presets and experiment files change values."""

    dataset: str = setting("fashion-mnist", Field("str"), "dataset name (see `autokd datasets`)")
    teacher: str | None = setting(None, Field("str", nullable=True),
                                  "built-in name (vgg7, darts, resnet18, wrn-40-2), an autokd checkpoint, a "
                                  "TorchScript/export file with a PATH.json sidecar, or module:callable; several, comma-"
                                  "separated: an ensemble, probabilities averaged (default: the "
                                  "dataset's default teacher: the shipped vgg7 for fashion-mnist, else darts)")
    teacher_weights: str | None = setting(None, Field("str", nullable=True), "state dict for a module:callable teacher")
    no_kd: bool = setting(False, Field("bool"), "the NAGO baseline: no teacher, alpha fixed at 0", flag=False)
    search_space: str = setting("nago", Field("str", choices=tuple(n for n in builtin_spaces()
                                                                    if not n.endswith("-nokd")),
                                              or_files=SPACE_FILE_SUFFIXES),
                                "nago: the paper's space; nago-small: autokd's for small limits (1-4 nodes a level, a "
                                "searched head width; the cpu preset's); nago-small-losses: the same with the KD "
                                "loss searched too (hinton, dkd, dist); or your own space file (a .yaml in the "
                                "format of search_spaces/, docs/search-space.md), copied into the run")
    min_budget: float = setting(30.0, Field("float", above=0, max=100_000), "lowest budget in epochs (paper 30)")
    max_budget: float = setting(120.0, Field("float", above=0, max=100_000), "highest budget in epochs (paper 120)")
    eta: int = setting(2, Field("int", min=2, max=16), "halving rate (paper 2)")
    iterations: int = setting(63, Field("int", min=1, max=100_000),
                              "brackets to run (paper 63: 294 evaluations); with --resume, extends a run")
    optimizer: str = setting("bohb", Field("str", choices=("bohb", "random", "tpe")),
                             "proposals from BOHB's model (hpbandster's KDE), uniformly at random in the same "
                             "brackets, or from Optuna's TPE per budget (autokd.hpo.proposers)")
    objective: str = setting("accuracy", Field("str", choices=("accuracy", "accuracy+macs", "accuracy+memory",
                                                                "accuracy+latency")),
                             "what the search minimises: validation error (the paper), or error and MACs, "
                             "activation memory or batch-1 latency per image, weighted differently in each "
                             "bracket (ParEGO) so the report's front fills", neutral="accuracy")
    bracket_rounding: str = setting("hyperband", Field("str", choices=("hyperband", "hpbandster")),
                                    "first-rung size rounded up as in Hyperband, or down as in hpbandster")
    promotion: str = setting("sync", Field("str", choices=("sync", "async")),
                             "sync: a rung is chosen once the rung below is complete (the paper's); async: a "
                             "configuration moves up as soon as it is in the top 1/eta of its rung so far (ASHA), so "
                             "workers do not wait at rung barriers")
    rung_training: str = setting("scratch", Field("str", choices=tuple(RUNG_TRAININGS)),
                                 "scratch: each budget trains from the start (the paper's); continue: a promoted "
                                 "configuration continues its lower rung's constant-rate trunk (needs --lr-schedule "
                                 "wsd; docs/training.md)")
    prescreen: str = setting("none", Field("str", choices=PRESCREENS),
                             "a training-free pre-screen: params draws --prescreen-pool proposals for each new "
                             "configuration and trains the one whose student has the most parameters under the limit "
                             "(milliseconds each; docs/search-space.md)", neutral="none")
    prescreen_pool: int = setting(4, Field("int", min=2, max=1000), "proposals per new configuration that "
                                  "--prescreen chooses among", neutral=4)
    refill_failed: bool = setting(True, Field("bool"), "fill a rung left short by failures with new proposals, as "
                                  "hpbandster does")
    min_points_in_model: int | None = setting(None, Field("int", min=1, max=10_000, nullable=True),
                                              "results a budget needs before BOHB's model proposes (hpbandster: "
                                              "dimensions + 1)")
    random_fraction: float = setting(1 / 3, Field("float", min=0, max=1),
                                     "share of random proposals once the model exists (hpbandster 1/3)")
    executor: str = setting("auto", _EXECUTOR,
                            "local: this machine (--workers processes); ray: a Ray cluster; auto: ray with CUDA or "
                            "--ray-address, else local")
    workers: int | None = setting(None, _COUNT, "trials at once on this machine (default: one single-thread worker "
                                  "per core on a CPU)")
    threads_per_trial: int | None = setting(None, _COUNT, "torch threads per trial (default: cores / workers)")
    gpus_per_trial: float = setting(1.0, _GPU_SHARE, "fraction of a GPU per trial (0.25: four per GPU)")
    ray_address: str | None = setting(None, _RAY_ADDRESS, "join this Ray cluster (auto or HOST:6379)")
    param_limit: int | None = setting(None, Field("int", min=1000, max=10**9, nullable=True),
                                      "hard limit on student parameters (default 4M small images, 6M large; cpu "
                                      "100k)")
    macs_limit: float | None = setting(None, Field("float", above=0, max=1e13, nullable=True),
                                       "hard limit on a student's multiply-accumulates per image (2e7 or 20000000): a "
                                       "larger one is "
                                     "rejected before training", neutral=None)
    memory_limit: float | None = setting(None, Field("float", above=0, max=10**6, nullable=True),
                                         "hard limit on a student's activation memory per image, MB (fp32: what a "
                                         "training step keeps): a larger one is rejected before training",
                                         neutral=None)
    latency_limit: float | None = setting(None, Field("float", above=0, max=1e6, nullable=True),
                                          "hard limit on a student's latency at batch 1, ms (ONNX Runtime on this "
                                          "CPU, the trial's threads, measured once per architecture before "
                                          "training): a slower one is rejected", neutral=None)
    data_dir: str | None = setting(None, Field("str", nullable=True), "look for the dataset's files here first")
    seed: int = setting(0, Field("int", min=0, max=2**31 - 1), "seed of the proposals, architectures and split")
    subset: int | None = setting(None, Field("int", min=2, max=10**9, nullable=True),
                                 "train on N images of the training split (default: all)")
    val_images: int | None = setting(None, Field("int", min=10, max=10**9, nullable=True),
                                     "validation split size (default: --val-fraction of the training set; cpu 5000)")
    val_fraction: float = setting(0.1, Field("float", above=0, max=0.9), "validation share of the training set",
                                  flag=False)
    smoke_teacher: bool = setting(False, Field("bool"), "train a missing built-in teacher at smoke size", flag=False)
    max_nodes: int | None = setting(None, Field("int", min=3, max=10, nullable=True),
                                    "cap every graph level's node count")
    merge_width: str = setting("cell", Field("str", choices=("cell", "predecessor")),
                               "where a cell's inputs differ in channels, project them to the cell's width or to the "
                               "highest-id predecessor's (the reference)")
    logit_cache: str = setting("auto", Field("str", choices=("auto", "on", "off")),
                               "teacher logits per augmentation view, computed once (auto: on with CUDA)")
    device: str | None = setting(None, Field("str", nullable=True, help=_DEVICE_HELP),
                                 "cpu, cuda, cuda:N (default: cuda if available)")
    preset: str = setting("paper", Field("str", choices=("smoke", "cpu", "paper")),
                          "cpu: about 10 minutes on 2 CPU cores; smoke: a minute (tests); paper: the paper's "
                          "protocol, a GPU job", flag=False)

    @property
    def space(self) -> str:
        """The space searched: a built-in name, or the path of the user's space file."""
        if self.no_kd and not self.search_space.endswith(SPACE_FILE_SUFFIXES):
            # without a teacher no KD setting is searched (a searched loss is moot)
            return f"{self.search_space.removesuffix('-losses')}-nokd"
        return self.search_space

    def load_space(self) -> Any:
        """The SearchSpace searched (autokd.space.configspace), its file read now: at a search's start (a resumed run
        reads the definition run.json recorded)."""
        from autokd.space.configspace import load_space

        space = load_space(self.space)
        return space.without_kd() if self.no_kd and self.search_space.endswith(SPACE_FILE_SUFFIXES) else space

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, where: str = "settings") -> "SearchSettings":
        """Every field's type and range, then the checks across fields."""
        check_object(asdict(self), SETTING_FIELDS, where)
        if not self.min_budget <= self.max_budget:
            raise UserError(f"budgets out of order: need --min-budget ({self.min_budget:g}) <= --max-budget "
                            f"({self.max_budget:g})")
        if not 0 < self.gpus_per_trial <= 1 and not float(self.gpus_per_trial).is_integer():
            raise UserError(f"--gpus-per-trial must be a fraction in (0, 1] or a whole number, got "
                            f"{self.gpus_per_trial}")
        if not self.no_kd and self.teacher is None and self.dataset is None:
            raise UserError("a KD search needs --teacher; or pass --no-kd")
        rungs = math.floor(math.log(self.max_budget / self.min_budget, self.eta) + 1e-9) + 1
        if rungs > 12:
            raise UserError(f"--min-budget {self.min_budget:g} and --max-budget {self.max_budget:g} at eta "
                            f"{self.eta} make {rungs} rungs; use at most 12 (raise --min-budget)")
        check_device(self.device)
        problem = rungs_of(self).check(self.lr_schedule)
        if problem:
            raise UserError(problem)
        if self.ray_address and self.executor == "local":
            raise UserError("--ray-address names a Ray cluster; it needs --executor ray (or auto), not local")
        return self

    def budgets(self) -> list[float]:
        """Rung budgets from max down by factors of η: s_max = ⌊log_η(max/min)⌋ (Hyperband, Li et al. 2017)."""
        s_max = int(math.floor(math.log(self.max_budget / self.min_budget, self.eta) + 1e-9))
        return [self.max_budget * self.eta ** (-s) for s in range(s_max, -1, -1)]


# What every setting may hold: the same table checks CLI flags, presets, experiment files and run.json.
SETTING_FIELDS: dict[str, Field] = settings_table(SearchSettings)


def check_device(device: str | None) -> None:
    """A device string torch understands and this machine has."""
    if device is None or device in ("auto", "cpu"):
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device!r} is not a device; {_DEVICE_HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        raise UserError(f"--device {device!r} is not supported; {_DEVICE_HELP}")


# Presets. `cpu` is the README's main job: sized from measurements on a 2-core machine (docs/benchmarks.md) so a
# complete search of real Fashion-MNIST finishes in about 10 minutes there. `smoke` is for tests: a minute. `paper`
# is the paper's protocol (a GPU job).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"min_budget": 30.0, "max_budget": 120.0, "eta": 2, "iterations": 63, "subset": None,
              "param_limit": None, "smoke_teacher": False},
    # two brackets of 0.2/0.6/1.8/5.4 epochs of 10,000 images (η = 3): the 27 configurations of the first rung give
    # BOHB's model its 20 results at one budget, the second bracket fills the worker the top rung leaves idle, and
    # continued wsd rungs pay for it (docs/benchmarks.md, "Scheduling": 9.0–11.7 min, 12–16 of 39 model-based;
    # 8,000 images measured 8.6 min but 87.2% on seed 0, under the 88% the preset promises)
    # Kept after the ground-truth table (40 configurations retrained, docs/results.md): the 0.2-epoch rung is at chance
    # by its accuracy, but raising it to 0.6 at no more training loses 0.16 points of the pick's target in the replay
    # (benchmarks/sh_replay.py); the 5.4-epoch rung is the best cheap predictor measured (Spearman +0.40)
    "cpu": {"min_budget": 0.2, "max_budget": 5.4, "eta": 3, "iterations": 2, "subset": 10_000,
            "promotion": "async", "lr_schedule": "wsd", "rung_training": "continue",
            # autokd's small-limit space: its own node bounds (no max_nodes cap), a searched head width
            "val_images": 5000, "param_limit": 100_000, "search_space": "nago-small", "batch_size": 128, "lr": 0.1,
            "weight_decay": 5e-4, "weight_decay_scope": "all", "augment_pad": 0, "augment_flip": True,
            "logit_cache": "on", "eval_batch_size": 256, "smoke_teacher": False},
    "smoke": {"min_budget": 1.0, "max_budget": 4.0, "eta": 2, "iterations": 3, "subset": 1500,
              "param_limit": 100_000, "smoke_teacher": True, "batch_size": 64, "lr": 0.05, "max_nodes": 4,
              "workers": 1},
}


_SEED = Field("int", min=0, max=2**31 - 1)


@dataclass(frozen=True, kw_only=True)
class RetrainSettings(Recipe):
    """Every setting of a retrain, each declared once (here, or in `Recipe` for how samples train). The recipe's
    values for a retrain come from its preset (`retrain_preset` in autokd.config: a long, DARTS-like final training
    unless the search's preset says otherwise)."""

    dataset: str = setting(None, Field("str"), "default: the generator's source.dataset")
    teacher: str | None = setting(None, Field("str", nullable=True), "default: the generator's source.teacher")
    param_limit: int = setting(None, Field("int", min=1000, max=10**9), "default: the generator's, else 4M / 6M")
    samples: int = setting(8, Field("int", min=1, max=1000), "architectures to train (default: the search preset's: "
                           "paper 8, cpu 3)", same_result=True)
    epochs: float = setting(600.0, Field("float", above=0, max=100_000), "epochs per sample (default: the preset's: "
                            "paper 600, cpu 7)")
    seed: int = setting(0, _SEED, "fresh sample i uses seed + i")
    winner_seed: int | None = setting(None, Field("int", min=0, max=2**31 - 1, nullable=True),
                                      "the search's winning architecture seed: sample 0 (None: seed + 0)", flag=False)
    data_dir: str | None = setting(None, Field("str", nullable=True), "default: the generator's source.data_dir")
    device: str | None = setting(None, Field("str", nullable=True), "cpu, cuda, cuda:N")
    subset: int | None = setting(None, Field("int", min=2, max=10**9, nullable=True),
                                 "train on N images (quick checks; default: the whole training set)")
    smoke_teacher: bool = setting(False, Field("bool"), "train a missing built-in teacher at smoke size", flag=False)
    teacher_weights: str | None = setting(None, Field("str", nullable=True), "state dict for a module:callable "
                                          "teacher")
    temperature: float | None = setting(None, Field("float", min=1, max=10, nullable=True),
                                        "KD temperature (default: the generator's)")
    alpha: float | None = setting(None, Field("float", min=0, max=1, nullable=True),
                                  "KD weight (default: the generator's; 0 trains without KD)")
    student: str | None = setting(None, Field("str", nullable=True), "a hand-designed student instead (resnet, "
                                  "cnn), the widest under the limit")
    workers: int = setting(1, Field("int", min=1, max=256), "samples trained at once on this machine", same_result=True)
    threads_per_sample: int | None = setting(None, Field("int", min=1, max=256, nullable=True),
                                             "torch threads per sample", flag=False, same_result=True)
    logit_cache: str = setting("auto", Field("str", choices=("auto", "on", "off")),
                               "on, off, auto (on with CUDA, or on a CPU when the views are few)", flag=False,
                               same_result=True)
    baselines: str | None = setting(None, Field("str", nullable=True),
                                    "hand-designed students trained next to the family under the same limit, teacher "
                                    "and recipe, comma-separated (resnet, cnn), or none; the summary says whether the "
                                    "family beats the best of them (default: the preset's: cpu resnet, paper none)",
                                    same_result=True)
    ablate_kd: bool = setting(False, Field("bool"),
                              "also train every architecture (the family's and each baseline's) without distillation, "
                              "same seeds, data order and recipe; the summary says whether KD paid, per group and "
                              "pooled, with a 95% CI (doubles the samples)", same_result=True)
    int8: bool = setting(True, Field("bool"), "also write student.int8.onnx (post-training static quantisation, "
                         "calibrated on 512 training images) with its test accuracy and latency against the fp32 file "
                         "(needs onnxruntime)", same_result=True)
    executor: str = setting("auto", _EXECUTOR, "local: this machine (--workers processes); ray: Ray tasks, as many "
                            "at once as the cluster fits; auto: ray with --ray-address, else local", same_result=True)
    ray_address: str | None = setting(None, _RAY_ADDRESS, "join this Ray cluster (HOST:PORT or auto) and train the "
                                      "samples there", same_result=True)
    gpus_per_trial: float = setting(1.0, _GPU_SHARE, "fraction of a GPU per sample with --executor ray",
                                    same_result=True)

    def executor_kind(self) -> str:
        """local or ray: what `auto` means for a retrain (no GPU rule: a retrain's samples are few)."""
        return self.executor if self.executor != "auto" else ("ray" if self.ray_address else "local")


RETRAIN_FIELDS: dict[str, Field] = settings_table(RetrainSettings)

# The settings only distillation reads. Without a teacher they cannot change a sample's result, so they are reset
# to their defaults there: a sample trained without KD has one identity (and is reused) whichever KD loss, temperature
# or teacher the run would have distilled with, e.g. by a `--kd-loss dkd --ablate-kd` run from a hinton one.
KD_ONLY_SETTINGS = ("temperature", "kd_loss", "dkd_alpha", "dkd_beta", "dist_beta", "dist_gamma", "at_beta",
                    "teacher_weights")


def without_kd(s: RetrainSettings) -> RetrainSettings:
    """The same retrain without distillation: α = 0, no teacher, every KD-only setting at its default."""
    defaults = {f.name: f.default for f in fields(RetrainSettings) if f.name in KD_ONLY_SETTINGS}
    return replace(s, alpha=0.0, teacher=None, **defaults)


# What `retrain` does after a search with each preset (the search's run.json names its preset). Every retrain preset
# starts from the paper's, the DARTS-like final training (Liu et al. 2019: wd 3e-4, clip 5, cutout 16).
RETRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"samples": 8, "epochs": 600.0, "weight_decay": 3e-4, "grad_clip": 5.0, "cutout": 16},
    # cpu: two samples side by side (one per core), flips only so the teacher's logits are cached (2 views); three
    # of the family and three of the hand-designed ResNet-8, so the summary can say whether searching paid
    "cpu": {"samples": 3, "epochs": 7.0, "baselines": "resnet", "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4,
            "augment_pad": 0, "augment_flip": True, "cutout": 0, "grad_clip": None, "workers": 2,
            "threads_per_sample": 1},
    "smoke": {"samples": 2, "epochs": 1.0, "subset": 2000, "cutout": 0, "augment_pad": 2},
}


def retrain_preset(name: str | None) -> dict[str, Any]:
    """A retrain preset's values: the paper's, then the named preset's (a search preset without one: the paper's)."""
    return {**RETRAIN_PRESETS["paper"], **RETRAIN_PRESETS.get(name or "paper", {})}


def settings_from_dict(values: dict[str, Any], where: str) -> SearchSettings:
    """Settings from a mapping whose every key is a setting; types and ranges are checked."""
    checked = check_object(values, SETTING_FIELDS, where)
    return replace(SearchSettings(), **checked)


def apply_preset(name: str, overrides: dict[str, Any], where: str = "settings") -> SearchSettings:
    """The preset's values, then every explicitly given override (None means not given)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    values: dict[str, Any] = {**PRESETS[name], "preset": name}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return settings_from_dict(values, where)


def search_settings(given: dict[str, Any], preset: str | None = None, experiment: str | None = None
                    ) -> SearchSettings:
    """A search's settings, in the one override order: the preset's values (paper by default, or the experiment
    file's `preset:`), then the experiment file's `search:` section, then `given` (flags or keyword arguments)."""
    values: dict[str, Any] = {}
    where = "settings"
    if experiment:
        exp = load_experiment(experiment)
        preset = preset or exp.get("preset")
        values.update(exp.get("search") or {})
        where = f"experiment {experiment} with flags"
    values.update(given)
    if not values.get("dataset"):
        raise UserError("give --dataset NAME (or --experiment NAME, or --resume with --run-dir)")
    settings = apply_preset(preset or "paper", values, where)
    return replace(settings, teacher=None) if settings.no_kd else settings  # the baseline never loads a teacher


EXPERIMENT_KEYS = {"preset": Field("str", choices=tuple(PRESETS)), "search": Field("dict"),
                   "retrain": Field("dict"), "study": Field("dict"), "description": Field("str")}


def experiment_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        return path
    shipped = resource_dir("experiments") / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = ", ".join(shipped_experiments())
        raise UserError(f"no experiment named {name_or_path!r}; shipped: {names} (or give a .yaml path)")
    return shipped


def shipped_experiments() -> list[str]:
    return sorted(p.stem for p in resource_dir("experiments").glob("*.yaml"))


def load_experiment(name_or_path: str) -> dict[str, Any]:
    """An experiment file (`experiments/NAME.yaml` or a path), validated as a whole: top-level keys, then every
    `search:` key against the settings table (the `retrain:` and `study:` sections are checked by their readers)."""
    path = experiment_path(name_or_path)
    where = f"experiment file {path}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{where} not found; shipped: {', '.join(shipped_experiments())}") from None
    except OSError as exc:
        raise UserError(f"{where} cannot be read ({exc.strerror or exc})") from None
    try:
        obj = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{where} is not UTF-8 text; save it as UTF-8 YAML") from None
    except (yaml.YAMLError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{where}: invalid YAML ({first})") from None
    check_depth(obj, where)
    obj = check_object(obj, EXPERIMENT_KEYS, where)
    if "search" in obj:
        search = dict(obj["search"])
        unknown = sorted(str(k) for k in search if k not in SETTING_FIELDS)
        if unknown:
            raise UserError(f"{where}: unknown key(s) in search: {', '.join(unknown)}")
        for key, value in search.items():
            check_value(value, SETTING_FIELDS[key], f"search.{key}", where)
    return obj
