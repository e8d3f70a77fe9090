"""Each CPU lever alone, A against B in the same process (alternating, median of rounds), on one configuration of
benchmarks/cpu_configs.json. Run through `python benchmarks/cpu_throughput.py --levers`."""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

ROUNDS = 3


def _steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, autocast: bool = False) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return n * x.shape[0] / (time.perf_counter() - t0)


def _eval(model: torch.nn.Module, x: torch.Tensor, batch: int) -> float:
    model.eval()
    with torch.inference_mode():
        model(x[:batch])
        t0 = time.perf_counter()
        for i in range(0, x.shape[0], batch):
            model(x[i:i + batch])
    model.train()
    return x.shape[0] / (time.perf_counter() - t0)


def ab(name: str, a: Callable[[], float], b: Callable[[], float], unit: str = "img/s") -> dict[str, Any]:
    ra, rb = [], []
    for _ in range(ROUNDS):
        ra.append(a())
        rb.append(b())
    ma, mb = statistics.median(ra), statistics.median(rb)
    print(f"{name}: {ma:.0f} → {mb:.0f} {unit} ({mb / ma:.2f}×)", flush=True)
    return {"lever": name, "a": ma, "b": mb, "ratio": mb / ma}


def _proc_rate(cfg: dict, threads: int, arithmetic: str, q: Any) -> None:
    torch.set_num_threads(threads)
    from cpu_throughput import student

    model, _ = student(cfg, arithmetic)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    q.put(_steps(model, x, y, 8))


def _parallel(cfg: dict, procs: int, threads: int, arithmetic: str = "fused") -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=_proc_rate, args=(cfg, threads, arithmetic, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total


def _malloc_rate(env: dict[str, str]) -> float:
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import json,torch,sys; sys.path.insert(0,{here!r}); from levers import _steps; "
            f"from cpu_throughput import student; cfg=json.load(open({here!r}+'/cpu_configs.json'))['configs'][1]; "
            "torch.set_num_threads(2); m,_=student(cfg,'fused'); "
            "print(_steps(m, torch.randn(128,1,28,28), torch.randint(0,10,(128,)), 8))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines:
        raise RuntimeError(f"malloc lever child (exit {out.returncode}): {out.stderr[-500:]}")
    return float(lines[-1])


def measure_levers(configs: list[dict]) -> list[dict[str, Any]]:
    from cpu_throughput import cpu_model, student

    cfg = configs[1]
    torch.set_num_threads(os.cpu_count() or 1)
    if os.environ.get("LEVERS_REST"):  # only the process-level levers and the teacher (debugging)
        fused, _ = student(cfg, "fused")
        return measure_rest(cfg, torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,)), fused, os.cpu_count() or 1)
    print(f"levers on config 1 ({cfg['ops']} ops), {cpu_model()}, {torch.get_num_threads()} threads, batch 128")
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    val = torch.randn(5000, 1, 28, 28)
    ref, _ = student(cfg, "reference")
    fused, _ = student(cfg, "fused")
    op_by_op, _ = student(cfg, "fused")
    op_by_op.wavefront = False
    ops = sum(len(g.ops) for p in fused.programs for g in p.groups)
    convs = sum(p.convolutions for p in fused.programs)
    out = [ab(f"wavefront: ops reading one tensor as one convolution ({ops} → {convs} convolutions; training)",
              lambda: _steps(op_by_op, x, y, 6), lambda: _steps(fused, x, y, 6)),
           ab("wavefront (validation, batch 256)", lambda: _eval(op_by_op, val, 256), lambda: _eval(fused, val, 256)),
           ab("fused arithmetic (training)", lambda: _steps(ref, x, y, 6), lambda: _steps(fused, x, y, 6)),
           ab("fused arithmetic + BN folded (validation, batch 1000)", lambda: _eval(ref, val, 1000),
              lambda: _eval(fused, val, 1000)),
           ab("validation batch 1000 → 256 (fused)", lambda: _eval(fused, val, 1000), lambda: _eval(fused, val, 256)),
           ab("validation batch 1000 → 128 (fused)", lambda: _eval(fused, val, 1000), lambda: _eval(fused, val, 128))]
    cl, _ = student(cfg, "reference")
    cl = cl.to(memory_format=torch.channels_last)
    xcl = x.contiguous(memory_format=torch.channels_last)
    out.append(ab("channels_last (reference arithmetic)", lambda: _steps(ref, x, y, 6),
                  lambda: _steps(cl, xcl, y, 6)))
    if torch.backends.mkldnn.is_available() and getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported",
                                                        lambda: False)():
        out.append(ab("bf16 autocast", lambda: _steps(fused, x, y, 6), lambda: _steps(fused, x, y, 6, True)))
    else:
        timed = ab("bf16 autocast (no native bf16 on this CPU: emulated)", lambda: _steps(fused, x, y, 4),
                   lambda: _steps(fused, x, y, 4, True))
        out.append(timed)
    cores = os.cpu_count() or 1
    return out + measure_rest(cfg, x, y, fused, cores)


def measure_rest(cfg: dict, x: torch.Tensor, y: torch.Tensor, fused: torch.nn.Module,
                 cores: int) -> list[dict[str, Any]]:
    from autokd.data.augment import Augment
    from autokd.data.dataset import load_dataset, train_val_split
    from autokd.kd.cache import compute_logits
    from autokd.kd.teacher import OnTheFlyTeacher, resolve_teacher

    out = []
    out.append(ab(f"1 process × {cores} threads → {cores} processes × 1 thread (aggregate)",
                  lambda: _parallel(cfg, 1, cores), lambda: _parallel(cfg, cores, 1)))
    out.append(ab("glibc malloc defaults → MALLOC_MMAP_MAX_=0 (no mmap per large tensor)",
                  lambda: _malloc_rate({}), lambda: _malloc_rate({"MALLOC_MMAP_MAX_": "0",
                                                                  "MALLOC_TRIM_THRESHOLD_": "4294967296"})))
    # The teacher: a forward every step against gathering cached logits; and what building the cache costs.
    ds = load_dataset("fashion-mnist")
    train, _ = train_val_split(ds.train, 0.1, 0, 10_000, 5000)
    teacher = resolve_teacher("vgg7", ds, device="cpu")
    live = OnTheFlyTeacher(teacher, ds.info.mean, ds.info.std)
    t0 = time.perf_counter()
    for _ in range(5):
        live.logits(x)
    forward_s = (time.perf_counter() - t0) / 5
    step_s = 128 / _steps(fused, x, y, 6)
    t0 = time.perf_counter()
    compute_logits(teacher, train.subset(torch.arange(2000)), Augment(pad=0, flip=True), ds.info.mean, ds.info.std,
                   torch.device("cpu"))
    per_view_image = (time.perf_counter() - t0) / 4000
    print(f"teacher: a forward of a batch of 128 costs {forward_s * 1000:.0f} ms = {forward_s / step_s:.0%} of a "
          f"student step; the cache costs {per_view_image * 1e3:.2f} ms per (image, view): for 10,000 images it "
          f"pays after {2 * 10_000 * per_view_image / (forward_s / 128) / 10_000:.1f} epochs with flips only (2 views), "
          f"after {50 * 10_000 * per_view_image / (forward_s / 128) / 10_000:.0f} epochs with crop pad 2 + flip "
          f"(50 views), {162 * 10_000 * per_view_image / (forward_s / 128) / 10_000:.0f} with pad 4 (162 views)")
    t0 = time.perf_counter()
    from autokd.data import dataset as dataset_module

    dataset_module._CACHE.clear()
    load_dataset("fashion-mnist")
    print(f"loading Fashion-MNIST: {time.perf_counter() - t0:.2f}s per process (a worker loads it once, not per "
          f"trial)")
    return out
