"""`autokd evaluate`: train and score one student (sampled from a generator, or from an architecture file)."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from typing import Any

import torch

from autokd.errors import UserError
from autokd.progress import Board


def evaluate_one(args: argparse.Namespace, board: Board) -> dict[str, Any]:
    from autokd.data.dataset import load_dataset, train_val_split
    from autokd.kd.teacher import OnTheFlyTeacher, resolve_teacher
    from autokd.nn.student import build_student
    from autokd.space.genfile import default_param_limit, load_generator
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_macs
    from autokd.space.spec import load_arch
    from autokd.recipe import DEFAULT_KD
    from autokd.train import KDConfig, TrainConfig, train_and_evaluate

    ds = load_dataset(args.dataset, args.data_dir)
    kd_settings = asdict(DEFAULT_KD)
    seed, seed_from = (args.seed, "--seed") if args.seed is not None else (0, "default")
    if args.generator:
        gen = load_generator(args.generator)
        kd_settings = dict(gen.kd)
        if args.seed is None and gen.source.get("seed") is not None:
            seed, seed_from = int(gen.source["seed"]), "the search's winner"
        limit = args.param_limit or gen.param_limit or default_param_limit(ds.input_shape)
        spec = sample_architecture(gen.generator, seed, ds.input_shape, ds.num_classes, limit, merge=gen.merge_width)
    else:
        spec = load_arch(args.arch)
        seed_from = "--seed" if args.seed is not None else "default"
        if tuple(spec.input_shape) != tuple(ds.input_shape) or spec.num_classes != ds.num_classes:
            raise UserError(f"architecture {args.arch} is for inputs {tuple(spec.input_shape)} and "
                            f"{spec.num_classes} classes, but {args.dataset} has {tuple(ds.input_shape)} and "
                            f"{ds.num_classes}; sample one for this dataset")
    for key in ("temperature", "alpha"):
        if getattr(args, key) is not None:
            kd_settings[key] = getattr(args, key)
    teacher = None
    if args.teacher and kd_settings["alpha"] > 0:
        t = resolve_teacher(args.teacher, ds, smoke=args.preset == "smoke", device=args.device, quiet=args.json,
                            weights=args.teacher_weights, check=True,
                            progress=board.reporter("teacher", f"teacher {args.teacher}"))
        board.done("teacher")
        teacher = OnTheFlyTeacher(t, ds.info.mean, ds.info.std)
    train, val = train_val_split(ds.train, seed=seed, subset=args.subset)
    torch.manual_seed(seed)
    model = build_student(spec)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
                      seed=seed)
    kd = KDConfig(**kd_settings) if teacher is not None else None
    report = board.reporter("student", f"arch {spec.arch_id}")
    try:
        result = train_and_evaluate(model, train, val, ds.info.mean, ds.info.std, cfg, device=args.device,
                                    teacher=teacher, kd=kd, macs=count_macs(spec), progress=report)
    finally:
        board.done("student")
    se = math.sqrt(result.val_acc * (1 - result.val_acc) / len(val)) if result.val_acc is not None else None
    return {**result.to_json(), "arch_id": spec.arch_id, "seed": seed, "seed_from": seed_from,
            "dataset": args.dataset, "train_images": len(train), "val_images": len(val), "val_acc_se": se,
            "teacher": args.teacher if teacher is not None else None, "kd": kd_settings if teacher is not None else None}
