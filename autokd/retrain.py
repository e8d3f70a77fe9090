"""`autokd retrain`: k architectures from the best generator, each trained long with KD, scored on the test set.

Layout of the output folder (resumable: a sample with a result.json is not trained again):
    sample-00/arch.json, student.pt, student.onnx, result.json    per sample
    summary.json, summary.md                                         over the samples, next to the teacher
"""

from __future__ import annotations

import json
import statistics
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from autokd.data.augment import Augment
from autokd.errors import UserError
from autokd.fsutil import write_atomic
from autokd.space.genfile import GeneratorFile, default_param_limit
from autokd.train import TrainConfig

# Final-training recipe (*choice*, the papers do not publish theirs): DARTS-like, at the student's search lr.
RETRAIN_RECIPE = TrainConfig(epochs=600, batch_size=128, lr=0.1, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                             augment=Augment(pad=4, flip=True, cutout=16))


@dataclass(frozen=True)
class RetrainSettings:
    dataset: str
    teacher: str | None  # checkpoint path or built-in name; None trains without KD
    param_limit: int
    samples: int = 8
    epochs: float = 600.0
    seed: int = 0
    data_dir: str | None = None
    device: str | None = None
    batch_size: int = RETRAIN_RECIPE.batch_size
    lr: float = RETRAIN_RECIPE.lr
    subset: int | None = None  # train on N training images (quick checks); None: the whole training set
    smoke_teacher: bool = False


def settings_for(gen: GeneratorFile, overrides: dict[str, Any]) -> RetrainSettings:
    """Dataset, teacher and limit default to the generator's `source`; explicit flags override."""
    from autokd.data.registry import dataset_info

    src = gen.source or {}
    dataset = overrides.get("dataset") or src.get("dataset")
    if not dataset:
        raise UserError("the generator file names no dataset (source.dataset); pass --dataset")
    info = dataset_info(dataset)
    teacher = overrides.get("teacher") or src.get("teacher")
    if gen.kd["alpha"] > 0 and not teacher:
        raise UserError("the generator uses KD (alpha > 0) but names no teacher; pass --teacher")
    values = {"dataset": dataset, "teacher": teacher if gen.kd["alpha"] > 0 else None,
              "param_limit": overrides.get("param_limit") or gen.param_limit or default_param_limit(info.input_shape),
              "data_dir": overrides.get("data_dir") or src.get("data_dir")}
    for key in ("samples", "epochs", "seed", "device", "batch_size", "lr", "subset", "smoke_teacher"):
        if overrides.get(key) is not None:
            values[key] = overrides[key]
    return RetrainSettings(**values)


def activation_mb(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Activation memory of one image's training forward pass: the bytes of every leaf module's output in fp32,
    all of which autograd keeps for the backward pass (MB)."""
    total = 0
    hooks = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        nonlocal total
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * 4

    for m in model.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was)
    for h in hooks:
        h.remove()
    return total / 2**20


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> str | None:
    """ONNX export with a dynamic batch dimension; returns None, or the reason it failed (kept in the result)."""
    model = model.cpu().eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: pooling sizes are fixed per architecture
            torch.onnx.export(model, (torch.zeros(2, *input_shape),), str(path), input_names=["images"],
                              output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                              dynamo=False)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def retrain_sample(index: int, gen_json: dict[str, Any], st: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Train sample `index` and write its files; plain data in and out (runs in a Ray worker too)."""
    from autokd.data.dataset import load_dataset
    from autokd.kd.teacher import OnTheFlyTeacher, resolve_teacher
    from autokd.nn.student import build_student
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_macs
    from autokd.train import KDConfig, train_and_evaluate

    s = RetrainSettings(**st)
    folder = Path(out_dir) / f"sample-{index:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(s.dataset, s.data_dir)
    seed = s.seed + index
    arch = sample_architecture(gen_json["generator"], seed, ds.input_shape, ds.num_classes, s.param_limit)
    write_atomic(folder / "arch.json", arch.dumps())
    train = ds.train
    if s.subset:
        train = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:s.subset])
    teacher = kd = None
    if s.teacher:
        teacher = OnTheFlyTeacher(resolve_teacher(s.teacher, ds, smoke=s.smoke_teacher, device=s.device,
                                                  quiet=True), ds.info.mean, ds.info.std)
        kd = KDConfig(**gen_json["kd"])
    torch.manual_seed(seed)
    model = build_student(arch)
    cfg = TrainConfig(**{**asdict(RETRAIN_RECIPE), "epochs": s.epochs, "batch_size": s.batch_size, "lr": s.lr,
                         "seed": seed, "augment": RETRAIN_RECIPE.augment})
    r = train_and_evaluate(model, train, ds.test, ds.info.mean, ds.info.std, cfg, device=s.device,
                           teacher=teacher, kd=kd, macs=count_macs(arch))
    result = {"sample": index, "seed": seed, "arch_id": arch.arch_id, "status": r.status, "test_acc": r.val_acc,
              "test_loss": r.val_loss, "params": r.params, "macs": r.macs, "seconds": r.seconds,
              "epochs": s.epochs, "train_images": len(train), "test_images": len(ds.test),
              "peak_memory_mb": r.peak_memory_mb, "device": r.device, "error": r.error}
    if r.status == "ok":
        result["activation_mb_per_image"] = round(activation_mb(model, ds.input_shape), 3)
        ckpt = {"format": "autokd.student/1", "arch": arch.to_json(),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "test_acc": r.val_acc, "kd": gen_json["kd"], "dataset": s.dataset}
        torch.save(ckpt, folder / ".student.pt.tmp")
        (folder / ".student.pt.tmp").replace(folder / "student.pt")
        result["onnx_error"] = export_onnx(model, ds.input_shape, folder / "student.onnx")
    write_atomic(folder / "result.json", json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def _teacher_summary(s: RetrainSettings) -> dict[str, Any] | None:
    if not s.teacher:
        return None
    from autokd.data.dataset import load_dataset
    from autokd.kd.teacher import resolve_teacher

    ds = load_dataset(s.dataset, s.data_dir)
    t = resolve_teacher(s.teacher, ds, smoke=s.smoke_teacher, device="cpu", quiet=True)
    return {"arch": t.meta["arch"], "path": str(t.path), "test_acc": t.meta.get("test_acc"),
            "params": sum(p.numel() for p in t.module.parameters()), "macs": t.meta.get("macs"),
            "activation_mb_per_image": round(activation_mb(t.module, ds.input_shape), 3),
            "epochs": t.meta.get("epochs"), "smoke": t.meta.get("smoke"), "test_images": t.meta.get("test_images")}


def summarise(results: list[dict[str, Any]], teacher: dict[str, Any] | None, s: RetrainSettings,
              gen: GeneratorFile) -> dict[str, Any]:
    ok = [r for r in results if r["status"] == "ok"]
    accs = [r["test_acc"] for r in ok]
    return {"generator": gen.to_json(), "settings": asdict(s), "samples": len(results), "ok": len(ok),
            "failed": len(results) - len(ok),
            "test_acc_mean": statistics.mean(accs) if accs else None,
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0 if accs else None,
            "test_acc_min": min(accs) if accs else None, "test_acc_max": max(accs) if accs else None,
            "params_mean": statistics.mean(r["params"] for r in ok) if ok else None,
            "macs_mean": statistics.mean(r["macs"] for r in ok) if ok else None,
            "teacher": teacher, "per_sample": sorted(results, key=lambda r: r["sample"])}


def summary_markdown(summary: dict[str, Any]) -> str:
    s, t = summary["settings"], summary["teacher"]
    lines = [f"# Retrain summary: {s['dataset']}", "",
             f"{summary['ok']} of {summary['samples']} samples from the generator, {s['epochs']:g} epochs each, "
             f"KD τ={summary['generator']['kd']['temperature']:.2f} α={summary['generator']['kd']['alpha']:.2f}"
             + (f" from {t['arch']}" if t else " (no teacher)") + ".", ""]
    if summary["test_acc_mean"] is not None:
        lines += [f"**Top-1 test accuracy: {100 * summary['test_acc_mean']:.2f}% ± {100 * summary['test_acc_std']:.2f}"
                  f"** (min {100 * summary['test_acc_min']:.2f}%, max {100 * summary['test_acc_max']:.2f}%)", ""]
    lines += ["| sample | arch_id | test top-1 | params | MACs | activations / image | seconds | status |",
              "|---|---|---|---|---|---|---|---|"]
    for r in summary["per_sample"]:
        acc = f"{100 * r['test_acc']:.2f}%" if r.get("test_acc") is not None else "-"
        act = f"{r['activation_mb_per_image']:.2f} MB" if r.get("activation_mb_per_image") else "-"
        lines.append(f"| {r['sample']} | {r['arch_id']} | {acc} | {r['params']:,} | {r['macs'] / 1e6:.1f}M | {act} "
                     f"| {r['seconds']:.0f} | {r['status']}{' (' + r['error'] + ')' if r.get('error') else ''} |")
    if t:
        acc = f"{100 * t['test_acc']:.2f}%" if t.get("test_acc") is not None else "-"
        lines += ["", "| teacher | test top-1 | test images | params | MACs | activations / image |",
                  "|---|---|---|---|---|---|",
                  f"| {t['arch']}{' (smoke)' if t.get('smoke') else ''} | {acc} | {t.get('test_images') or '-'} | "
                  f"{t['params']:,} | {(t['macs'] or 0) / 1e6:.1f}M | {t['activation_mb_per_image']:.2f} MB |"]
    lines += ["", "Activations: bytes of every layer output for one image in fp32 (what a training step keeps for "
              "the backward pass). Students are scored on the whole test set."]
    return "\n".join(lines) + "\n"


def run_retrain(gen: GeneratorFile, s: RetrainSettings, out_dir: Path, executor: str = "local",
                gpus_per_trial: float = 1.0, stream: TextIO | None = None) -> dict[str, Any]:
    from autokd.data.dataset import load_dataset

    stream = stream or sys.stderr
    load_dataset(s.dataset, s.data_dir)  # bad dataset: fail before anything is written
    teacher = _teacher_summary(s)  # trains a missing built-in teacher once, before the samples
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, Any]] = {}
    todo = []
    for i in range(s.samples):
        done = out_dir / f"sample-{i:02d}" / "result.json"
        if done.is_file():
            prev = json.loads(done.read_text())
            if prev.get("status") == "ok" and prev.get("epochs") == s.epochs:
                results[i] = prev
                print(f"retrain: sample {i} already done (test_acc {prev['test_acc']:.4f}), skipped", file=stream)
                continue
        todo.append(i)
    gen_json, st = gen.to_json(), asdict(s)
    if executor == "ray" and todo:
        import ray

        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        opts = {"num_gpus": gpus_per_trial} if ray.cluster_resources().get("GPU") else {"num_cpus": 1}
        task = ray.remote(retrain_sample).options(max_retries=0, **opts)
        refs = {task.remote(i, gen_json, st, str(out_dir)): i for i in todo}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            i = refs.pop(ready[0])
            results[i] = ray.get(ready[0])
            print(f"retrain: sample {i}: {results[i]['status']} test_acc {results[i]['test_acc']}", file=stream)
    else:
        for i in todo:
            print(f"retrain: sample {i + 1}/{s.samples}, {s.epochs:g} epochs ...", file=stream, flush=True)
            results[i] = retrain_sample(i, gen_json, st, str(out_dir))
            r = results[i]
            print(f"retrain: sample {i}: {r['status']}, test_acc {r['test_acc']}, {r['seconds']:.0f}s",
                  file=stream, flush=True)
    summary = summarise(list(results.values()), teacher, s, gen)
    write_atomic(out_dir / "summary.json", json.dumps(summary, indent=1, sort_keys=True) + "\n")
    write_atomic(out_dir / "summary.md", summary_markdown(summary))
    return summary
