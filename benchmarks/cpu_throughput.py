"""Search trials per hour on a CPU: the plain PyTorch way against autokd's path, in one run, on real Fashion-MNIST.

(a) plain: one process with torch's default threads, a DataLoader with per-sample transforms (flip, normalise),
    fp32 plain modules, a forward of the shipped VGG7 teacher every step, validation through a DataLoader, one trial
    at a time.
(b) autokd: `workers` processes with one thread each (`ProcessExecutor`), the fused CPU arithmetic, images resident
    as uint8 tensors with batched flips, teacher logits from the per-view cache (2 views: flip), validation with
    BatchNorm folded into the convolutions.

Both use the cpu preset's recipe (batch 128, SGD, flip only) on the configurations in benchmarks/cpu_configs.json.
A trial is the cpu preset's mean evaluation: `--trial-images` training images (default: the mean over the preset's
plan) plus one pass over the 5,000 validation images. Rates are measured over `--steps` timed steps and one full
validation pass per configuration; trials per hour follow from them.

Also reported: the student's useful GFLOP/s (3 × 2 × MACs per training image) next to a plain 5-layer CNN's,
trained in the same run with every core (the efficiency ratio).

    python benchmarks/cpu_throughput.py                 # ≈ 6 minutes on 2 cores
    python benchmarks/cpu_throughput.py --levers        # each lever alone, on one configuration
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
VAL_IMAGES = 5000


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=HERE).stdout.strip()
    except OSError:
        return "?"


def data():
    from autokd.data.dataset import load_dataset, train_val_split

    ds = load_dataset("fashion-mnist")
    train, val = train_val_split(ds.train, 0.1, 0, 10_000, VAL_IMAGES)
    return ds, train, val


def student(cfg: dict[str, Any], arithmetic: str):
    from autokd.nn.student import build_student
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_macs

    spec = sample_architecture(cfg["theta"], cfg["seed"], (1, 28, 28), 10, 100_000)
    torch.manual_seed(cfg["seed"])
    return build_student(spec, arithmetic), count_macs(spec)


# ------------------------------------------------------------------------------------------------ (a) plain
class PlainDataset(torch.utils.data.Dataset):
    """Per-sample transforms in Python, as torchvision's RandomHorizontalFlip + ToTensor + Normalize do."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, flip: bool) -> None:
        self.images, self.labels, self.flip = images, labels, flip
        self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i].float() / 255.0
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(2)
        return (x - self.mean) / self.std, self.labels[i]


def plain_rates(cfg: dict[str, Any], steps: int) -> dict[str, float]:
    from autokd.kd.loss import kd_loss
    from autokd.kd.teacher import resolve_teacher

    ds, train, val = data()
    teacher = resolve_teacher("vgg7", ds, device="cpu").module
    model, macs = student(cfg, "reference")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(PlainDataset(train.images, train.labels, ds.info.mean, ds.info.std, True),
                                         batch_size=128, shuffle=True, drop_last=True)
    it = iter(loader)
    done, t0 = 0, 0.0
    for step in range(steps + 2):
        if step == 2:
            t0, done = time.perf_counter(), 0
        x, y = next(it)
        with torch.no_grad():
            t = teacher(x)
        loss = kd_loss(model(x), y, t, cfg["temperature"], cfg["alpha"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += x.shape[0]
    train_rate = done / (time.perf_counter() - t0)
    model.eval()
    vloader = torch.utils.data.DataLoader(PlainDataset(val.images, val.labels, ds.info.mean, ds.info.std, False),
                                          batch_size=128)
    t0 = time.perf_counter()
    with torch.no_grad():
        for x, _ in vloader:
            model(x)
    return {"train_img_s": train_rate, "eval_s": time.perf_counter() - t0, "macs": macs}


# ------------------------------------------------------------------------------------------------ (b) autokd
def autokd_rates(cfg: dict[str, Any], steps: int, threads: int, trial_steps: float = 100.0,
                 speed: str = "auto") -> dict[str, Any]:
    from autokd.data.augment import Augment
    from autokd.data.loader import DeviceLoader
    from autokd.kd.cache import CachedTeacher, load_or_build
    from autokd.kd.loss import kd_loss
    from autokd.kd.teacher import resolve_teacher
    from autokd.speed import plan_step
    from autokd.train import evaluate_accuracy, parameter_groups, TrainConfig

    torch.set_num_threads(threads)
    ds, train, val = data()
    aug = Augment(pad=0, flip=True)
    cpu = torch.device("cpu")
    logits, _ = load_or_build(resolve_teacher("vgg7", ds, device="cpu"), train, aug, ds.info.mean, ds.info.std, cpu,
                              quiet=True)
    teacher = CachedTeacher(logits, train, train.image_ids(), cpu)
    model, macs = student(cfg, "auto")
    # the product's choice for a mean trial of this many steps (autokd.speed): its probe is part of the trial's cost
    run, plan = plan_step(model, (1, 28, 28), 128, 10, cpu, round(trial_steps), speed)
    opt = torch.optim.SGD(parameter_groups(model, TrainConfig(epochs=1, weight_decay=5e-4)), lr=0.1, momentum=0.9)
    loader = DeviceLoader(train, 128, cpu, ds.info.mean, ds.info.std, aug, shuffle=True, seed=cfg["seed"],
                          drop_last=True, channels_last=plan.channels_last)
    batches = loader.epoch(0)
    done, t0 = 0, 0.0
    for step in range(steps + 2):
        if step == 2:
            t0, done = time.perf_counter(), 0
        b = next(batches)
        loss = kd_loss(run(b.x), b.y, teacher(b), cfg["temperature"], cfg["alpha"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += b.x.shape[0]
    train_rate = done / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    evaluate_accuracy(model, DeviceLoader(val, 1000, cpu, ds.info.mean, ds.info.std,
                                          channels_last=plan.channels_last))
    return {"train_img_s": train_rate, "eval_s": time.perf_counter() - t0 + plan.probe_seconds, "macs": macs,
            "plan": plan.to_json()}


def _autokd_worker(indices: list[int], configs: list[dict], steps: int, threads: int, trial_steps: float,
                   speed: str, out: Any) -> None:
    from autokd.executors import configure_process

    configure_process(threads)
    for i in indices:
        out.put((i, autokd_rates(configs[i], steps, threads, trial_steps, speed)))


def autokd_parallel(configs: list[dict], steps: int, workers: int, trial_steps: float = 100.0,
                    speed: str = "auto") -> dict[int, dict[str, Any]]:
    """Each worker takes every workers-th configuration, all at once, as the search's workers do."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_autokd_worker, args=(list(range(w, len(configs), workers)), configs, steps, 1,
                                                       trial_steps, speed, q))
             for w in range(workers)]
    for p in procs:
        p.start()
    results = dict(q.get() for _ in configs)
    for p in procs:
        p.join()
    return results


# ------------------------------------------------------------------------------------------------ reference CNN
def plain_cnn_gflops(steps: int = 8) -> float:
    """Useful GFLOP/s of a plain 5-layer CNN (22M MACs per image) trained with every core: what this machine
    demonstrably does on convolutions."""
    def block(a: int, b: int) -> list[nn.Module]:
        return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]

    net = nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                        nn.MaxPool2d(2), *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
    from autokd.train import count_macs_of

    macs = count_macs_of(net, (1, 28, 28), torch.device("cpu"))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    rate = steps * 128 / (time.perf_counter() - t0)
    return 6 * macs * rate / 1e9


def preset_trial_images() -> float:
    from autokd.config import apply_preset
    from autokd.hpo.hyperband import schedule_summary
    from autokd.hpo.plan import split_sizes

    st = apply_preset("cpu", {"dataset": "fashion-mnist"})
    sched = schedule_summary(st.budgets(), st.eta, st.iterations, st.bracket_rounding)
    train, _ = split_sizes(st, 60_000)
    return sched["epochs"] * train / sched["evaluations"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="timed training steps per configuration and path")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--trial-images", type=float, help="training images per trial (default: the cpu preset's mean)")
    ap.add_argument("--levers", action="store_true", help="measure each lever alone instead")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--configs", default=str(HERE / "cpu_configs_small.json"),
                    help="configurations (default: the cpu preset's current space, nago-small; cpu_configs.json: the "
                    "previous cpu space, for the figures recorded with it)")
    ap.add_argument("--speed", default="auto", choices=("auto", "eager", "channels_last", "compile"),
                    help="autokd's step plan (autokd.speed; eager: the fused path as before the probe)")
    args = ap.parse_args()
    configs = json.loads(Path(args.configs).read_text())["configs"]
    if args.levers:
        from levers import measure_levers  # benchmarks/levers.py

        measure_levers(configs)
        return
    trial_images = args.trial_images or preset_trial_images()
    t_start = time.time()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
          f"default threads; commit {commit()}; trial = {trial_images:,.0f} training images + {VAL_IMAGES:,} "
          f"validation images; configurations {Path(args.configs).name}; speed {args.speed}", flush=True)
    cnn = plain_cnn_gflops()
    plain = {i: plain_rates(c, args.steps) for i, c in enumerate(configs)}
    fast = autokd_parallel(configs, args.steps, args.workers, trial_images / 128, args.speed)
    rows, ratios = [], []
    for i, c in enumerate(configs):
        p, f = plain[i], fast[i]
        p_trial = trial_images / p["train_img_s"] + p["eval_s"]
        f_trial = trial_images / f["train_img_s"] + f["eval_s"]
        p_tph, f_tph = 3600 / p_trial, args.workers * 3600 / f_trial
        p_gf = 6 * p["macs"] * p["train_img_s"] / 1e9
        f_gf = 6 * f["macs"] * f["train_img_s"] * args.workers / 1e9
        ratios.append(f_tph / p_tph)
        rows.append({"config": i, "ops": c["ops"], "plain_img_s": p["train_img_s"], "autokd_img_s_per_worker":
                     f["train_img_s"], "plain_eval_s": p["eval_s"], "autokd_eval_s": f["eval_s"],
                     "plain_trials_per_hour": p_tph, "autokd_trials_per_hour": f_tph, "ratio": f_tph / p_tph,
                     "plain_gflops": p_gf, "autokd_gflops": f_gf, "plan": f.get("plan")})
        print(f"config {i} ({c['ops']} ops): plain {p['train_img_s']:.0f} img/s, eval {p['eval_s']:.1f}s → "
              f"{p_tph:.1f} trials/h | autokd {args.workers}×{f['train_img_s']:.0f} img/s, eval {f['eval_s']:.1f}s → "
              f"{f_tph:.1f} trials/h | ratio {f_tph / p_tph:.2f} | student GFLOP/s {p_gf:.1f} → {f_gf:.1f} | "
              f"{f['plan']['layout']}{' compiled' if f['plan']['compiled'] else ''}",
              flush=True)
    mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    print(f"\nmean: plain {mean('plain_trials_per_hour'):.1f} trials/h, autokd {mean('autokd_trials_per_hour'):.1f} "
          f"trials/h, ratio {sum(ratios) / len(ratios):.2f} (min {min(ratios):.2f})")
    print(f"useful GFLOP/s: plain CNN {cnn:.1f}; student plain way {mean('plain_gflops'):.1f} "
          f"({mean('plain_gflops') / cnn:.0%}), autokd path {mean('autokd_gflops'):.1f} "
          f"({mean('autokd_gflops') / cnn:.0%} of the CNN's)")
    print(f"benchmark wall time {time.time() - t_start:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "cnn_gflops": cnn, "trial_images": trial_images,
                                               "cpu": cpu_model(), "commit": commit()}, indent=1))


if __name__ == "__main__":
    main()
