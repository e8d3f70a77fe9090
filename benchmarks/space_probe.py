"""Why does the searched family lose to a hand-designed ResNet at 100k parameters? Candidate students under one
recipe, side by side: NAGO members of the cpu space (≥ 3 nodes a level, the 1280-channel head), the same with a
smaller head, smaller graphs, and the hand-designed students. Each trains with KD from the shipped VGG7 (cached
logits, flips) on a seeded subset of Fashion-MNIST's training split and is scored on 5,000 held-out images.

    python benchmarks/space_probe.py [--epochs 2] [--subset 16000] [--seeds 1] [--out docs/space-probe.json]

Results are appended per (candidate, seed) to the --out file as they finish; a rerun skips what is there.
Two single-thread processes at a time (one per core)."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

# name → (θ or hand-designed name, head channels). θ: G1/G2/G3 nodes, K, P as in the generator.
CPU_THETA = {"G1_nodes": 3, "G1_K": 5, "G1_P": 0.9459, "G2_nodes": 4, "G2_P": 0.2869, "G3_nodes": 3, "G3_K": 5,
             "G3_P": 0.5}  # benchmarks/cpu_configs.json config 1's shape (36 convolutions)


def _theta(g1: int, g2: int, g3: int, p2: float = 0.8) -> dict[str, Any]:
    return {"G1_nodes": g1, "G1_K": 2, "G1_P": 0.5, "G2_nodes": g2, "G2_P": p2, "G3_nodes": g3, "G3_K": 2,
            "G3_P": 0.5}


CANDIDATES: dict[str, tuple[Any, int]] = {
    "cpu-space 3/4/3, head 1280": (CPU_THETA, 1280),
    "cpu-space 3/4/3, head 256": (CPU_THETA, 256),
    "3/3/3 (smallest today), head 1280": (_theta(3, 3, 3), 1280),
    "3/3/3, head 256": (_theta(3, 3, 3), 256),
    "3/1/2, head 1280": (_theta(3, 1, 2), 1280),
    "3/1/2, head 256": (_theta(3, 1, 2), 256),
    "3/2/2, head 256": (_theta(3, 2, 2), 256),
    "4/1/2, head 256": (_theta(4, 1, 2), 256),
    "6/1/2, head 256": (_theta(6, 1, 2), 256),
    "3/1/1, head 256": (_theta(3, 1, 1), 256),
    "3/1/2, head 64": (_theta(3, 1, 2), 64),
    "3/2/2, head 64": (_theta(3, 2, 2), 64),
    "cpu-space 3/4/3, head 64": (CPU_THETA, 64),
    "6/1/2, head 128": (_theta(6, 1, 2), 128),
    "6/1/1, head 128": (_theta(6, 1, 1), 128),
    "6/2/2, head 128": (_theta(6, 2, 2), 128),
    "8/1/2, head 128": (_theta(8, 1, 2), 128),
    "6/1/3, head 128": (_theta(6, 1, 3), 128),
    "resnet (hand-designed)": ("resnet", 0),
    "cnn (hand-designed)": ("cnn", 0),
}


def run_one(name: str, seed: int, epochs: float, subset: int, q: Any) -> None:
    import torch

    torch.set_num_threads(1)
    from autokd.data.augment import Augment
    from autokd.data.dataset import load_dataset, train_val_split
    from autokd.kd.cache import CachedTeacher, load_or_build
    from autokd.kd.teacher import resolve_teacher
    from autokd.nn.handmade import build_handmade
    from autokd.nn.student import build_student
    from autokd.space.generator import sample_architecture
    from autokd.train import KDConfig, TrainConfig, train_and_evaluate

    what, head = CANDIDATES[name]
    ds = load_dataset("fashion-mnist")
    train, val = train_val_split(ds.train, 0.1, 0, subset, 5000)
    aug = Augment(pad=0, flip=True)
    cpu = torch.device("cpu")
    logits, _ = load_or_build(resolve_teacher("vgg7", ds, device="cpu"), train, aug, ds.info.mean, ds.info.std, cpu,
                              quiet=True)
    teacher = CachedTeacher(logits, train, train.image_ids(), cpu)
    torch.manual_seed(seed)
    if isinstance(what, str):
        model, width = build_handmade(what, ds.input_shape, ds.num_classes, 100_000)
        convs = None
    else:
        spec = sample_architecture(what, seed, ds.input_shape, ds.num_classes, 100_000, head_channels=head)
        torch.manual_seed(seed)
        model, width, convs = build_student(spec), spec.width, spec.op_count()
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.1, weight_decay=5e-4, augment_pad=aug.pad,
                      augment_flip=aug.flip, cutout=aug.cutout, eval_batch_size=256, seed=seed)
    t0 = time.time()
    r = train_and_evaluate(model, train, val, ds.info.mean, ds.info.std, cfg, device="cpu", teacher=teacher,
                           kd=KDConfig(4.0, 0.9))
    q.put({"candidate": name, "seed": seed, "val_acc": r.eval_acc, "params": r.params, "width": width,
           "convs": convs, "head": head or None, "seconds": round(time.time() - t0, 1),
           "img_per_s": round(epochs * len(train) / max(1e-9, time.time() - t0), 1), "status": r.status,
           "epochs": epochs, "subset": subset})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--subset", type=int, default=16_000)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--only", default=None, help="candidate names separated by ;")
    ap.add_argument("--out", default="docs/space-probe.json")
    args = ap.parse_args()
    out = Path(args.out)
    rows = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["candidate"], r["seed"], r["epochs"], r["subset"]) for r in rows}
    names = args.only.split(";") if args.only else list(CANDIDATES)
    todo = [(n, s) for s in range(args.seeds) for n in names if (n, s, args.epochs, args.subset) not in done]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    running: dict[tuple[str, int], Any] = {}
    while todo or running:
        while todo and len(running) < 2:
            n, s = todo.pop(0)
            p = ctx.Process(target=run_one, args=(n, s, args.epochs, args.subset, q))
            p.start()
            running[(n, s)] = p
        row = q.get()
        running.pop((row["candidate"], row["seed"])).join()
        rows.append(row)
        out.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"{row['candidate']:36s} seed {row['seed']}: {100 * (row['val_acc'] or 0):.2f}%  "
              f"{row['params']:,} params, width {row['width']}, convs {row['convs']}, {row['img_per_s']} img/s",
              flush=True)


if __name__ == "__main__":
    main()
