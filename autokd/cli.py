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
