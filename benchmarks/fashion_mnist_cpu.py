"""Real learning on CPU: one student under the smoke settings (100k-parameter limit, ≤ 4 nodes per level,
batch 64, lr 0.05) trained on real Fashion-MNIST's training split, scored on the 6,000-image validation split.

    python benchmarks/fashion_mnist_cpu.py [--generator examples/smoke-generator.json] [--epochs 3] [--teacher T]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from autokd.data.dataset import load_dataset, train_val_split
from autokd.kd.teacher import OnTheFlyTeacher, resolve_teacher
from autokd.nn.student import build_student
from autokd.space.generator import sample_architecture
from autokd.space.genfile import load_generator
from autokd.space.plan import count_macs
from autokd.train import KDConfig, TrainConfig, train_and_evaluate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--generator", default="examples/smoke-generator.json")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher", help="KD from this teacher (smoke size when a built-in name)")
    ap.add_argument("--subset", type=int)
    args = ap.parse_args()
    t_start = time.perf_counter()
    ds = load_dataset("fashion-mnist")
    gen = load_generator(args.generator)
    spec = sample_architecture(gen.generator, args.seed, ds.input_shape, ds.num_classes, gen.param_limit or 100_000)
    train, val = train_val_split(ds.train, seed=args.seed, subset=args.subset)
    teacher = kd = None
    if args.teacher:
        teacher = OnTheFlyTeacher(resolve_teacher(args.teacher, ds, smoke=True), ds.info.mean, ds.info.std)
        kd = KDConfig(**gen.kd)
    torch.manual_seed(args.seed)
    cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=0.05, seed=args.seed)
    r = train_and_evaluate(build_student(spec), train, val, ds.info.mean, ds.info.std, cfg, teacher=teacher, kd=kd,
                           macs=count_macs(spec),
                           progress=lambda p: print(f"epoch {p['epoch']}/{p['epochs']} loss {p['train_loss']:.4f} "
                                                    f"{p['seconds']:.0f}s", flush=True))
    print(json.dumps({"arch_id": spec.arch_id, "params": r.params, "macs": r.macs, "width": spec.width,
                      "ops": spec.op_count(), "train_images": len(train), "val_images": len(val),
                      "epochs": args.epochs, "status": r.status, "val_acc": r.eval_acc, "train_seconds": r.seconds,
                      "seconds_per_epoch": r.seconds / args.epochs, "total_seconds": time.perf_counter() - t_start,
                      "threads": torch.get_num_threads(), "teacher": args.teacher}, indent=1))


if __name__ == "__main__":
    main()
