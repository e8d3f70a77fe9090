"""A retrain sample's seconds, the step plan autokd.speed picks against the eager fused path, side by side in one run
(issue 33): the README run's winner (docs/deploy/retrain-cpu/best.json), the ResNet-8 and the plain CNN under the
100k limit, the cpu retrain recipe (batch 128, SGD 0.1, weight decay 5e-4, flips) on all 60,000 training images, one
thread each as the retrain's two workers run. Each path trains `--steps` steps (after its probe and compile); the
7-epoch sample is projected as probe + compile + 3,276 steps at the measured rate (+ one evaluation pass).

    python benchmarks/retrain_speed.py [--steps 120] [--json docs/benchmarks/retrain-speed.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cpu_throughput import commit, cpu_model  # noqa: E402

RETRAIN_STEPS = 7 * (60_000 // 128)


def build(name: str):
    from autokd.nn.handmade import build_handmade
    from autokd.nn.student import build_student
    from autokd.space.generator import sample_architecture

    if name == "winner":
        g = json.loads((HERE.parent / "docs" / "deploy" / "retrain-cpu" / "best.json").read_text())
        torch.manual_seed(15)
        return build_student(sample_architecture(g["generator"], 15, (1, 28, 28), 10, 100_000))
    torch.manual_seed(0)
    return build_handmade(name, (1, 28, 28), 10, 100_000)[0]


def one(name: str, speed: str, steps: int) -> dict:
    """Plan (probe, compile) for a full sample's steps, then `steps` real training steps and one test pass."""
    import torch.nn.functional as F

    from autokd.data.augment import Augment
    from autokd.data.dataset import load_dataset
    from autokd.data.loader import DeviceLoader
    from autokd.speed import plan_step
    from autokd.train import TrainConfig, count_macs_of, evaluate_accuracy, parameter_groups

    ds = load_dataset("fashion-mnist")
    cpu = torch.device("cpu")
    model = build(name)
    macs = count_macs_of(model, (1, 28, 28), cpu)
    run, plan = plan_step(model, (1, 28, 28), 128, 10, cpu, RETRAIN_STEPS, speed)
    opt = torch.optim.SGD(parameter_groups(model, TrainConfig(epochs=1, weight_decay=5e-4)), lr=0.1, momentum=0.9)
    loader = DeviceLoader(ds.train, 128, cpu, ds.info.mean, ds.info.std, Augment(pad=0, flip=True), shuffle=True,
                          seed=0, drop_last=True, channels_last=plan.channels_last)
    batches = loader.epoch(0)
    model.train()
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        b = next(batches)
        loss = F.cross_entropy(run(b.x), b.y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    per_step = (time.perf_counter() - t0) / steps
    t1 = time.perf_counter()
    evaluate_accuracy(model, DeviceLoader(ds.test, 1000, cpu, ds.info.mean, ds.info.std,
                                          channels_last=plan.channels_last))
    eval_s = time.perf_counter() - t1
    return {"student": name, "speed": speed, "plan": plan.to_json(), "ms_per_step": round(1000 * per_step, 1),
            "probe_seconds": plan.probe_seconds, "eval_seconds": round(eval_s, 1),
            "projected_sample_seconds": round(plan.probe_seconds + RETRAIN_STEPS * per_step + eval_s),
            "params": sum(p.numel() for p in model.parameters()), "macs": macs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--students", default="winner,resnet,cnn")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {cpu_model()}, torch {torch.__version__}, 1 thread; commit {commit()}", flush=True)
    rows = []
    for name in args.students.split(","):
        for speed in ("eager", "auto"):
            row = one(name, speed, args.steps)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "plan"}), row["plan"]["probe_ms"],
                  row["plan"]["layout"], "compiled" if row["plan"]["compiled"] else "", flush=True)
        a, b = rows[-2], rows[-1]
        print(f"{name}: step {a['ms_per_step']:.0f} → {b['ms_per_step']:.0f} ms ({a['ms_per_step'] / b['ms_per_step']:.2f}×); "
              f"projected 7-epoch sample {a['projected_sample_seconds']:.0f} → {b['projected_sample_seconds']:.0f} s "
              f"({a['projected_sample_seconds'] / b['projected_sample_seconds']:.2f}×)", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"cpu": cpu_model(), "commit": commit(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
