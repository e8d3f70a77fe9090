"""Command line: argument parsing and exit codes only (0 success, 1 run failed or internal error, 2 bad usage or
bad input). Every error is one line on stderr; an internal error also writes its traceback to a log file and names
it."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from autokd._version import __version__
from autokd.errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each flag's help (where there is one: a setting's flag left out means the preset's
    value, said in its help); examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, no usage dump
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _typed(kind: str, **bounds: Any) -> Callable[[str], Any]:
    """An argparse type that parses a number and checks it with the same rules as settings files."""
    from autokd.validate import Field, check_value

    field = Field(kind, **bounds)

    def parse(text: str) -> Any:
        try:
            value: Any = int(text) if kind == "int" else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {field.describe()}, got {text!r}") from None
        try:
            return check_value(value, field, "value", "flag")
        except UserError:
            raise argparse.ArgumentTypeError(f"expected {field.describe()}, got {text!r}") from None
    parse.__name__ = kind
    return parse


def add_setting_flags(parser: argparse.ArgumentParser, settings_cls: type) -> tuple[str, ...]:
    """One flag per setting the dataclass declares as a flag (`autokd.validate.setting`): its name with dashes, its
    type, range or choices and help from the declaration; unset flags are None (the preset decides). Returns the
    settings' names, to read the given values back."""
    from dataclasses import fields

    names = []
    own = settings_cls.__annotations__  # the command's own settings first, then the inherited recipe's
    for f in sorted(fields(settings_cls), key=lambda f: f.name not in own):
        meta = f.metadata
        if not meta.get("flag"):
            continue
        check, flag = meta["check"], "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"help": meta["help"].replace("%", "%%")}  # argparse formats help with %
        if check.kind == "bool":
            kwargs.update(action=argparse.BooleanOptionalAction, default=None)
        elif check.choices and check.or_files:  # a name or a file: checked by the settings, listed in the help
            kwargs.update(metavar="NAME|FILE")
        elif check.choices:
            kwargs.update(choices=check.choices)
        elif check.kind in ("int", "float"):
            kwargs.update(type=_typed(check.kind, min=check.min, max=check.max, above=check.above))
        parser.add_argument(flag, **kwargs)
        names.append(f.name)
    return tuple(names)


def given_settings(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The settings given on the command line (a flag left out is None and means: not given)."""
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def _shape(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,32,32, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 1 or max(parts) > 8192:
        raise argparse.ArgumentTypeError(f"expected three integers in [1, 8192] as C,H,W, got {text!r}")
    return parts  # type: ignore[return-value]


POSITIVE = _typed("int", min=1, max=10**9)
SEED = _typed("int", min=0, max=2**31 - 1)
EPOCHS = _typed("float", above=0, max=100_000)
LR = _typed("float", above=0, max=100)
ALPHA = _typed("float", min=0, max=1)
TEMPERATURE = _typed("float", min=1, max=10)
LIMIT = _typed("int", min=1000, max=10**9)


def emit_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- sample
def _target_shape(args: argparse.Namespace) -> tuple[tuple[int, int, int], int]:
    if args.dataset:
        from autokd.data.registry import dataset_info

        info = dataset_info(args.dataset)
        if 0 in info.input_shape and not args.input_shape:
            raise UserError(f"dataset {args.dataset} takes its image shape from its files; pass --input-shape C,H,W "
                            "and --num-classes K")
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


def _winner_seed(gen: Any, given: int | None) -> tuple[int, str]:
    """The architecture seed: --seed, else the search's winner recorded in the generator file, else 0."""
    if given is not None:
        return given, "--seed"
    if gen.source.get("seed") is not None:
        return int(gen.source["seed"]), "the search's winner"
    return 0, "default"


def _check_output_file(flag: str, path: Path) -> None:
    """An output file path a write can succeed at: not a folder, a name the file system takes, a folder that exists
    or can be made and is writable. Checked before any work, so a bad path costs nothing."""
    from autokd.fsutil import require_utf8

    require_utf8(path, flag)
    if len(path.name.encode()) > 255:  # first: stat() of such a name is itself an error
        raise UserError(f"{flag}: the file name is {len(path.name.encode())} bytes, over the 255 a file system "
                        "allows; choose a shorter name")
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file path")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {parent} is not a writable folder; choose a writable file path")


def cmd_sample(args: argparse.Namespace) -> int:
    import time

    from autokd.space.genfile import default_param_limit, load_generator
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_macs, count_parameters

    gen = load_generator(args.generator)
    shape, classes = _target_shape(args)
    for flag, path in (("--out", args.out), ("--draw", args.draw)):
        if path:
            _check_output_file(flag, Path(path))
    limit = args.param_limit or gen.param_limit or default_param_limit(shape)
    seed, why = _winner_seed(gen, args.seed)
    t0 = time.perf_counter()
    spec = sample_architecture(gen.generator, seed, shape, classes, limit, merge=gen.merge_width)
    seconds = time.perf_counter() - t0
    params, macs = count_parameters(spec), count_macs(spec)
    try:
        if args.out:
            from autokd.fsutil import write_atomic

            write_atomic(args.out, spec.dumps())
        if args.draw:
            from autokd.report.draw import draw_architecture

            draw_architecture(spec, args.draw)
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or args.out}: {exc.strerror}; choose a writable file "
                        "path") from None
    summary = {"arch_id": spec.arch_id, "params": params, "macs": macs, "input_shape": list(shape),
               "num_classes": classes, "width": spec.width, "channels": list(spec.channels),
               "param_limit": limit, "seed": seed, "seed_from": why, "cells": spec.top.nodes,
               "modules": sum(c.graph.nodes for c in spec.cells), "ops": spec.op_count(),
               "sample_seconds": round(seconds, 4)}
    if args.json:
        emit_json(summary)
    else:
        print(f"arch {spec.arch_id} (seed {seed}, {why}): {params:,} params (limit {limit:,}), {macs / 1e6:,.1f}M "
              f"MACs, width {spec.width} → channels {list(spec.channels)}, {summary['cells']} cells / "
              f"{summary['modules']} modules / {summary['ops']} ops, sampled in {seconds * 1000:.0f} ms")
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
        shape = "x".join(map(str, r["input_shape"])) if all(r["input_shape"]) else "as files"  # an image folder
        classes = r["num_classes"] or "?"
        mark = "ok     " if r["available"] else "missing"
        print(f"{r['name']:<14} {shape:<10} {classes!s:>4} classes  {mark} {r['where']}")
    return EXIT_OK


# ---------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from autokd.config import check_device
    from autokd.evaluate import evaluate_one
    from autokd.progress import Board

    check_device(args.device)
    board = Board(quiet=args.json)
    try:
        out = evaluate_one(args.dataset, board, **{k: getattr(args, k) for k in (
            "generator", "arch", "teacher", "teacher_weights", "epochs", "subset", "seed", "param_limit", "temperature",
            "alpha", "batch_size", "lr", "lr_schedule", "preset", "device", "data_dir")})
    finally:
        board.close()
    if args.json:
        emit_json(out)
    elif out["status"] == "ok":
        print(f"arch {out['arch_id']} (seed {out['seed']}, {out['seed_from']}): val_acc {out['val_acc']:.4f} ± "
              f"{out['val_acc_se']:.4f} (val loss {out['val_loss']:.4f}) after {out['epochs']:g} epochs on "
              f"{out['train_images']:,} images, {out['params']:,} params, {out['seconds']:.1f}s")
    else:
        print(f"arch {out['arch_id']}: failed: {out['error']}", file=sys.stderr)
    return EXIT_OK if out["status"] == "ok" else EXIT_FAILED


# ---------------------------------------------------------------- teacher
def cmd_teacher_train(args: argparse.Namespace) -> int:
    from autokd.config import check_device
    from autokd.data.dataset import load_dataset
    from autokd.kd.teacher import save_checkpoint, state_path_of, teacher_cache_path, train_teacher
    from autokd.nn.teachers import teacher_arch
    from autokd.progress import Board

    teacher_arch(args.arch)
    check_device(args.device)
    ds = load_dataset(args.dataset, args.data_dir)
    smoke = args.preset == "smoke"
    out = Path(args.out) if args.out else teacher_cache_path(ds.info.name, args.arch, smoke)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file path for the checkpoint")
    board = Board()
    try:
        ckpt, result = train_teacher(args.arch, ds, epochs=args.epochs, smoke=smoke, seed=args.seed,
                                     device=args.device, progress=board.reporter("teacher", f"teacher {args.arch}"),
                                     state_path=state_path_of(out), precision=args.precision)
    except KeyboardInterrupt:
        board.close()
        if state_path_of(out).is_file():
            print(f"interrupted; the same command resumes from {state_path_of(out)}", file=sys.stderr)
        raise
    finally:
        board.close()
    save_checkpoint(out, ckpt)
    state_path_of(out).unlink(missing_ok=True)
    resumed = f", resumed at epoch {result.resumed_from_epoch}" if result.resumed_from_epoch else ""
    print(f"teacher {args.arch} on {ds.info.name}: test accuracy {result.eval_acc:.4f} on {ckpt['test_images']} "
          f"images, {result.params:,} params, {result.seconds + result.prior_seconds:.0f}s{resumed} → {out}")
    return EXIT_OK


def cmd_teacher_list(args: argparse.Namespace) -> int:
    from autokd.data.registry import cache_root
    from autokd.kd.teacher import DEFAULT_TEACHERS, SHIPPED, SHIPPED_DIR, SHIPPED_ENSEMBLES, load_checkpoint
    from autokd.nn.teachers import TEACHERS

    print("built-in teacher architectures:")
    for name, t in TEACHERS.items():
        print(f"  {name:<10} {t.description}; recipe {t.epochs:g} epochs, batch {t.recipe.batch_size}, "
              f"lr {t.recipe.lr}")
    print("default teacher per dataset: " + ", ".join(f"{d}: {n}" for d, n in DEFAULT_TEACHERS.items())
          + " (others: darts)")
    for dataset, ensembles in SHIPPED_ENSEMBLES.items():
        for name, ens in ensembles.items():
            print(f"shipped ensemble for {dataset}: --teacher {name} (the mean of {', '.join(ens.members)}"
                  f"{', each also on the mirrored image' if ens.mirror else ''})")
    found = [SHIPPED_DIR / name for name in SHIPPED] + sorted((cache_root() / "teachers").glob("*.pt"))
    print("checkpoints (shipped, then cached):" if found else "no teacher checkpoints")
    for path in found:
        try:
            m = load_checkpoint(path)
            acc = f"{m['test_acc']:.4f}" if m.get("test_acc") is not None else "?"
            print(f"  {path.name:<32} {m['arch']:<10} {m.get('dataset', '?'):<14} test_acc {acc} "
                  f"({m.get('epochs', 0):g} epochs{', smoke' if m.get('smoke') else ''}) {path.parent}")
        except UserError as exc:
            print(f"  {path.name:<32} unreadable: {exc}")
    return EXIT_OK


# ---------------------------------------------------------------- search
def cmd_search(args: argparse.Namespace) -> int:
    from autokd.config import search_settings
    from autokd.hpo.run import run_search

    given = given_settings(args, args.setting_names)
    if args.no_kd:
        given["no_kd"] = True
    if args.resume:
        if args.experiment or args.preset:
            raise UserError("--resume continues the run in --run-dir with its own settings; drop --experiment and "
                            "--preset (only --iterations may change, to extend the search)")
        outcome = run_search(None, args.run_dir, resume=True, quiet=args.quiet, overrides=given)
    else:
        settings = search_settings(given, args.preset, args.experiment)
        outcome = run_search(settings, args.run_dir, quiet=args.quiet, dry_run=args.dry_run, yes=args.yes)
        if args.dry_run:
            return EXIT_OK
    best = outcome.best
    summary = {"run_dir": str(outcome.run_dir), "finished": outcome.finished, "failed": outcome.failed,
               "replayed": outcome.replayed, "seconds": round(outcome.seconds, 1),
               "model_based_proposals": outcome.model_based, "proposals": outcome.proposals,
               "already_complete": outcome.already_complete, "linear_baseline": outcome.linear_baseline,
               "best": best["source"] if best else None,
               "best_json": str(outcome.run_dir / "best.json") if best else None}
    if args.json:
        emit_json(summary)
    elif best:
        src = best["source"]
        if not outcome.already_complete:
            print(f"search done: {outcome.finished} trials finished, {outcome.failed} failed in "
                  f"{outcome.seconds / 60:.1f} min; {outcome.model_based} of {outcome.proposals} proposals came from "
                  f"the optimizer's model. Best: config {tuple(src['config_id'])} at {src['budget']:g} epochs, "
                  f"τ={best['kd']['temperature']:.2f} α={best['kd']['alpha']:.2f} → {outcome.run_dir / 'best.json'}")
        if outcome.summary:
            print(outcome.summary)
        for line in _budget_lines(outcome.run_dir):
            print(line)
    else:
        print(f"search done: every one of {outcome.failed} trials failed; see {outcome.run_dir}/journal.jsonl",
              file=sys.stderr)
    return EXIT_OK if best else EXIT_FAILED


def _budget_lines(run_dir: Path) -> list[str]:
    """The search's budget diagnosis from its own journal (autokd.report.diagnosis): a rung at chance, a rung that
    did not predict the next, and what to change; one line when the ladder held."""
    from autokd.report.data import load_run_data
    from autokd.report.diagnosis import closing_lines, diagnose

    try:
        run = load_run_data(run_dir)
        return closing_lines(diagnose(run.events, int(run.run["num_classes"])))
    except Exception as exc:  # the diagnosis must not fail a finished search; say why it is missing
        return [f"budgets: not diagnosed ({type(exc).__name__}: {exc}); `autokd report {run_dir}` retries"]


# ---------------------------------------------------------------- retrain / report / trials / export
def cmd_retrain(args: argparse.Namespace) -> int:
    from autokd.api import retrain
    from autokd.progress import Board

    board = Board(quiet=args.json)
    try:
        summary = retrain(args.generator, out=args.out, preset=args.preset, experiment=args.experiment,
                          no_kd=args.no_kd, board=board,
                          **given_settings(args, args.setting_names))
    finally:
        board.close()
    out = Path(summary["out"])
    if args.json:
        emit_json({k: v for k, v in summary.items() if k != "per_sample"})
    elif summary["test_acc_mean"] is not None:
        extra = []
        if summary.get("teacher") and summary["teacher"].get("test_acc") is not None:
            extra.append(f"teacher {100 * summary['teacher']['test_acc']:.2f}%")
        if summary.get("linear_baseline") is not None:
            extra.append(f"linear classifier {100 * summary['linear_baseline']:.2f}%")
        extra.append(f"chance {100 * summary['chance']:.0f}%")
        print(f"retrain: {summary['ok']}/{summary['samples']} samples"
              + (" (sample 0 = the search's winner)" if summary.get("winner_included") else "")
              + f", top-1 test accuracy {100 * summary['test_acc_mean']:.2f}% ± {100 * summary['test_acc_std']:.2f} "
              f"(min {100 * summary['test_acc_min']:.2f}, max {100 * summary['test_acc_max']:.2f}), mean params "
              f"{summary['params_mean']:,.0f}; " + ", ".join(extra) + f" → {out / 'summary.md'}")
        verdict = (summary.get("comparison") or {}).get("verdict")
        if verdict:
            print(f"retrain: {verdict}")
        kd_verdict = (summary.get("kd_ablation") or {}).get("verdict")
        if kd_verdict:
            print(f"retrain: {kd_verdict}")
    return EXIT_OK if summary["ok"] == summary["samples"] else EXIT_FAILED


def cmd_report(args: argparse.Namespace) -> int:
    from autokd.report.build import build_report

    out = build_report(args.run_dirs, args.out, args.compare or None, aggregate=args.aggregate)
    print(f"report written to {out / 'report.md'}")
    return EXIT_OK


def cmd_trials(args: argparse.Namespace) -> int:
    from autokd.report.trials import format_trials, load_trials

    sys.stdout.write(format_trials(load_trials(args.run_dir), args.format))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from autokd.export import export_winner

    out = export_winner(args.run_dir, args.out, pick=args.pick)
    what = "winner" if args.pick == "best" else f"the front's {args.pick}"
    print(f"{what} exported to {out} (arch.json, generator.json, README.md)")
    return EXIT_OK


def cmd_export_optuna(args: argparse.Namespace) -> int:
    from autokd.export import export_optuna

    n = export_optuna(args.run_dir, args.storage, args.study_name)
    print(f"{n} trials written to {args.storage} (study {args.study_name or 'autokd'}); view with "
          f"`optuna-dashboard {args.storage}`")
    return EXIT_OK


# ---------------------------------------------------------------- parser
EXAMPLES = {
    "search": """examples:
  autokd search --dataset fashion-mnist --preset cpu                 # about 10 minutes on 2 CPU cores
  autokd search --experiment cifar100-darts --data-dir ~/data        # the paper's protocol (GPUs)
  autokd search --dataset fashion-mnist --preset cpu --dry-run       # print the plan only
  autokd search --run-dir runs/search --resume --iterations 12       # continue, or extend, a run""",
    "retrain": """examples:
  autokd retrain --generator runs/search/best.json                   # the winner + fresh samples of its family
  autokd retrain --student resnet --dataset fashion-mnist --param-limit 100000 --preset cpu""",
    "report": """examples:
  autokd report runs/kd                                              # runs/kd/report/report.md
  autokd report runs/kd --compare runs/nokd                          # two runs side by side
  autokd report runs/kd-* --aggregate --compare runs/nokd-*          # repeated runs, KD group vs no-KD group""",
    "sample": """examples:
  autokd sample --generator runs/search/best.json --dataset fashion-mnist --draw arch.png   # the winner
  autokd sample --generator g.json --input-shape 3,32,32 --num-classes 100 --seed 4 --json""",
    "evaluate": """examples:
  autokd evaluate --generator runs/search/best.json --dataset fashion-mnist --epochs 2 --teacher vgg7
  autokd evaluate --arch arch.json --dataset fashion-mnist --epochs 1 --json""",
    "trials": """examples:
  autokd trials runs/search                     # a table
  autokd trials runs/search --format csv > trials.csv""",
}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="autokd", description="Knowledge-distillation-aware architecture search (AutoKD).")
    p.add_argument("--version", action="version", version=f"autokd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("sample", help="sample one architecture from a generator file", epilog=EXAMPLES["sample"])
    s.add_argument("--generator", required=True, help="generator file (autokd.generator/1 JSON, e.g. best.json)")
    s.add_argument("--seed", type=SEED, help="architecture seed (default: the search's winner recorded in the "
                   "generator file, else 0)")
    s.add_argument("--dataset", help="take input shape and class count from this dataset")
    s.add_argument("--input-shape", type=_shape, help="C,H,W (instead of --dataset)")
    s.add_argument("--num-classes", type=_typed("int", min=2, max=100_000), help="class count (instead of --dataset)")
    s.add_argument("--param-limit", type=LIMIT, help="max parameters (default: generator file, else 4M for small "
                   "images, 6M for large)")
    s.add_argument("--out", help="write the architecture file (autokd.arch/1 JSON) here")
    s.add_argument("--draw", help="write a PNG of the three graph levels here")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("search", help="BOHB over NAGO generators with KD (the main job)", epilog=EXAMPLES["search"])
    from autokd.config import PRESETS, RetrainSettings, SearchSettings
    from autokd.recipe import PRECISIONS

    r.add_argument("--run-dir", default="runs/search", help="run directory")
    r.add_argument("--preset", choices=tuple(PRESETS), help="cpu: about 10 minutes on 2 CPU cores; "
                   "smoke: a minute (tests); paper: the paper's protocol, a GPU job (default without --experiment)")
    r.add_argument("--experiment", help="settings from experiments/NAME.yaml (or a path); flags override")
    r.add_argument("--no-kd", action="store_true", help="the NAGO baseline: no teacher, α fixed at 0")
    r.set_defaults(setting_names=add_setting_flags(r, SearchSettings))
    r.add_argument("--resume", action="store_true", help="continue the run in --run-dir (settings from run.json)")
    r.add_argument("--dry-run", action="store_true", help="print the plan and the projected time, then exit")
    r.add_argument("--yes", action="store_true", help="run even when a CPU search is projected to take hours")
    r.add_argument("--quiet", action="store_true", help="only the plan, errors and the final summary")
    r.add_argument("--json", action="store_true", help="print the final summary as one JSON object")
    r.set_defaults(func=cmd_search)

    rt = sub.add_parser("retrain", help="train k samples of a generator long, with KD; test accuracy mean ± std",
                        epilog=EXAMPLES["retrain"])
    rt.add_argument("--generator", help="generator file (e.g. RUN_DIR/best.json): its winner is sample 0")
    rt.add_argument("--experiment", help="retrain settings from an experiment file's retrain: section")
    rt.add_argument("--out", help="output folder (default: retrain/ next to the generator file)")
    rt.add_argument("--no-kd", action="store_true", help="train without the teacher (α = 0)")
    rt.add_argument("--preset", choices=tuple(PRESETS), help="retrain recipe (default: the search's "
                    "preset from its run.json, else paper)")
    rt.set_defaults(setting_names=add_setting_flags(rt, RetrainSettings))
    rt.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    rt.set_defaults(func=cmd_retrain)

    rp = sub.add_parser("report", help="the search's figures and rank correlations; several runs with --aggregate",
                        epilog=EXAMPLES["report"])
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (several: repeated runs)")
    rp.add_argument("--compare", nargs="+", metavar="RUN_DIR", help="run(s) to put side by side (e.g. --no-kd)")
    rp.add_argument("--aggregate", action="store_true", help="treat the run directories as repeats of one "
                    "search: figures tallied over runs, best-so-far mean ± std")
    rp.add_argument("--out", help="output folder (default RUN_DIR/report, or report/ under the first run's parent)")
    rp.set_defaults(func=cmd_report)

    tr = sub.add_parser("trials", help="every trial of a run as a table, CSV or JSON", epilog=EXAMPLES["trials"])
    tr.add_argument("run_dir", help="a search's run directory")
    tr.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    tr.set_defaults(func=cmd_trials)

    ex = sub.add_parser("export", help="the winning architecture and how to rebuild and load it")
    ex.add_argument("run_dir", help="a search's run directory")
    ex.add_argument("--out", required=True, help="folder to write arch.json, generator.json and README.md into")
    ex.add_argument("--pick", default="best", help="which evaluation: best (the winner), knee[:COST] (where more "
                    "cost stops buying accuracy) or under:COST=VALUE (the most accurate at most VALUE), on the "
                    "report's front; COST: macs, memory (activation MB per image), params")
    ex.set_defaults(func=cmd_export)

    eo = sub.add_parser("export-optuna", help="copy a run into an Optuna storage (pip install optuna)")
    eo.add_argument("run_dir", help="a search's run directory")
    eo.add_argument("--storage", required=True, help="an Optuna storage URL, e.g. sqlite:///run.db")
    eo.add_argument("--study-name", help="default: autokd-<run dir name>")
    eo.set_defaults(func=cmd_export_optuna)

    e = sub.add_parser("evaluate", help="sample (or load) one student and train it, with or without a teacher",
                       epilog=EXAMPLES["evaluate"])
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--generator", help="generator file to sample the student from")
    src.add_argument("--arch", help="architecture file (autokd.arch/1)")
    e.add_argument("--dataset", help="dataset name (see `autokd datasets`; default: the generator's source.dataset)")
    e.add_argument("--teacher", help="built-in name, checkpoint, TorchScript/export file or module:callable")
    e.add_argument("--teacher-weights", help="state dict for a module:callable teacher")
    e.add_argument("--epochs", type=EPOCHS, help="training budget in epochs (default: the budget best.json was scored "
                   "at, else 1)")
    e.add_argument("--subset", type=_typed("int", min=2, max=10**9), help="train on N images (validate on N/5)")
    e.add_argument("--seed", type=SEED, help="architecture seed (default: the generator's winner, else 0); also "
                   "seeds the split and training")
    e.add_argument("--param-limit", type=LIMIT, help="default: the generator's, else 4M / 6M")
    e.add_argument("--temperature", type=TEMPERATURE, help="KD temperature (default: generator file, else 4)")
    e.add_argument("--alpha", type=ALPHA, help="KD weight (default: generator file, else 0.9)")
    e.add_argument("--batch-size", type=_typed("int", min=1, max=65_536),
                   help="training batch (default: the search's recipe in best.json, else 128)")
    e.add_argument("--lr", type=LR, help="SGD learning rate (default: the search's, else 0.1)")
    e.add_argument("--lr-schedule", choices=("cosine", "step", "wsd"),
                   help="default: the search's, else cosine; see docs/training.md")
    e.add_argument("--preset", choices=("smoke", "paper"), default="paper", help="teacher size when one is trained")
    e.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    e.add_argument("--data-dir", help="look for the dataset's files here first")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("teacher", help="train or list teachers")
    tsub = t.add_subparsers(dest="teacher_command", required=True, parser_class=_Parser)
    tt = tsub.add_parser("train", help="train a teacher and write its checkpoint",
                         epilog="example:\n  autokd teacher train --arch vgg7 --dataset fashion-mnist --out t.pt")
    tt.add_argument("--arch", required=True, help="vgg7, darts, resnet18 or wrn-40-2")
    tt.add_argument("--dataset", required=True, help="dataset name (see `autokd datasets`)")
    tt.add_argument("--epochs", type=EPOCHS, help="default: the recipe's (vgg7 20, darts 600)")
    tt.add_argument("--out", help="checkpoint path (default: the cache, where --teacher NAME finds it)")
    tt.add_argument("--preset", choices=("smoke", "paper"), default="paper", help="smoke: small network, subset")
    tt.add_argument("--seed", type=SEED, default=0, help="initialisation and data order")
    tt.add_argument("--precision", choices=PRECISIONS, help="auto (the recipe's: fp32 on a CPU, bf16 on CUDA), fp32, "
                    "or bf16 (about 2x a step on a CPU with native bf16; the test accuracy says what it cost)")
    tt.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda if available)")
    tt.add_argument("--data-dir", help="look for the dataset's files here first")
    tt.set_defaults(func=cmd_teacher_train)
    tl = tsub.add_parser("list", help="built-in teacher architectures and their checkpoints")
    tl.set_defaults(func=cmd_teacher_list)

    d = sub.add_parser("datasets", help="list datasets and where their files resolve")
    d.add_argument("--data-dir", help="look here first")
    d.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    d.set_defaults(func=cmd_datasets)
    return p


def _log_internal_error(command: str) -> Path:
    """Write the traceback of an unexpected error to a log file; returns its path."""
    from autokd.data.registry import cache_root

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"autokd {__version__} {command}: {' '.join(sys.argv)}\n\n{traceback.format_exc()}"
    for folder in (cache_root() / "logs", Path("/tmp")):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"autokd-{stamp}-{os.getpid()}.log"
            path.write_text(text, errors="backslashreplace")  # an argument's non-UTF-8 bytes must not lose the log
            return path
        except OSError:
            continue
    return Path("/dev/null")


class _StderrLines(logging.Handler):
    """autokd's INFO messages (a teacher being trained, teacher logits being computed) as lines on the current
    sys.stderr: the library logs, the command line shows."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def _show_library_messages() -> None:
    log = logging.getLogger("autokd")
    if not any(isinstance(h, _StderrLines) for h in log.handlers):
        log.addHandler(_StderrLines())
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    _show_library_messages()
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"autokd {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"autokd {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK  # a closed pager: not an error
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line and a log, never a traceback
        log = _log_internal_error(args.command)
        print(f"autokd {args.command}: internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:200]} "
              f"(traceback in {log}; please report it)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
