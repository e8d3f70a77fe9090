"""Does searching pay? The decisive comparison in one command: the README's two commands (the cpu preset's search,
then its retrain, which trains the hand-designed ResNet-8 baseline next to the family, --samples each), a family
from a random θ of the same space under the same retrain recipe, and the searched family again at the baseline's KD
setting (τ 4, α 0.9; same seeds as its first samples), which splits the family's lead into architecture and
distillation setting. Every step is a real `autokd` run that resumes after a kill (the search with --resume, the
retrains reuse every finished sample whose identity matches — raising --samples trains only the new ones), so a rerun
continues where it stopped.

    python benchmarks/does_search_pay.py [--run-dir runs/does-search-pay] [--results docs/does-search-pay]
        [--samples 8] [--random-samples 8] [--standard-kd-samples 3] [--table docs/ground-truth]

Raw results (the summaries and the search's best.json) are copied to --results as each step ends; the report is
--results/summary.md. With --table (the ground-truth table of benchmarks/ground_truth.py), the report also says where
the family's samples fall among the table's configurations.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

RANDOM_THETA_SEED = 12345  # the random family's θ: drawn from the space's ConfigSpace with this seed
STANDARD_KD = ("4", "0.9")  # τ, α: what the hand-designed baselines train with (autokd.retraining.baseline_settings)
TARGET_POINTS = 0.5  # issue 37: the searched family ≥ the best hand-designed student + 0.5 points, CI above 0


def autokd(*args: str) -> None:
    cmd = [sys.executable, "-m", "autokd.cli", *args]
    print("$ autokd " + " ".join(args), flush=True)
    rc = subprocess.run(cmd).returncode
    if rc != 0:
        raise SystemExit(f"autokd {args[0]} exited {rc}; rerun this command to continue")


def random_generator(best: dict[str, Any], out: Path) -> Path:
    """A generator file with a random θ from the searched space and the searched family's τ/α and source: only θ
    differs."""
    from autokd.space.configspace import config_to_plain, load_space, theta_of

    space = load_space(best["space"])
    cfg = config_to_plain(space.to_configspace(seed=RANDOM_THETA_SEED).sample_configuration())
    source = {k: v for k, v in best.get("source", {}).items() if k in ("dataset", "teacher", "data_dir")}
    obj = {"format": "autokd.generator/1", "space": best["space"], "generator": space.check_theta(theta_of(cfg)),
           "kd": best["kd"], "param_limit": best["param_limit"], "source": source}
    out.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/does-search-pay")
    ap.add_argument("--results", default="docs/does-search-pay")
    ap.add_argument("--samples", type=int, default=8, help="samples of the family and of each baseline")
    ap.add_argument("--random-samples", type=int, default=8)
    ap.add_argument("--standard-kd-samples", type=int, default=3,
                    help="family samples also trained at the baseline's τ/α (0: skip)")
    ap.add_argument("--table", default=None, help="the ground-truth table's folder (config-NNN.json files)")
    args = ap.parse_args()
    run, results = Path(args.run_dir), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    search = run / "search"
    if not (search / "best.json").is_file() or "search_finished" not in (search / "journal.jsonl").read_text():
        if (search / "run.json").is_file():
            autokd("search", "--run-dir", str(search), "--resume")
        else:
            autokd("search", "--dataset", "fashion-mnist", "--preset", "cpu", "--run-dir", str(search))
    shutil.copy(search / "best.json", results / "best.json")
    autokd("retrain", "--generator", str(search / "best.json"), "--samples", str(args.samples), "--out",
           str(search / "retrain"))
    shutil.copy(search / "retrain" / "summary.json", results / "retrain-summary.json")
    best = json.loads((search / "best.json").read_text())
    gen = random_generator(best, run / "random-theta.json")
    shutil.copy(gen, results / "random-theta.json")
    autokd("retrain", "--generator", str(gen), "--preset", "cpu", "--baselines", "none", "--samples",
           str(args.random_samples), "--out", str(run / "retrain-random"))
    shutil.copy(run / "retrain-random" / "summary.json", results / "random-summary.json")
    if args.standard_kd_samples:
        autokd("retrain", "--generator", str(search / "best.json"), "--baselines", "none", "--samples",
               str(args.standard_kd_samples), "--temperature", STANDARD_KD[0], "--alpha", STANDARD_KD[1],
               "--out", str(run / "retrain-standard-kd"))
        shutil.copy(run / "retrain-standard-kd" / "summary.json", results / "standard-kd-summary.json")
    write_report(results, Path(args.table) if args.table else None)


def _accs(summary: dict[str, Any]) -> dict[int, float]:
    """Sample index → test accuracy of the finished samples."""
    return {r["sample"]: r["test_acc"] for r in summary["per_sample"] if r["status"] == "ok"}


def _interval(d: Any) -> str:
    return f" [{d.ci_low:+.2f}, {d.ci_high:+.2f}] (95% CI, p = {d.p_value:.3g})" if d.ci_low is not None else ""


def split(fam: dict[str, Any], std: dict[str, Any] | None) -> tuple[Any, Any, list[int]] | None:
    """The family's lead over the best baseline, split: architecture (family − baseline, both at the baseline's
    τ/α; Welch) and distillation setting (the family at its searched τ/α − at the baseline's, paired by sample);
    None without the standard-KD retrain or a baseline."""
    from autokd.compare import difference, paired_difference

    if std is None or not fam.get("baselines"):
        return None
    best = max(fam["baselines"].values(), key=lambda b: b["test_acc_mean"] or 0)
    own, standard = _accs(fam), _accs(std)
    both = sorted(set(own) & set(standard))
    if not both:
        return None
    arch = difference("searched family at τ 4, α 0.9", list(standard.values()), best["student"], best["test_accs"])
    kd = paired_difference("distillation setting", [own[i] for i in both], [standard[i] for i in both])
    return arch, kd, both


def split_lines(fam: dict[str, Any], std: dict[str, Any] | None) -> list[str]:
    parts = split(fam, std)
    if parts is None:
        return []
    arch, kd, both = parts
    tau, alpha = fam["per_sample"][0]["kd"]["temperature"], fam["per_sample"][0]["kd"]["alpha"]
    return [f"- Architecture, at the same distillation (τ 4, α 0.9): searched family − {arch.name_b} "
            f"{arch.diff:+.2f} points{_interval(arch)}, {arch.n_a} vs {arch.n_b} samples.",
            f"- Distillation setting, same architectures and seeds: the family at its searched τ {tau:.2f}, "
            f"α {alpha:.2f} − at τ 4, α 0.9: {kd.diff:+.2f} points"
            + (f" [{kd.ci_low:+.2f}, {kd.ci_high:+.2f}] (95% CI, paired t p = {kd.p_value:.3g})"
               if kd.ci_low is not None else "") + f", {len(both)} pairs."]


def _best_difference(fam: dict[str, Any]) -> dict[str, Any] | None:
    """The family − best hand-designed student difference of the retrain's summary (None without a baseline)."""
    comp = fam.get("comparison") or {}
    return (comp.get("differences") or {}).get(comp.get("best_baseline"))


def holm_line(fam: dict[str, Any], r: Any, std: dict[str, Any] | None) -> str:
    """The report's tests, Holm-corrected together (each p above is uncorrected)."""
    from rank_report import holm  # Holm's step-down, shared with the other studies' reports

    best = _best_difference(fam)
    tests = [(f"family − {best['name_b']}" if best else "family − baseline", best["p_value"] if best else None),
             ("family − random θ family", r.p_value)]
    parts = split(fam, std)
    if parts is not None:
        tests += [("architecture", parts[0].p_value), ("distillation setting", parts[1].p_value)]
    tests = [(name, p) for name, p in tests if p is not None]
    if not tests:
        return "- No test has two samples a side; nothing to correct."
    adjusted = holm([p for _, p in tests])
    return (f"- Holm over the {len(tests)} tests (adjusted p): "
            + "; ".join(f"{name} {p:.3g}" for (name, _), p in zip(tests, adjusted)) + ".")


def table_lines(fam: dict[str, Any], table: Path) -> list[str]:
    """Where the family's samples fall among the ground-truth table's configurations (each one architecture of a
    random θ, τ, α at the same retrain recipe)."""
    import numpy as np

    rows = [json.loads(p.read_text()) for p in sorted(table.glob("config-*.json"))]
    accs = np.array([r["test_acc"] for r in rows if r.get("status") == "ok"])
    if not len(accs):
        return []
    own = _accs(fam)
    pct = {i: 100.0 * float(np.mean(accs < a)) for i, a in own.items()}
    mean = float(np.mean(list(own.values())))
    return [f"- Against the ground-truth table ({len(accs)} random configurations of the space, same retrain): the "
            f"family's mean {100 * mean:.2f}% is above {100 * float(np.mean(accs < mean)):.0f}% of them (table "
            f"median {100 * float(np.median(accs)):.2f}%, best {100 * float(accs.max()):.2f}%); the search's winner "
            f"(sample 0) above {pct.get(0, float('nan')):.0f}%."]


def target_line(fam: dict[str, Any], r: Any) -> str:
    """Issue 37's target, met or not, in one line (`r`: the family − random θ family difference)."""
    best = _best_difference(fam)
    met_b = best is not None and best["diff"] >= TARGET_POINTS and (best["ci_low"] if best["ci_low"] is not None
                                                                    else -1) > 0
    met_r = r.diff >= TARGET_POINTS and (r.ci_low if r.ci_low is not None else -1) > 0
    n = min(len(_accs(fam)), best["n_b"] if best else 0)
    return (f"- Target (≥ +{TARGET_POINTS} points over the best hand-designed student and over the random θ family, "
            f"CI above 0, ≥ 8 vs 8): {'met' if met_b and met_r and n >= 8 else 'not met'} "
            f"(baseline {'met' if met_b else 'not met'}, random θ {'met' if met_r else 'not met'}, {n} vs "
            f"{best['n_b'] if best else 0} samples).")


def write_report(results: Path, table: Path | None = None) -> None:
    from autokd.compare import difference

    fam = json.loads((results / "retrain-summary.json").read_text())
    rnd = json.loads((results / "random-summary.json").read_text())
    std_file = results / "standard-kd-summary.json"
    std = json.loads(std_file.read_text()) if std_file.is_file() else None
    d = difference("searched family", list(_accs(fam).values()), "random θ family", list(_accs(rnd).values()))
    lines = ["# Does searching pay? (benchmarks/does_search_pay.py)", "",
             f"- {fam['comparison']['verdict']}" if fam.get("comparison") else "- no baseline was trained",
             f"- Searched family against a random θ of the same space: {d.diff:+.2f} points{_interval(d)}, "
             f"{d.n_a} vs {d.n_b} samples.",
             *split_lines(fam, std), holm_line(fam, d, std), *(table_lines(fam, table) if table else []),
             target_line(fam, d), "",
             "| student | samples | test top-1 | mean params | seconds / sample |", "|---|---|---|---|---|"]

    def row(name: str, s: dict[str, Any]) -> str:
        ok = [r for r in s["per_sample"] if r["status"] == "ok"]
        secs = sum(r["seconds"] for r in ok) / max(1, len(ok))
        each = ", ".join(f"{100 * r['test_acc']:.2f}" for r in ok)
        return (f"| {name} | {s['ok']} | {100 * s['test_acc_mean']:.2f}% ± {100 * s['test_acc_std']:.2f} "
                f"({each}) | {s['params_mean']:,.0f} | {secs:.0f} |")

    lines.append(row("searched family", fam))
    for name, b in (fam.get("baselines") or {}).items():
        secs = b.get("seconds_mean") or 0
        each = ", ".join(f"{100 * a:.2f}" for a in b["test_accs"])
        lines.append(f"| {name} (hand-designed) | {b['ok']} | {100 * b['test_acc_mean']:.2f}% ± "
                     f"{100 * b['test_acc_std']:.2f} ({each}) | {b['params_mean']:,.0f} | {secs:.0f} |")
    lines.append(row("random θ family", rnd))
    if std is not None:
        lines.append(row("searched family at τ 4, α 0.9", std))
    (results / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
