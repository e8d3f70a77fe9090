"""Student training throughput with KD from the DARTS teacher: the plain PyTorch way against autokd's path, in one
run, and the projected GPU-hours of the paper-scale search.

(a) plain: a CPU-side dataset with per-sample crop/flip/normalise through a DataLoader, fp32, a teacher forward
    every step, one trial on the device.
(b) autokd: images resident on the device, batched augmentation there, bf16 autocast + channels_last (CUDA), the
    teacher-logit cache instead of a teacher forward, k trials at once (k processes sharing the device).

    python benchmarks/throughput.py                       # GPU: synthetic CIFAR-100-shaped data, 50k images
    python benchmarks/throughput.py --cpu                 # a check that the GPU benchmark's code runs on a CPU
    (the CPU benchmark with the cpu preset's recipe is benchmarks/cpu_throughput.py)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from autokd.data.augment import Augment
from autokd.data.dataset import load_dataset
from autokd.data.loader import DeviceLoader
from autokd.kd.cache import CachedTeacher, load_or_build
from autokd.kd.loss import kd_loss
from autokd.kd.teacher import resolve_teacher
from autokd.nn.darts import DartsNetwork
from autokd.nn.student import build_student
from autokd.hpo.hyperband import schedule_summary
from autokd.space.generator import sample_architecture

HERE = Path(__file__).resolve().parent


class PlainDataset(torch.utils.data.Dataset):
    """Per-sample transforms on the CPU, the way torchvision's RandomCrop(32, 4) + RandomHorizontalFlip work."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, pad: int = 4) -> None:
        self.images, self.labels, self.pad = images, labels, pad
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i].float() / 255.0
        x = F.pad(x, (self.pad,) * 4)
        dy, dx = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        h, w = self.images.shape[2:]
        x = x[:, dy:dy + h, dx:dx + w]
        if torch.rand(()) < 0.5:
            x = x.flip(2)
        return (x - self.mean) / self.std, self.labels[i]


def plain_throughput(spec, ds, teacher, device, steps: int, batch: int, workers: int) -> float:
    student = build_student(spec).to(device)
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    loader = torch.utils.data.DataLoader(PlainDataset(ds.train.images, ds.train.labels, ds.info.mean, ds.info.std),
                                         batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    it = iter(loader)
    done, t0 = 0, None
    for step in range(steps + 3):  # 3 warm-up steps
        if step == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, done = time.perf_counter(), 0
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.no_grad():
            t = teacher(x)
        loss = kd_loss(student(x), y, t, 4.0, 0.9)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - t0)


def _autokd_worker(rank: int, args: dict, out: dict) -> None:
    device = torch.device(args["device"])
    torch.set_num_threads(max(1, args["threads"]))
    ds = load_dataset(args["dataset"])
    spec = sample_architecture(args["theta"], args["seed"], ds.input_shape, ds.num_classes, args["param_limit"])
    logits = torch.load(args["cache_path"], weights_only=True)["logits"]
    teacher = CachedTeacher(logits, ds.train, ds.train.image_ids(), device)
    cuda = device.type == "cuda"
    student = build_student(spec).to(device, memory_format=torch.channels_last if cuda else torch.preserve_format)
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, **({"fused": True} if cuda else {}))
    loader = DeviceLoader(ds.train, args["batch"], device, ds.info.mean, ds.info.std, Augment(pad=4), True, rank,
                          drop_last=True, channels_last=cuda)
    batches = loader.epoch(0)
    done, t0 = 0, None
    for step in range(args["steps"] + 3):
        if step == 3:
            if cuda:
                torch.cuda.synchronize()
            t0, done = time.perf_counter(), 0
        try:
            b = next(batches)
        except StopIteration:
            batches = loader.epoch(step)
            b = next(batches)
        with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False):
            s = student(b.x)
        loss = kd_loss(s, b.y, teacher(b), 4.0, 0.9)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += b.x.shape[0]
    if cuda:
        torch.cuda.synchronize()
    out[rank] = (done, t0, time.perf_counter())


def autokd_throughput(args: dict, k: int) -> float:
    """Aggregate images/s of k processes training at once (overlapping window of their timed phases)."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        procs = [ctx.Process(target=_autokd_worker, args=(r, args, out)) for r in range(k)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        res = dict(out)
    if len(res) < k:
        raise RuntimeError("a worker failed")
    total = sum(d for d, _, _ in res.values())
    start, end = min(s for _, s, _ in res.values()), max(e for _, _, e in res.values())
    return total / (end - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", action="store_true", help="CPU mode: small data, smoke-size teacher, k=1")
    ap.add_argument("--k", type=int, help="trials per device for autokd's path (GPU default 4)")
    ap.add_argument("--steps", type=int, help="timed steps per trial")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--configs", default=str(HERE / "throughput_configs.json"))
    ap.add_argument("--limit", type=int, default=4_000_000)
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if cuda else "cpu")
    dataset = "synthetic:3x32x32:100:50000" if cuda else "synthetic:3x32x32:100:512"
    k = args.k or (4 if cuda else 1)
    steps = args.steps or (50 if cuda else 4)
    limit = args.limit if cuda else 300_000
    ds = load_dataset(dataset)
    teacher_net = DartsNetwork(100, 3) if cuda else DartsNetwork(100, 3, C=8, layers=5)
    tmp = Path(tempfile.mkdtemp())
    ckpt = {"format": "autokd.teacher/1", "arch": "darts", "args": {"C": 36, "layers": 20, "auxiliary": True}
            if cuda else {"C": 8, "layers": 5, "auxiliary": True}, "num_classes": 100, "input_shape": [3, 32, 32],
            "mean": list(ds.info.mean), "std": list(ds.info.std), "state_dict": teacher_net.state_dict()}
    torch.save(ckpt, tmp / "teacher.pt")
    resolved = resolve_teacher(str(tmp / "teacher.pt"), ds, device=str(device), quiet=True)
    teacher = resolved.module
    t0 = time.perf_counter()
    logits, cache_path = load_or_build(resolved, ds.train, Augment(pad=4), ds.info.mean, ds.info.std, device)
    cache_seconds = time.perf_counter() - t0
    configs = json.loads(Path(args.configs).read_text())["configs"]
    rows = []
    for c in configs:
        spec = sample_architecture(c["theta"], c["seed"], ds.input_shape, ds.num_classes, limit)
        plain = plain_throughput(spec, ds, teacher, device, steps, args.batch, workers=min(8, os.cpu_count() or 1)
                                 if cuda else 0)
        fast = autokd_throughput({"device": str(device), "dataset": dataset, "theta": c["theta"], "seed": c["seed"],
                                  "param_limit": limit, "cache_path": str(cache_path), "batch": args.batch,
                                  "steps": steps, "threads": max(1, (os.cpu_count() or 2) // k)}, k)
        rows.append({"arch_seed": c["seed"], "ops": spec.op_count(), "width": spec.width,
                     "plain_img_s": round(plain, 1), "autokd_img_s": round(fast, 1), "ratio": round(fast / plain, 2)})
        print(json.dumps(rows[-1]), flush=True)
    plain_mean = sum(r["plain_img_s"] for r in rows) / len(rows)
    fast_mean = sum(r["autokd_img_s"] for r in rows) / len(rows)
    plan = schedule_summary([30.0, 60.0, 120.0], 2, 63)
    images = plan["epochs"] * 45_000  # train split of CIFAR-100
    print(json.dumps({"device": torch.cuda.get_device_name(0) if cuda else "cpu", "k": k, "steps": steps,
                      "batch": args.batch, "plain_img_s_mean": round(plain_mean, 1),
                      "autokd_img_s_mean": round(fast_mean, 1), "ratio": round(fast_mean / plain_mean, 2),
                      "cache_build_seconds": round(cache_seconds, 1), "paper_plan": plan,
                      "projected_device_hours_autokd": round((images / fast_mean + cache_seconds) / 3600, 2),
                      "projected_device_hours_plain": round(images / plain_mean / 3600, 2)}, indent=1))


if __name__ == "__main__":
    main()
