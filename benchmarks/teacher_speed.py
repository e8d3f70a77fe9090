"""A teacher's training step on this CPU in each layout and precision (issue 34: what a ≥ 95% teacher costs).

Forward + cross entropy + backward + SGD on a batch of random images of the dataset's shape, median of --steps
after two warm-up steps, each combination of memory layout (contiguous, channels_last) and precision (fp32, bf16
autocast: autokd.accel.autocast, the product's `--precision`). Prints ms per step and the projected seconds of one
epoch of --images images. Run it on a quiet machine (pause any long job: SIGSTOP).

    python benchmarks/teacher_speed.py [--arch vgg7] [--threads 1] [--steps 8] [--images 60000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from autokd.accel import autocast
from autokd.nn.teachers import build_teacher, teacher_arch


def step_ms(arch: str, channels_last: bool, precision: str, shape: tuple[int, int, int], classes: int,
            batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_teacher(arch, classes, shape[0], dict(teacher_arch(arch).args)).train()
    x, y = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        with autocast(torch.device("cpu"), precision):
            out = model(x)
        loss = F.cross_entropy((out[0] if isinstance(out, tuple) else out).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vgg7")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--images", type=int, default=60_000, help="images per epoch (Fashion-MNIST's training set)")
    ap.add_argument("--shape", default="1x28x28")
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split("x"))
    print(f"{args.arch}, {args.threads} thread(s), batch {args.batch}, {args.shape}, torch {torch.__version__}")
    print("| layout | precision | ms per step | s per epoch | × contiguous fp32 |")
    print("|---|---|---|---|---|")
    base = None
    for channels_last in (False, True):
        for precision in ("fp32", "bf16"):
            ms = step_ms(args.arch, channels_last, precision, shape, args.classes, args.batch, args.steps)
            base = base or ms
            epoch = ms / 1000 * -(-args.images // args.batch)
            print(f"| {'channels_last' if channels_last else 'contiguous'} | {precision} | {ms:.0f} | {epoch:.0f} | "
                  f"{base / ms:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
