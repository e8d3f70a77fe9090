"""Command line: argument parsing and exit codes only (0 success, 1 run failed, 2 bad usage or bad input)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Sequence

from autokd.errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _shape(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,32,32, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers C,H,W, got {text!r}")
    return parts  # type: ignore[return-value]


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def emit_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- sample
def _target_shape(args: argparse.Namespace) -> tuple[tuple[int, int, int], int]:
    if args.dataset:
        from autokd.data.registry import dataset_info

        info = dataset_info(args.dataset)
        classes = args.num_classes or info.num_classes
        if not classes:
            raise UserError(f"dataset {args.dataset} has no fixed class count; pass --num-classes")
        if args.input_shape and tuple(args.input_shape) != info.input_shape:
            raise UserError(f"--input-shape {args.input_shape} contradicts dataset {args.dataset} "
                            f"({info.input_shape}); give one or the other")
        return info.input_shape, classes
    if not args.input_shape or not args.num_classes:
        raise UserError("give --dataset NAME, or both --input-shape C,H,W and --num-classes K")
    if args.num_classes < 2:
        raise UserError(f"--num-classes must be at least 2, got {args.num_classes}")
    return args.input_shape, args.num_classes


def cmd_sample(args: argparse.Namespace) -> int:
    from autokd.space.genfile import default_param_limit, load_generator
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_macs, count_parameters

    gen = load_generator(args.generator)
    shape, classes = _target_shape(args)
    limit = args.param_limit or gen.param_limit or default_param_limit(shape)
    t0 = time.perf_counter()
    spec = sample_architecture(gen.generator, args.seed, shape, classes, limit)
    seconds = time.perf_counter() - t0
    params, macs = count_parameters(spec), count_macs(spec)
    if args.out:
        from autokd.fsutil import write_atomic

        write_atomic(args.out, spec.dumps())
    if args.draw:
        from autokd.report.draw import draw_architecture

        draw_architecture(spec, args.draw)
    summary = {"arch_id": spec.arch_id, "params": params, "macs": macs, "input_shape": list(shape),
               "num_classes": classes, "width": spec.width, "channels": list(spec.channels),
               "param_limit": limit, "seed": args.seed, "cells": spec.top.nodes,
               "modules": sum(c.graph.nodes for c in spec.cells), "ops": spec.op_count(),
               "sample_seconds": round(seconds, 4)}
    if args.json:
        emit_json(summary)
    else:
        print(f"arch {spec.arch_id}: {params:,} params (limit {limit:,}), {macs / 1e6:,.1f}M MACs, width "
              f"{spec.width} → channels {list(spec.channels)}, {summary['cells']} cells / {summary['modules']} "
              f"modules / {summary['ops']} ops, sampled in {seconds * 1000:.0f} ms")
        for what, path in (("architecture", args.out), ("drawing", args.draw)):
            if path:
                print(f"{what} written to {path}")
    return EXIT_OK


# ---------------------------------------------------------------- datasets
def cmd_datasets(args: argparse.Namespace) -> int:
    from autokd.data.registry import DATASETS, describe

    rows = []
    for name, info in DATASETS.items():
        ok, where = describe(name, args.data_dir)
        rows.append({"name": name, "available": ok, "where": where, "input_shape": list(info.input_shape),
                     "num_classes": info.num_classes or None})
    if args.json:
        emit_json({"datasets": rows})
        return EXIT_OK
    for r in rows:
        shape = "x".join(map(str, r["input_shape"]))
        classes = r["num_classes"] or "?"
        mark = "ok     " if r["available"] else "missing"
        print(f"{r['name']:<14} {shape:<10} {classes!s:>4} classes  {mark} {r['where']}")
    return EXIT_OK


# ---------------------------------------------------------------- evaluate
def _progress_to_stderr(prefix: str):
    def report(p: dict[str, Any]) -> None:
        print(f"{prefix}: epoch {p['epoch']}/{p['epochs']}, loss {p['train_loss']:.4f}, {p['seconds']:.0f}s "
              f"elapsed, ~{p['eta_seconds']:.0f}s left", file=sys.stderr, flush=True)
    return report


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from autokd.data.dataset import load_dataset, train_val_split
    from autokd.kd.teacher import OnTheFlyTeacher, resolve_teacher
    from autokd.nn.student import build_student
    from autokd.space.genfile import default_param_limit, load_generator
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_macs
    from autokd.space.spec import load_arch
    from autokd.train import KDConfig, TrainConfig, train_and_evaluate

    ds = load_dataset(args.dataset, args.data_dir)
    kd_settings = {"temperature": 4.0, "alpha": 0.9}
    if args.generator:
        gen = load_generator(args.generator)
        kd_settings = dict(gen.kd)
        limit = args.param_limit or gen.param_limit or default_param_limit(ds.input_shape)
        spec = sample_architecture(gen.generator, args.seed, ds.input_shape, ds.num_classes, limit)
    else:
        spec = load_arch(args.arch)
        if tuple(spec.input_shape) != tuple(ds.input_shape) or spec.num_classes != ds.num_classes:
            raise UserError(f"architecture {args.arch} is for inputs {tuple(spec.input_shape)} and "
                            f"{spec.num_classes} classes, but {args.dataset} has {tuple(ds.input_shape)} and "
                            f"{ds.num_classes}; sample one for this dataset")
    for key in ("temperature", "alpha"):
        if getattr(args, key) is not None:
            kd_settings[key] = getattr(args, key)
    teacher = None
    if args.teacher:
        t = resolve_teacher(args.teacher, ds, smoke=args.preset == "smoke", device=args.device, quiet=args.json)
        teacher = OnTheFlyTeacher(t, ds.info.mean, ds.info.std)
    train, val = train_val_split(ds.train, seed=args.seed, subset=args.subset)
    torch.manual_seed(args.seed)
    model = build_student(spec)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    kd = KDConfig(**kd_settings) if teacher is not None else None
    result = train_and_evaluate(model, train, val, ds.info.mean, ds.info.std, cfg, device=args.device,
                                teacher=teacher, kd=kd, macs=count_macs(spec),
                                progress=None if args.json else _progress_to_stderr(f"arch {spec.arch_id}"))
    out = {**result.to_json(), "arch_id": spec.arch_id, "dataset": args.dataset, "train_images": len(train),
           "val_images": len(val), "teacher": args.teacher, "kd": kd_settings if teacher is not None else None}
    if args.json:
        emit_json(out)
    elif result.status == "ok":
        print(f"arch {spec.arch_id}: val_acc {result.val_acc:.4f} (val loss {result.val_loss:.4f}) after "
              f"{args.epochs:g} epochs on {len(train)} images, {result.params:,} params, {result.seconds:.1f}s")
    else:
        print(f"arch {spec.arch_id}: failed: {result.error}", file=sys.stderr)
    return EXIT_OK if result.status == "ok" else EXIT_FAILED


# ---------------------------------------------------------------- teacher
def cmd_teacher_train(args: argparse.Namespace) -> int:
    from autokd.data.dataset import load_dataset
    from autokd.kd.teacher import save_checkpoint, teacher_cache_path, train_teacher
    from autokd.nn.teachers import teacher_arch

    teacher_arch(args.arch)
    ds = load_dataset(args.dataset, args.data_dir)
    smoke = args.preset == "smoke"
    out = args.out or teacher_cache_path(ds.info.name, args.arch, smoke)
    ckpt, result = train_teacher(args.arch, ds, epochs=args.epochs, smoke=smoke, seed=args.seed,
                                 device=args.device, progress=_progress_to_stderr(f"teacher {args.arch}"))
    save_checkpoint(out, ckpt)
    print(f"teacher {args.arch} on {ds.info.name}: test accuracy {result.val_acc:.4f} on {ckpt['test_images']} "
          f"images, {result.params:,} params, {result.seconds:.0f}s → {out}")
    return EXIT_OK


def cmd_teacher_list(args: argparse.Namespace) -> int:
    from autokd.data.registry import cache_root
    from autokd.kd.teacher import load_checkpoint
    from autokd.nn.teachers import TEACHERS

    print("built-in teacher architectures:")
    for name, t in TEACHERS.items():
        print(f"  {name:<10} {t.description}; recipe {t.recipe.epochs:g} epochs, batch {t.recipe.batch_size}, "
              f"lr {t.recipe.lr}")
    found = sorted((cache_root() / "teachers").glob("*.pt"))
    print(f"cached checkpoints in {cache_root() / 'teachers'}:" if found else "no cached teacher checkpoints")
    for path in found:
        try:
            m = load_checkpoint(path)
            print(f"  {path.name:<32} {m['arch']:<10} {m['dataset']:<14} test_acc {m['test_acc']:.4f} "
                  f"({m['epochs']:g} epochs{', smoke' if m.get('smoke') else ''})")
        except UserError as exc:
            print(f"  {path.name:<32} unreadable: {exc}")
    return EXIT_OK


# ---------------------------------------------------------------- search
SEARCH_FLAGS = ("dataset", "teacher", "min_budget", "max_budget", "eta", "iterations", "executor", "gpus_per_trial",
                "ray_address", "param_limit", "data_dir", "seed", "subset", "device", "logit_cache")


def cmd_search(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from autokd.config import apply_preset, load_experiment
    from autokd.search.run import run_search

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in SEARCH_FLAGS if getattr(args, k) is not None]
        if given or args.no_kd or args.experiment:
            print(f"autokd search: note: resuming with the settings in {args.run_dir}/run.json; ignoring "
                  f"{' '.join(given + (['--no-kd'] if args.no_kd else []))}".rstrip(), file=sys.stderr)
        outcome = run_search(None, args.run_dir, resume=True, quiet=args.quiet)
    else:
        overrides: dict[str, Any] = {}
        preset = args.preset
        if args.experiment:
            exp = load_experiment(args.experiment)
            preset = args.preset or exp.get("preset")
            overrides.update(exp.get("search") or {})
        overrides.update({k: getattr(args, k) for k in SEARCH_FLAGS if getattr(args, k) is not None})
        if args.no_kd:
            overrides["no_kd"] = True
        if not overrides.get("dataset"):
            raise UserError("give --dataset NAME (or --experiment NAME, or --resume with --run-dir)")
        settings = apply_preset(preset or "paper", overrides)
        if settings.no_kd:
            settings = replace(settings, teacher=None)  # the baseline never loads a teacher
        outcome = run_search(settings, args.run_dir, quiet=args.quiet)
    best = outcome.best
    summary = {"run_dir": str(outcome.run_dir), "finished": outcome.finished, "failed": outcome.failed,
               "replayed": outcome.replayed, "seconds": round(outcome.seconds, 1),
               "best": best["source"] if best else None, "best_json": str(outcome.run_dir / "best.json")
               if best else None}
    if args.json:
        emit_json(summary)
    elif best:
        src = best["source"]
        print(f"search done: {outcome.finished} trials finished, {outcome.failed} failed, "
              f"{outcome.seconds / 60:.1f} min. Best: config {tuple(src['config_id'])} val_acc "
              f"{src['val_acc']:.4f} at {src['budget']:g} epochs, τ={best['kd']['temperature']:.2f} "
              f"α={best['kd']['alpha']:.2f} → {outcome.run_dir / 'best.json'}")
    else:
        print(f"search done: every one of {outcome.failed} trials failed; see {outcome.run_dir}/journal.jsonl",
              file=sys.stderr)
    return EXIT_OK if best else EXIT_FAILED


# ---------------------------------------------------------------- retrain / report
def cmd_retrain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autokd.retrain import run_retrain, settings_for
    from autokd.space.genfile import load_generator

    gen = load_generator(args.generator)
    st = settings_for(gen, {k: getattr(args, k) for k in ("dataset", "teacher", "param_limit", "data_dir",
                                                          "samples", "epochs", "seed", "device", "batch_size",
                                                          "lr", "subset")} | {"smoke_teacher": args.preset == "smoke"})
    run_dir = gen.source.get("run_dir")
    out = Path(args.out) if args.out else (Path(run_dir) / "retrain" if run_dir and Path(run_dir).is_dir()
                                           else Path(args.generator).resolve().parent / "retrain")
    summary = run_retrain(gen, st, out, executor=args.executor or "local", gpus_per_trial=args.gpus_per_trial)
    if args.json:
        emit_json({k: v for k, v in summary.items() if k != "per_sample"} | {"out": str(out)})
    elif summary["test_acc_mean"] is not None:
        print(f"retrain: {summary['ok']}/{summary['samples']} samples, top-1 test accuracy "
              f"{100 * summary['test_acc_mean']:.2f}% ± {100 * summary['test_acc_std']:.2f} (min "
              f"{100 * summary['test_acc_min']:.2f}, max {100 * summary['test_acc_max']:.2f}), mean params "
              f"{summary['params_mean']:,.0f} → {out / 'summary.md'}")
    return EXIT_OK if summary["ok"] == summary["samples"] else EXIT_FAILED


def cmd_report(args: argparse.Namespace) -> int:
    from autokd.report.build import build_report

    out = build_report(args.run_dir, args.out, args.compare)
    print(f"report written to {out / 'report.md'}")
    return EXIT_OK


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="autokd", description="Knowledge-distillation-aware architecture search (AutoKD).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("sample", help="sample one architecture from a generator file")
    s.add_argument("--generator", required=True, help="generator file (autokd.generator/1 JSON)")
    s.add_argument("--seed", type=int, default=0, help="architecture seed (default 0)")
    s.add_argument("--dataset", help="take input shape and class count from this dataset")
    s.add_argument("--input-shape", type=_shape, help="C,H,W (instead of --dataset)")
    s.add_argument("--num-classes", type=_positive_int, help="class count (instead of --dataset)")
    s.add_argument("--param-limit", type=_positive_int, help="max parameters (default: generator file, else 4M "
                   "for small images, 6M for large)")
    s.add_argument("--out", help="write the architecture file (autokd.arch/1 JSON) here")
    s.add_argument("--draw", help="write a PNG of the three graph levels here")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("search", help="BOHB over NAGO generators with KD (the main job)")
    r.add_argument("--dataset")
    r.add_argument("--teacher", help="built-in teacher (darts, resnet18, wrn-40-2) or checkpoint path")
    r.add_argument("--run-dir", default="runs/search", help="run directory (default runs/search)")
    r.add_argument("--preset", choices=("smoke", "paper"), help="smoke: minutes on a CPU; paper: the paper's "
                   "protocol (default)")
    r.add_argument("--experiment", help="settings from experiments/NAME.yaml (or a path); flags override")
    r.add_argument("--min-budget", type=float, help="epochs (paper: 30)")
    r.add_argument("--max-budget", type=float, help="epochs (paper: 120)")
    r.add_argument("--eta", type=int, help="halving rate (paper: 2)")
    r.add_argument("--iterations", type=_positive_int, help="brackets to run (paper: 63, ~300 evaluations)")
    r.add_argument("--executor", choices=("local", "ray"), help="default: ray with CUDA, local without")
    r.add_argument("--gpus-per-trial", type=float, help="fraction of a GPU per trial (0.25: four per GPU)")
    r.add_argument("--ray-address", help="join this Ray cluster (e.g. auto or HOST:6379)")
    r.add_argument("--no-kd", action="store_true", help="the NAGO baseline: no teacher, α fixed at 0")
    r.add_argument("--param-limit", type=_positive_int)
    r.add_argument("--data-dir")
    r.add_argument("--subset", type=_positive_int, help="train on N images of the training split")
    r.add_argument("--seed", type=int)
    r.add_argument("--device")
    r.add_argument("--logit-cache", choices=("auto", "on", "off"), help="teacher logits per augmentation view, "
                   "computed once (default auto: on with CUDA)")
    r.add_argument("--resume", action="store_true", help="continue the run in --run-dir (settings from run.json)")
    r.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    r.add_argument("--json", action="store_true", help="print the final summary as one JSON object")
    r.set_defaults(func=cmd_search)

    rt = sub.add_parser("retrain", help="train k samples of a generator long, with KD; test accuracy mean ± std")
    rt.add_argument("--generator", required=True, help="generator file (e.g. RUN_DIR/best.json)")
    rt.add_argument("--samples", type=_positive_int, help="architectures to sample (default 8)")
    rt.add_argument("--epochs", type=float, help="epochs per sample (default 600)")
    rt.add_argument("--out", help="output folder (default RUN_DIR/retrain)")
    rt.add_argument("--dataset", help="default: the generator's source.dataset")
    rt.add_argument("--teacher", help="default: the generator's source.teacher")
    rt.add_argument("--param-limit", type=_positive_int)
    rt.add_argument("--data-dir")
    rt.add_argument("--subset", type=_positive_int, help="train on N images (quick checks)")
    rt.add_argument("--seed", type=int, help="sample i uses seed + i (default 0)")
    rt.add_argument("--batch-size", type=_positive_int)
    rt.add_argument("--lr", type=float)
    rt.add_argument("--preset", choices=("smoke", "paper"), default="paper", help="teacher size if one is trained")
    rt.add_argument("--executor", choices=("local", "ray"), help="ray trains samples in parallel on GPUs")
    rt.add_argument("--gpus-per-trial", type=float, default=1.0)
    rt.add_argument("--device")
    rt.add_argument("--json", action="store_true")
    rt.set_defaults(func=cmd_retrain)

    rp = sub.add_parser("report", help="rank correlations, histograms, best-so-far, top configurations")
    rp.add_argument("run_dir")
    rp.add_argument("--compare", help="another run directory (e.g. the --no-kd run) to put side by side")
    rp.add_argument("--out", help="output folder (default RUN_DIR/report)")
    rp.set_defaults(func=cmd_report)

    e = sub.add_parser("evaluate", help="sample (or load) one student and train it, with or without a teacher")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--generator", help="generator file to sample the student from")
    src.add_argument("--arch", help="architecture file (autokd.arch/1)")
    e.add_argument("--dataset", required=True)
    e.add_argument("--teacher", help="built-in teacher name (darts, resnet18, wrn-40-2) or checkpoint path")
    e.add_argument("--epochs", type=float, default=1.0, help="training budget in epochs (default 1)")
    e.add_argument("--subset", type=_positive_int, help="train on N images (validate on N/5)")
    e.add_argument("--seed", type=int, default=0, help="architecture, split and training seed")
    e.add_argument("--param-limit", type=_positive_int)
    e.add_argument("--temperature", type=float, help="KD temperature (default: generator file, else 4)")
    e.add_argument("--alpha", type=float, help="KD weight (default: generator file, else 0.9)")
    e.add_argument("--batch-size", type=_positive_int, default=128)
    e.add_argument("--lr", type=float, default=0.1)
    e.add_argument("--preset", choices=("smoke", "paper"), default="paper", help="teacher size when one is trained")
    e.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    e.add_argument("--data-dir")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("teacher", help="train or list teachers")
    tsub = t.add_subparsers(dest="teacher_command", required=True, parser_class=_Parser)
    tt = tsub.add_parser("train", help="train a teacher and write its checkpoint")
    tt.add_argument("--arch", required=True, help="darts, resnet18 or wrn-40-2")
    tt.add_argument("--dataset", required=True)
    tt.add_argument("--epochs", type=float, help="default: the recipe's (600 for darts)")
    tt.add_argument("--out", help="checkpoint path (default: the cache, where --teacher NAME finds it)")
    tt.add_argument("--preset", choices=("smoke", "paper"), default="paper", help="smoke: small network, subset")
    tt.add_argument("--seed", type=int, default=0)
    tt.add_argument("--device")
    tt.add_argument("--data-dir")
    tt.set_defaults(func=cmd_teacher_train)
    tl = tsub.add_parser("list", help="built-in teacher architectures and cached checkpoints")
    tl.set_defaults(func=cmd_teacher_list)

    d = sub.add_parser("datasets", help="list datasets and where their files resolve")
    d.add_argument("--data-dir", help="look here first")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_datasets)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"autokd {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"autokd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
