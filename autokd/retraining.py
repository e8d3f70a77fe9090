"""`autokd retrain`: k architectures of the best generator (the search's winner first), each trained long with KD,
scored on the test set; or k seeds of a hand-designed student under the same limit, teacher and recipe.

Layout of the output folder (one owner at a time: it is locked; resumable: a sample whose result.json records the
same generator, seed and recipe is not trained again; a long sample saves its training state every few minutes):
    sample-00/arch.json, student.pt, student.onnx, result.json    per sample (train-state.pt while training)
    summary.json, summary.md                                         over the samples, next to the teacher
"""

from __future__ import annotations

import hashlib
import io
import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from autokd.data.augment import Augment
from autokd.deploy import activation_mb, export_onnx, int8_variant
from autokd.errors import UserError
from autokd.executors import DONE, ERROR, Executor, Job, RemoteTraceback, make_executor
from autokd.fsutil import read_json, write_atomic, write_json
from autokd.progress import Board, fmt_seconds
from autokd.runlock import RunLock
from autokd.space.genfile import GeneratorFile, default_param_limit
from autokd.config import RETRAIN_FIELDS, RetrainSettings, retrain_preset, without_kd
from autokd.recipe import DEFAULT_KD
from autokd.train import TrainConfig
from autokd.validate import check_object, identity

STUDENT_FORMAT = "autokd.student/1"


def settings_for(gen: GeneratorFile | None, overrides: dict[str, Any], preset: str | None = None,
                 experiment: dict[str, Any] | None = None) -> RetrainSettings:
    """Dataset, teacher and limit default to the generator's `source`; then the search preset's retrain values,
    an experiment file's `retrain:` section, and explicit flags, each overriding the one before."""
    from autokd.data.registry import dataset_info
    from autokd.kd.teacher import default_teacher

    src = (gen.source if gen else {}) or {}
    dataset = overrides.get("dataset") or src.get("dataset")
    if not dataset:
        raise UserError("the generator file names no dataset (source.dataset); pass --dataset")
    info = dataset_info(dataset)
    limit = (gen.param_limit if gen else None) or default_param_limit(info.input_shape)
    values: dict[str, Any] = {"dataset": dataset, "param_limit": limit,
                              "data_dir": src.get("data_dir"), "teacher": src.get("teacher"),
                              "teacher_weights": src.get("teacher_weights")}
    if gen is not None and src.get("seed") is not None:
        values["winner_seed"] = int(src["seed"])
    values.update(retrain_preset(preset))
    if gen is not None and "loss" in gen.kd:  # the search chose the KD loss: the family retrains with it
        values.update({"kd_loss" if k == "loss" else k: v for k, v in gen.kd.items() if k not in ("temperature",
                                                                                                  "alpha")})
    if experiment:
        values.update(experiment)
    values.update({k: v for k, v in overrides.items() if v is not None})
    alpha = values.get("alpha") if values.get("alpha") is not None else (gen.kd["alpha"] if gen else 0.9)
    if alpha > 0 and not values.get("teacher"):
        values["teacher"] = default_teacher(dataset)
    if alpha == 0:
        values["teacher"] = None
    checked = check_object(values, RETRAIN_FIELDS, "retrain settings")
    from autokd.nn.handmade import HANDMADE

    if checked.get("student"):
        if checked["student"] not in HANDMADE:
            raise UserError(f"unknown hand-designed student {checked['student']!r}; choose from {', '.join(HANDMADE)}")
        checked["baselines"] = None  # a hand-designed student is itself the baseline
    if checked.get("baselines") in ("", "none"):
        checked["baselines"] = None
    for name in baseline_names(checked.get("baselines")):
        if name not in HANDMADE:
            raise UserError(f"--baselines: unknown hand-designed student {name!r}; choose from {', '.join(HANDMADE)} "
                            "(comma-separated), or none")
    from autokd.config import check_device

    check_device(checked.get("device"))
    settings = RetrainSettings(**checked)
    return without_kd(settings) if alpha == 0 else settings


def baseline_names(value: str | None) -> list[str]:
    return [b.strip() for b in (value or "").split(",") if b.strip()]


def baseline_settings(s: RetrainSettings, name: str) -> RetrainSettings:
    """A hand-designed baseline under the family's limit, data, teacher, epochs and recipe, with the standard KD
    setting (τ = 4, α = 0.9; no KD when the family trains without it): a fair fight, never a weakened one."""
    kd_on = bool(s.teacher) and (s.alpha is None or s.alpha > 0)
    baseline = replace(s, student=name, baselines=None, winner_seed=None)
    return replace(baseline, temperature=DEFAULT_KD.temperature, alpha=DEFAULT_KD.alpha) if kd_on \
        else without_kd(baseline)


# ------------------------------------------------------------------------------------------------ one sample
def sample_seed(s: RetrainSettings, index: int) -> int:
    """Sample 0 is the search's winner (its architecture seed); the others are fresh seeds of the family."""
    if index == 0 and s.winner_seed is not None:
        return s.winner_seed
    seed = s.seed + index
    return seed + 1_000_003 if s.winner_seed is not None and seed == s.winner_seed else seed


def _teacher_kd(s: RetrainSettings, gen_json: dict[str, Any] | None) -> dict[str, float] | None:
    kd = {k: gen_json["kd"][k] for k in ("temperature", "alpha")} if gen_json else asdict(DEFAULT_KD)
    if s.temperature is not None:
        kd["temperature"] = s.temperature
    if s.alpha is not None:
        kd["alpha"] = s.alpha
    return kd if s.teacher and kd["alpha"] > 0 else None


def sample_identity(index: int, gen_json: dict[str, Any] | None, st: dict[str, Any],
                    teacher_fp: str | None) -> dict[str, Any]:
    """What a sample's result must match to be reused: generator (or hand-made student), seed, recipe, data,
    teacher."""
    s = RetrainSettings(**st)
    # settings that never change a sample's result are declared so (same_result=True, autokd.config); the seed and
    # the teacher are recorded apart (below; the teacher by its fingerprint), and where a sample ran (device) is
    # not part of what it is, as in every release before
    recipe = identity(s, exclude=("seed", "winner_seed", "teacher", "device"))
    return {"generator": {k: gen_json.get(k) for k in ("space", "generator", "kd", "param_limit", "merge_width")}
            if gen_json
            else None, "seed": sample_seed(s, index), "recipe": recipe, "teacher": teacher_fp}


def retrain_sample(index: int, gen_json: dict[str, Any] | None, st: dict[str, Any], out_dir: str,
                   progress: Any = None) -> dict[str, Any]:
    """Train sample `index` and write its files; plain data in and out (runs in a worker process too). The student
    is made and trained by autokd.factory, as search trials and evaluate are."""
    from autokd.factory import Architecture, DataSplit, TeacherSource, fit, prepare
    from autokd.train import Checkpointing, KDConfig, pick_device

    s = RetrainSettings(**st)
    folder = Path(out_dir) / f"sample-{index:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    seed = sample_seed(s, index)
    if s.student:
        arch = Architecture(seed, handmade=s.student, param_limit=s.param_limit)
    else:
        assert gen_json is not None
        arch = Architecture(seed, generator=gen_json["generator"], merge_width=gen_json.get("merge_width", "cell"),
                            param_limit=s.param_limit)
    kd = _teacher_kd(s, gen_json)
    cfg = replace(TrainConfig.of(s, s.epochs), seed=seed)
    teacher = TeacherSource(str(s.teacher), s.teacher_weights, smoke=s.smoke_teacher,
                            cached=use_cache(s, cfg.augment, pick_device(s.device))) if kd is not None else None
    student = prepare(arch, s.dataset, DataSplit("test", seed, subset=s.subset), cfg, teacher=teacher,
                      kd=KDConfig(**kd) if kd else None, device=s.device, data_dir=s.data_dir)
    ds, train, model, arch_id, arch_json = student.ds, student.train, student.model, student.arch_id, student.arch_json
    if student.spec is not None:
        write_atomic(folder / "arch.json", student.spec.dumps())
    else:
        write_json(folder / "arch.json", arch_json)
    identity = sample_identity(index, gen_json, st, student.teacher_fingerprint)
    key = hashlib.sha256(json.dumps({**identity, "arch_id": arch_id}, sort_keys=True).encode()).hexdigest()
    r = fit(student, progress=progress, checkpointing=Checkpointing(folder / "train-state.pt", key))
    result = {"sample": index, "seed": seed, "winner": index == 0 and s.winner_seed is not None,
              "arch_id": arch_id, "status": r.status, "test_acc": r.eval_acc, "test_loss": r.eval_loss,
              "params": r.params, "macs": r.macs, "seconds": r.seconds + r.prior_seconds, "epochs": s.epochs,
              "train_images": len(train), "test_images": len(ds.test), "peak_memory_mb": r.peak_memory_mb,
              "device": r.device, "error": r.error, "kd": kd, "history": r.history,
              "resumed_from_epoch": r.resumed_from_epoch, "speed": r.speed, "identity": identity}
    if r.status == "ok":
        result["activation_mb_per_image"] = round(activation_mb(model, ds.input_shape), 3)
        ckpt = {"format": STUDENT_FORMAT, "arch": arch_json,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "test_acc": r.eval_acc, "kd": kd, "dataset": s.dataset, "input_shape": list(ds.input_shape),
                "num_classes": ds.num_classes, "mean": list(ds.info.mean), "std": list(ds.info.std)}
        buf = io.BytesIO()
        torch.save(ckpt, buf)
        write_atomic(folder / "student.pt", buf.getvalue())
        result["onnx_error"] = export_onnx(model, ds.input_shape, folder / "student.onnx", ds.info.mean,
                                           ds.info.std)
        if s.int8 and result["onnx_error"] is None:
            calibration = train.images[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:512]]
            result["deploy"] = int8_variant(folder / "student.onnx", calibration, ds.test.images, ds.test.labels,
                                            ds.input_shape, threads=torch.get_num_threads())
    write_json(folder / "result.json", result)
    (folder / "train-state.pt").unlink(missing_ok=True)
    return result


def use_cache(s: RetrainSettings, aug: Augment, device: torch.device) -> bool:
    """The teacher-logit cache pays once the epochs exceed the views (a cached view costs one teacher forward,
    an uncached epoch one per image). A loss that matches feature maps needs the teacher at every step: never."""
    from autokd.kd.loss import needs_features

    if needs_features(s.kd_loss):
        return False
    if s.logit_cache != "auto":
        return s.logit_cache == "on"
    return device.type == "cuda" or aug.views < s.epochs


# ------------------------------------------------------------------------------------------------ the family
def _teacher_summary(s: RetrainSettings, board: Board) -> tuple[dict[str, Any] | None, Any]:
    """The teacher's facts for the summary and the resolved teacher (its fingerprint keys reuse); a built-in teacher
    missing for this dataset is trained here, once, with progress, before any sample starts."""
    if not s.teacher:
        return None, None
    from autokd.data.dataset import load_dataset
    from autokd.kd.teacher import check_feature_maps, resolve_teacher, teacher_summary

    ds = load_dataset(s.dataset, s.data_dir)
    try:
        t = resolve_teacher(s.teacher, ds, smoke=s.smoke_teacher, device=s.device, weights=s.teacher_weights,
                            check=True, progress=board.reporter("teacher", f"teacher {s.teacher}"))
    finally:
        board.done("teacher")
    check_feature_maps(t.module, s.kd_loss, f"the {t.kind} teacher {t.path}")
    t.module.cpu()
    return {**teacher_summary(t), "activation_mb_per_image": round(activation_mb(t.module, ds.input_shape), 3)}, t


def summarise(results: list[dict[str, Any]], teacher: dict[str, Any] | None, s: RetrainSettings,
              gen: GeneratorFile | None, linear: float | None, num_classes: int) -> dict[str, Any]:
    ok = [r for r in results if r["status"] == "ok"]
    accs = [r["test_acc"] for r in ok]
    return {"generator": gen.to_json() if gen else None, "student": s.student, "settings": asdict(s),
            "samples": len(results), "ok": len(ok), "failed": len(results) - len(ok),
            "winner_included": any(r.get("winner") for r in results),
            "test_acc_mean": statistics.mean(accs) if accs else None,
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0 if accs else None,
            "test_acc_min": min(accs) if accs else None, "test_acc_max": max(accs) if accs else None,
            "params_mean": statistics.mean(r["params"] for r in ok) if ok else None,
            "macs_mean": statistics.mean(r["macs"] for r in ok if r["macs"]) if any(r["macs"] for r in ok) else None,
            "teacher": teacher, "linear_baseline": linear, "chance": 1.0 / num_classes,
            "per_sample": sorted(({k: v for k, v in r.items() if k not in ("history", "identity")} for r in results),
                                 key=lambda r: r["sample"])}


def _kd_phrase(s: dict[str, Any], kd: dict[str, float]) -> str:
    """"KD τ=3.00 α=0.70" for Hinton's loss; another loss by name with its own parameters (attention transfer has
    no temperature)."""
    from autokd.kd.loss import loss_params, needs_features

    loss = s.get("kd_loss") or "hinton"
    if loss == "hinton":
        return f"KD τ={kd['temperature']:.2f} α={kd['alpha']:.2f}"
    params = ", ".join(f"{k}={s[k]:g}" for k in loss_params(loss) if k in s)
    tau = "" if needs_features(loss) else f" τ={kd['temperature']:.2f}"
    return f"KD {loss}{f' ({params})' if params else ''}{tau} α={kd['alpha']:.2f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    s, t = summary["settings"], summary["teacher"]
    what = (f"hand-designed student `{summary['student']}`" if summary["student"] else "samples from the generator")
    kd = next((r.get("kd") for r in summary["per_sample"] if r.get("kd")), None)
    lines = [f"# Retrain summary: {s['dataset']}", "",
             f"{summary['ok']} of {summary['samples']} {what}, {s['epochs']:g} epochs each on the whole training set"
             + (f" ({s['subset']:,} images)" if s.get("subset") else "")
             + (f", {_kd_phrase(s, kd)} from {t['arch']}" if kd and t else ", no KD")
             + "." + (" Sample 0 is the search's winning architecture; the others are fresh samples of its family."
                      if summary.get("winner_included") else ""), ""]
    if summary["test_acc_mean"] is not None:
        n = summary["per_sample"][0].get("test_images") or 0
        se = (summary["test_acc_mean"] * (1 - summary["test_acc_mean"]) / n) ** 0.5 if n else None
        lines += [f"**Top-1 test accuracy: {100 * summary['test_acc_mean']:.2f}% ± {100 * summary['test_acc_std']:.2f}"
                  f"** (std over samples; min {100 * summary['test_acc_min']:.2f}%, max "
                  f"{100 * summary['test_acc_max']:.2f}%"
                  + (f"; one sample's standard error on {n:,} test images ± {100 * se:.2f}" if se else "") + ")", ""]
    comparison = summary.get("comparison") or {}
    if comparison.get("verdict"):
        lines += ["## Against hand-designed students", "", f"**{comparison['verdict']}**", "",
                  "| student | samples | test top-1 mean ± std | params | seconds / sample "
                  "| family − it (points, 95% CI) | Welch p |", "|---|---|---|---|---|---|---|",
                  f"| searched family | {summary['ok']} | {100 * summary['test_acc_mean']:.2f}% ± "
                  f"{100 * summary['test_acc_std']:.2f} | {summary['params_mean']:,.0f} | "
                  f"{_mean_seconds(summary):.0f} | | |"]
        for name, b in summary["baselines"].items():
            d = comparison["differences"].get(name)
            ci = (f"{d['diff']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]" if d and d["ci_low"] is not None
                  else f"{d['diff']:+.2f}" if d else "-")
            p = f"{d['p_value']:.3g}" if d and d["p_value"] is not None else "-"
            acc = (f"{100 * b['test_acc_mean']:.2f}% ± {100 * b['test_acc_std']:.2f}" if b["test_acc_mean"] is not None
                   else "-")
            lines.append(f"| {name} (hand-designed, KD τ=4 α=0.9) | {b['ok']} | {acc} | "
                         f"{b['params_mean'] or 0:,.0f} | {b['seconds_mean'] or 0:.0f} | {ci} | {p} |")
        lines += ["", "Each baseline is the widest of its shape under the same parameter limit, trained with the same "
                  "data, teacher, epochs and recipe (its own folder `baseline-NAME/` holds its samples). Welch's "
                  "t-interval on the samples' test accuracies; with few samples the interval is wide by design.", ""]
    lines += kd_ablation_markdown(summary.get("kd_ablation"))
    lines += ["| reference | test top-1 |", "|---|---|"]
    if t and t.get("test_acc") is not None:
        lines.append(f"| teacher {t['arch']} ({t.get('params') or 0:,} params) | {100 * t['test_acc']:.2f}% |")
    if summary.get("linear_baseline") is not None:
        lines.append(f"| linear softmax classifier on pixels | {100 * summary['linear_baseline']:.2f}% |")
    lines += [f"| chance | {100 * summary['chance']:.2f}% |", ""]
    lines += ["| sample | seed | arch_id | test top-1 | params | MACs | activations / image | seconds | status |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["per_sample"]:
        acc = f"{100 * r['test_acc']:.2f}%" if r.get("test_acc") is not None else "-"
        act = f"{r['activation_mb_per_image']:.2f} MB" if r.get("activation_mb_per_image") else "-"
        macs = f"{r['macs'] / 1e6:.1f}M" if r.get("macs") else "-"
        lines.append(f"| {r['sample']}{' (winner)' if r.get('winner') else ''} | {r['seed']} | {r['arch_id']} | {acc} "
                     f"| {r['params']:,} | {macs} | {act} | {r['seconds']:.0f} "
                     f"| {r['status']}{' (' + r['error'] + ')' if r.get('error') else ''} |")
    if t:
        acc = f"{100 * t['test_acc']:.2f}%" if t.get("test_acc") is not None else "-"
        macs = f"{t['macs'] / 1e6:.1f}M" if t.get("macs") else "-"
        lines += ["", "| teacher | test top-1 | params | MACs | activations / image |", "|---|---|---|---|---|",
                  f"| {t['arch']}{' (smoke)' if t.get('smoke') else ''} | {acc} | {t.get('params') or 0:,} | {macs} "
                  f"| {t['activation_mb_per_image']:.2f} MB |"]
    lines += deploy_table(summary["per_sample"])
    lines += ["", "Activations: bytes of every layer output for one image in fp32 (what a training step keeps for "
              "the backward pass). Students are scored on the whole test set. `student.onnx` takes float images in "
              "[0, 1] (pixel / 255) and normalises inside the graph; see docs/usage.md to load `student.pt`."]
    return "\n".join(lines) + "\n"


def kd_ablation_markdown(ablation: dict[str, Any] | None) -> list[str]:
    """The "does distillation pay?" section: the pooled verdict and one row per group of pairs."""
    if not ablation or not ablation.get("verdict"):
        return []
    lines = ["## Does distillation pay?", "", f"**{ablation['verdict']}**", "",
             "| architectures | pairs | with KD | without KD | KD − no KD (points, 95% CI) | paired t p |",
             "|---|---|---|---|---|---|"]
    rows = list(ablation["groups"].values()) + ([ablation["pooled"]] if len(ablation["groups"]) > 1 else [])
    for d in rows:
        ci = f"{d['diff']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]" if d["ci_low"] is not None \
            else f"{d['diff']:+.2f}"
        p = f"{d['p_value']:.3g}" if d["p_value"] is not None else "-"
        lines.append(f"| {d['name']} | {d['n']} | {d['mean_with']:.2f}% | {d['mean_without']:.2f}% | {ci} | {p} |")
    return lines + ["", "Each pair is one architecture trained twice with the same seed, data order and recipe, once "
                    "with the teacher and once without (α = 0): `no-kd/` beside each group's samples.", ""]


def deploy_table(samples: list[dict[str, Any]]) -> list[str]:
    """What int8 cost each sample: test accuracy and ONNX Runtime latency of student.onnx against
    student.int8.onnx (both measured in ONNX Runtime on this machine)."""
    rows = [r for r in samples if r.get("deploy")]
    if not rows:
        return []
    lines = ["", "| sample | fp32 test top-1 | int8 test top-1 | int8 − fp32 | batch 1: fp32 → int8 (speedup) "
             "| batch 64: fp32 → int8 (speedup) |", "|---|---|---|---|---|---|"]
    for r in rows:
        d = r["deploy"]
        if d.get("int8_error"):
            lines.append(f"| {r['sample']} | – | no int8 file: {d['int8_error']} | | | |")
            continue
        lat = d["latency"]
        lines.append(f"| {r['sample']} | {100 * d['fp32_onnx_test_acc']:.2f}% | {100 * d['int8_test_acc']:.2f}% | "
                     f"{100 * (d['int8_test_acc'] - d['fp32_onnx_test_acc']):+.2f} | "
                     f"{lat['fp32']['batch1_ms']:.3f} → {lat['int8']['batch1_ms']:.3f} ms "
                     f"({lat['int8_speedup_batch1']:.2f}×) | {lat['fp32']['batch64_ms']:.2f} → "
                     f"{lat['int8']['batch64_ms']:.2f} ms ({lat['int8_speedup_batch64']:.2f}×) |")
    lat = rows[0]["deploy"].get("latency") or {}
    if lat:
        lines += ["", f"Latency: median of 3 × repeated runs, {lat['threads']} thread(s), {lat['runtime']}, "
                  f"{lat['cpu']} (a sample trained beside it may share the machine)."]
    return lines


def _mean_seconds(summary: dict[str, Any]) -> float:
    ok = [r["seconds"] for r in summary["per_sample"] if r["status"] == "ok"]
    return statistics.mean(ok) if ok else 0.0


def _reusable(folder: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    done = folder / "result.json"
    if not done.is_file():
        return None
    try:
        prev = read_json(done, "sample result")
    except UserError:
        return None  # a corrupt result is retrained, never trusted
    if isinstance(prev, dict) and prev.get("status") == "ok" and prev.get("identity") == identity \
            and isinstance(prev.get("test_acc"), (int, float)):
        return prev
    return None


@dataclass(frozen=True, eq=False)  # identity, not value: a key of the results it produces
class SampleTask:
    """One sample to train: plain data, so it crosses into a worker process or a Ray task as it is."""

    group: str  # "family", or the name of a hand-designed baseline
    index: int
    gen_json: dict[str, Any] | None
    settings: dict[str, Any]  # asdict(RetrainSettings)
    out_dir: str  # the group's folder: sample-NN/ go under it

    @property
    def label(self) -> str:
        if self.group.startswith(FAMILY):  # "sample 3", "sample 3 without KD"
            return f"sample {self.index}{self.group.removeprefix(FAMILY)}"
        return f"{self.group.replace(NO_KD, '')} sample {self.index}{NO_KD if self.group.endswith(NO_KD) else ''}"


FAMILY = "family"


def sample_job(payload: dict[str, Any], _context: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    """One sample as an executor's job (autokd.executors): a SampleTask's fields in, its result.json out."""
    return retrain_sample(payload["index"], payload["gen_json"], payload["settings"], payload["out_dir"],
                          progress=progress)


def _job(task: SampleTask) -> Job:
    return Job(task.label, task.label, {"index": task.index, "gen_json": task.gen_json, "settings": task.settings,
                                        "out_dir": task.out_dir})


NO_KD = " without KD"  # the suffix of an ablation group's name: "family without KD", "resnet without KD"


def _groups(gen: GeneratorFile | None, s: RetrainSettings, out_dir: Path) -> list[tuple[str, Any, RetrainSettings,
                                                                                      Path]]:
    """(group, generator JSON, settings, folder): the family (or the one hand-designed student) first, then each
    baseline in its own folder `baseline-NAME/`; with --ablate-kd, then each of those that distils again without
    KD (same architectures, seeds and recipe; α = 0, no teacher) in `FOLDER/no-kd/`."""
    gen_json = gen.to_json() if gen else None
    groups = [(FAMILY, gen_json, s, out_dir)]
    for name in baseline_names(s.baselines):
        groups.append((name, None, baseline_settings(s, name), out_dir / f"baseline-{name}"))
    if s.ablate_kd:
        groups += [(group + NO_KD, gj, without_kd(gs), folder / "no-kd")
                   for group, gj, gs, folder in list(groups) if _teacher_kd(gs, gj) is not None]
    return groups


def kd_pairs(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, tuple[list[float], list[float]]]:
    """group → (test accuracies with KD, without), over the sample indices finished ok in both."""
    pairs = {}
    for group, without in results.items():
        if not group.endswith(NO_KD):
            continue
        base = group.removesuffix(NO_KD)
        with_kd = results.get(base, {})
        both = sorted(i for i in with_kd if i in without and with_kd[i].get("status") == "ok"
                      and without[i].get("status") == "ok")
        pairs[base] = ([with_kd[i]["test_acc"] for i in both], [without[i]["test_acc"] for i in both])
    return pairs


def run_retrain(gen: GeneratorFile | None, s: RetrainSettings, out_dir: Path,
                board: Board | None = None) -> dict[str, Any]:
    from autokd.data.dataset import load_dataset

    board = board or Board()
    ds = load_dataset(s.dataset, s.data_dir)  # bad dataset: fail before anything is written
    teacher, resolved = _teacher_summary(s, board)  # trains a missing built-in teacher once, before the samples
    groups = _groups(gen, s, out_dir)
    with RunLock(out_dir, "retrain folder"):
        results: dict[str, dict[int, dict[str, Any]]] = {g[0]: {} for g in groups}
        todo: list[SampleTask] = []
        for group, gen_json, gs, folder in groups:
            fp = resolved.fingerprint if resolved is not None and _teacher_kd(gs, gen_json) else None
            st = asdict(gs)
            for i in range(gs.samples):
                task = SampleTask(group, i, gen_json, st, str(folder))
                prev = _reusable(folder / f"sample-{i:02d}", sample_identity(i, gen_json, st, fp))
                if prev is not None:
                    results[group][i] = prev
                    board.line(f"retrain: {task.label} already done (test_acc {prev['test_acc']:.4f}), skipped")
                else:
                    todo.append(task)
        if todo and resolved is not None and _teacher_kd(s, groups[0][1]):
            _prepare_cache(s, groups[0][1], board)
        if todo:
            family_todo = sum(t.group == FAMILY for t in todo)
            ablation = sum(t.group.endswith(NO_KD) for t in todo)
            extra = len(todo) - family_todo - ablation
            at_once = len(todo) if s.executor_kind() == "ray" else min(s.workers, len(todo))
            board.line(f"retrain: {family_todo} sample(s)"
                       + (f" + {extra} of the baselines ({s.baselines})" if extra else "")
                       + (f" + {ablation} without KD (--ablate-kd)" if ablation else "")
                       + f" × {s.epochs:g} epochs"
                       + (" (sample 0 is the search's winner)" if any(t.group == FAMILY and t.index == 0 for t in todo)
                          and s.winner_seed is not None else "")
                       + (", as many at once as the Ray cluster fits" if s.executor_kind() == "ray"
                          else f", {at_once} at a time")
                       + _projection(gen, s, len(ds.train), len(todo), at_once) + f" → {out_dir}")
        done = _run_samples(todo, s, board, out_dir) if todo else {}
        for task, r in done.items():
            results[task.group][task.index] = r
        linear = ds.info.linear_baseline
        summaries = {}
        for group, _gen_json, gs, folder in groups:
            summaries[group] = summarise(list(results[group].values()), teacher if gs.teacher else None, gs,
                                         gen if group.startswith(FAMILY) else None,
                                         linear, ds.num_classes)
        summary = summaries[FAMILY]
        if len(groups) > 1:
            for group, _gen_json, _gs, folder in groups[1:]:
                write_json(folder / "summary.json", summaries[group])
                write_atomic(folder / "summary.md", summary_markdown(summaries[group]))
            baselines = [g for g, *_ in groups[1:] if not g.endswith(NO_KD)]
            if baselines:
                summary["baselines"] = {g: _brief(summaries[g]) for g in baselines}
                summary["comparison"] = compare_to_baselines(summary)
            if s.ablate_kd:
                from autokd.compare import kd_ablation

                pairs = kd_pairs(results)
                if s.student:  # a hand-designed student's run: its one group is that student, not a family
                    pairs = {(s.student if g == FAMILY else g): v for g, v in pairs.items()}
                summary["kd_ablation"] = kd_ablation(pairs)
        write_json(out_dir / "summary.json", summary)
        write_atomic(out_dir / "summary.md", summary_markdown(summary))
    return summary


def _projection(gen: GeneratorFile | None, s: RetrainSettings, n_train: int, todo: int, at_once: int) -> str:
    """", about T" from the search's measured training speed of one trial (run.json's plan), when the generator
    names its run directory; rough: the family's members and the thread counts differ from the search's."""
    run_dir = ((gen.source if gen else {}) or {}).get("run_dir")
    try:
        speed = float(read_json(Path(run_dir) / "run.json", "run file")["plan"]["train_img_s"]) if run_dir else 0.0
    except (UserError, KeyError, TypeError, ValueError, OSError):
        return ""
    if speed <= 0:
        return ""
    images = (s.subset or n_train) * s.epochs
    waves = -(-todo // max(1, at_once))  # rounds of `at_once` samples side by side
    return f", about {fmt_seconds(waves * images / speed)} at the search's measured training speed"


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    """A baseline's line in the family's summary: its accuracies and costs, without the per-sample detail."""
    ok = [r for r in summary["per_sample"] if r["status"] == "ok"]
    return {"student": summary["student"], "ok": summary["ok"], "samples": summary["samples"],
            "test_acc_mean": summary["test_acc_mean"], "test_acc_std": summary["test_acc_std"],
            "test_accs": [r["test_acc"] for r in ok], "params_mean": summary["params_mean"],
            "seconds_mean": statistics.mean(r["seconds"] for r in ok) if ok else None,
            "arch_ids": [r["arch_id"] for r in ok], "kd": next((r.get("kd") for r in ok if r.get("kd")), None)}


def compare_to_baselines(summary: dict[str, Any]) -> dict[str, Any]:
    """The family's test accuracies against each baseline's: differences with 95% CIs, and the verdict sentence."""
    from autokd.compare import against_baselines

    family = [r["test_acc"] for r in summary["per_sample"] if r["status"] == "ok"]
    return against_baselines(family, {name: b["test_accs"] for name, b in summary.get("baselines", {}).items()})


def _prepare_cache(s: RetrainSettings, gen_json: dict[str, Any] | None, board: Board) -> None:
    """Build the teacher-logit cache once, before the sample workers start (each would build its own)."""
    import time

    from autokd.data.dataset import load_dataset
    from autokd.kd.cache import cache_path, load_or_build
    from autokd.kd.teacher import resolve_teacher
    from autokd.train import pick_device

    aug = TrainConfig.of(s, s.epochs).augment
    device = pick_device(s.device)
    if s.subset or not _teacher_kd(s, gen_json) or not use_cache(s, aug, device):
        return  # subsets differ per sample (seeded by it): each sample builds its own rows
    ds = load_dataset(s.dataset, s.data_dir)
    t0 = time.time()
    teacher = resolve_teacher(str(s.teacher), ds, smoke=s.smoke_teacher, device=s.device, quiet=True,
                              weights=s.teacher_weights)
    if cache_path(teacher, ds.train, aug, ds.info.mean, ds.info.std).is_file():
        board.line(f"retrain: teacher logits from the cache ({len(ds.train):,} images × {aug.views} views)")
    else:
        board.line(f"retrain: computing the teacher's logits for {len(ds.train):,} images × {aug.views} views")
    load_or_build(teacher, ds.train, aug, ds.info.mean, ds.info.std, device, quiet=True)
    board.line(f"retrain: teacher logits ready in {time.time() - t0:.0f}s")


def _sample_line(board: Board, task: SampleTask, r: dict[str, Any]) -> None:
    acc = f"test_acc {r['test_acc']:.4f}" if r.get("test_acc") is not None else f"FAILED ({r.get('error')})"
    board.line(f"retrain: {task.label}{' (winner)' if r.get('winner') else ''}: {acc}, "
               f"{fmt_seconds(r.get('seconds'))}")


def _sample_executor(todo: list[SampleTask], s: RetrainSettings, board: Board) -> Executor:
    """The search's executors, running samples: one in this process, `workers` processes, or Ray tasks."""
    import os

    if s.executor_kind() == "ray":
        return make_executor("ray", sample_job, {}, threads=s.threads_per_sample or 1, board=board,
                             gpus_per_job=s.gpus_per_trial, address=s.ray_address)
    workers = min(s.workers, len(todo))
    threads = s.threads_per_sample or (max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None)
    return make_executor("local", sample_job, {}, workers=workers, threads=threads, board=board)


def _run_samples(todo: list[SampleTask], s: RetrainSettings, board: Board,
                 out_dir: Path) -> dict[SampleTask, dict[str, Any]]:
    """Every sample of `todo` through one executor: a sample whose worker died (out of memory, a lost Ray node) runs
    again, from its last saved training state, up to MAX_LOST_RETRIES times, then counts as failed; a sample that
    raised stops the retrain (the samples already finished keep their files: a rerun skips them)."""
    from autokd.ray_cluster import MAX_LOST_RETRIES

    if s.executor_kind() == "ray":
        from autokd.ray_cluster import log_errors_to

        log_errors_to(out_dir / "ray-errors.log")  # Ray's text of a dying node: there, not the terminal
    ex = _sample_executor(todo, s, board)
    by_key = {t.label: t for t in todo}
    pending, tries, results = list(todo), {t.label: 0 for t in todo}, {}
    try:
        while pending or ex.in_flight():
            while pending and ex.in_flight() < ex.capacity:
                ex.submit(_job(pending.pop(0)))
            if not ex.in_flight():
                raise UserError(f"the Ray cluster has no node left that can run a sample; add nodes, then run the "
                                f"same command again (finished samples are kept in {out_dir})")
            for o in ex.wait(timeout=1.0):
                task = by_key[o.key]
                if o.status == DONE:
                    assert o.value is not None
                    results[task] = o.value
                    _sample_line(board, task, o.value)
                elif o.status == ERROR:
                    if o.bad_input:
                        raise UserError(f"{task.label}: {o.error}")
                    raise RuntimeError(f"{task.label}: {o.error}") from RemoteTraceback(o.trace or "")
                elif tries[o.key] < MAX_LOST_RETRIES:  # CRASHED or LOST: the worker's fate, not the sample's
                    tries[o.key] += 1
                    board.line(f"retrain: {task.label}: {o.error}; running it again from its last saved state "
                               f"(retry {tries[o.key]} of {MAX_LOST_RETRIES})", force=True)
                    pending.insert(0, task)
                else:
                    results[task] = _failed(task, f"{o.error} ({MAX_LOST_RETRIES} retries)")
                    _sample_line(board, task, results[task])
    finally:
        ex.shutdown()
    return results


def _failed(task: SampleTask, error: str) -> dict[str, Any]:
    return {"sample": task.index, "seed": sample_seed(RetrainSettings(**task.settings), task.index), "arch_id": None,
            "status": "failed", "test_acc": None, "params": 0, "macs": None, "seconds": 0.0, "error": error}
