"""`autokd evaluate`: train and score one student (sampled from a generator, or from an architecture file)."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from typing import Any


from autokd.errors import UserError
from autokd.progress import Board


def evaluate_one(dataset: str | None, board: Board, *, generator: str | None = None, arch: str | None = None,
                 teacher: str | None = None, teacher_weights: str | None = None, epochs: float | None = None,
                 subset: int | None = None, seed: int | None = None, param_limit: int | None = None,
                 temperature: float | None = None, alpha: float | None = None, batch_size: int | None = None,
                 lr: float | None = None, lr_schedule: str | None = None, preset: str = "paper",
                 device: str | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Sample (from a generator file) or load (an architecture file) one student, train it for `epochs` on a
    seeded split of `dataset`, with KD from `teacher` when given, and score it on the validation part. Returns the
    training result with the architecture, seed and split sizes; a training failure is status "failed".

    A generator file written by a search (best.json: `source.recipe`, `source.split_seed`) is reproduced as its
    trial ran: the search's dataset, split, recipe, budget, teacher, architecture seed and KD loss (a space that
    searched the loss records it in `kd`); each argument given overrides its part."""
    from autokd.data.dataset import load_dataset
    from autokd.factory import Architecture, DataSplit, TeacherSource, fit, prepare
    from autokd.kd.teacher import resolve_teacher
    from autokd.space.genfile import default_param_limit, load_generator
    from autokd.space.generator import sample_architecture
    from autokd.recipe import DEFAULT_KD, RECIPE_KEYS, Recipe
    from autokd.space.spec import load_arch
    from autokd.train import KDConfig, TrainConfig

    gen = load_generator(generator) if generator else None
    src = (gen.source or {}) if gen else {}
    searched = src.get("recipe") if isinstance(src.get("recipe"), dict) else None  # the search's own trial
    dataset = dataset or src.get("dataset")
    if not dataset:
        raise UserError("give --dataset NAME (the generator file names none in source.dataset)")
    ds = load_dataset(dataset, data_dir or src.get("data_dir"))
    kd_settings = asdict(DEFAULT_KD)
    recipe = Recipe(**{k: searched[k] for k in RECIPE_KEYS if k in searched}) if searched else Recipe()
    given_seed = seed
    seed, seed_from = (given_seed, "--seed") if given_seed is not None else (0, "default")
    if gen is not None:
        kd_settings = {k: gen.kd[k] for k in ("temperature", "alpha")}
        loss = {k: v for k, v in gen.kd.items() if k not in ("temperature", "alpha")}
        if loss:  # the searched KD loss and its parameters: {"loss": "dkd", "dkd_beta": 8.0, ...}
            recipe = replace(recipe, kd_loss=loss.pop("loss", recipe.kd_loss),
                             **{k: v for k, v in loss.items() if k in RECIPE_KEYS})
        if given_seed is None and src.get("seed") is not None:
            seed, seed_from = int(src["seed"]), "the search's winner"
        limit = param_limit or gen.param_limit or default_param_limit(ds.input_shape)
        spec = sample_architecture(gen.generator, seed, ds.input_shape, ds.num_classes, limit, merge=gen.merge_width)
        if teacher is None and src.get("teacher"):
            teacher, teacher_weights = src["teacher"], teacher_weights or src.get("teacher_weights")
    else:
        spec = load_arch(arch)
        seed_from = "--seed" if given_seed is not None else "default"
        if tuple(spec.input_shape) != tuple(ds.input_shape) or spec.num_classes != ds.num_classes:
            raise UserError(f"architecture {arch} is for inputs {tuple(spec.input_shape)} and "
                            f"{spec.num_classes} classes, but {dataset} has {tuple(ds.input_shape)} and "
                            f"{ds.num_classes}; sample one for this dataset")
    overrides = {k: v for k, v in (("batch_size", batch_size), ("lr", lr), ("lr_schedule", lr_schedule))
                 if v is not None}
    recipe = replace(recipe, **overrides)
    if epochs is None:
        epochs = float(searched["budget_epochs"]) if searched and searched.get("budget_epochs") else 1.0
    for key, value in (("temperature", temperature), ("alpha", alpha)):
        if value is not None:
            kd_settings[key] = value
    distil = bool(teacher) and kd_settings["alpha"] > 0
    if distil:  # checked (a forward pass) and, for a built-in one missing here, trained with progress, before the
        #         student: the factory's own resolve below then finds it
        resolve_teacher(str(teacher), ds, smoke=preset == "smoke", device=device, quiet=board.quiet,
                        weights=teacher_weights, check=True, progress=board.reporter("teacher", f"teacher {teacher}"))
        board.done("teacher")
    if searched:  # the search's split: its seed, size and subset (a given --subset overrides the subset)
        split = DataSplit("validation", int(src.get("split_seed") or 0), searched.get("val_fraction", 0.1),
                          subset or searched.get("subset"), searched.get("val_images"))
    else:
        split = DataSplit("validation", seed, subset=subset)
    cfg = TrainConfig.of(recipe, epochs, seed=seed)
    student = prepare(Architecture(seed, spec=spec), ds, split, cfg,
                      teacher=TeacherSource(str(teacher), teacher_weights, smoke=preset == "smoke") if distil
                      else None, kd=KDConfig(**kd_settings) if distil else None, device=device)
    report = board.reporter("student", f"arch {spec.arch_id}")
    try:
        result = fit(student, progress=report)
    finally:
        board.done("student")
    acc = result.eval_acc
    se = math.sqrt(acc * (1 - acc) / len(student.scored)) if acc is not None else None
    measured = {k: v for k, v in result.to_json().items() if k not in ("eval_acc", "eval_loss")}
    return {**measured, "val_acc": acc, "val_loss": result.eval_loss, "arch_id": spec.arch_id, "seed": seed,
            "seed_from": seed_from,
            "dataset": dataset, "train_images": len(student.train), "val_images": len(student.scored),
            "val_acc_se": se, "teacher": teacher if distil else None,
            "kd": kd_settings if distil else None, "kd_loss": cfg.kd_loss if distil else None,
            "recipe_from": "the search's best.json" if searched else "defaults and flags",
            "epochs": epochs}
