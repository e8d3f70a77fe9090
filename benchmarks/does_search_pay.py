"""Does searching pay? The README's two commands (the cpu preset's search, then its retrain, which trains the
hand-designed ResNet-8 baseline next to the family), plus a family from a random θ of the same space under the same
retrain recipe. One command; every step is a real `autokd` run that resumes after a kill (the search with --resume,
the retrains reuse finished samples), so a rerun continues where it stopped.

    python benchmarks/does_search_pay.py [--run-dir runs/does-search-pay] [--results docs/does-search-pay]

Raw results (the summaries and the search's best.json) are copied to --results as each step ends; the report is
--results/summary.md.
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
    ap.add_argument("--random-samples", type=int, default=3)
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
    autokd("retrain", "--generator", str(search / "best.json"), "--out", str(search / "retrain"))
    shutil.copy(search / "retrain" / "summary.json", results / "retrain-summary.json")
    best = json.loads((search / "best.json").read_text())
    gen = random_generator(best, run / "random-theta.json")
    shutil.copy(gen, results / "random-theta.json")
    autokd("retrain", "--generator", str(gen), "--preset", "cpu", "--baselines", "none", "--samples",
           str(args.random_samples), "--out", str(run / "retrain-random"))
    shutil.copy(run / "retrain-random" / "summary.json", results / "random-summary.json")
    write_report(results)


def write_report(results: Path) -> None:
    from autokd.compare import difference

    fam = json.loads((results / "retrain-summary.json").read_text())
    rnd = json.loads((results / "random-summary.json").read_text())
    accs = [r["test_acc"] for r in fam["per_sample"] if r["status"] == "ok"]
    raccs = [r["test_acc"] for r in rnd["per_sample"] if r["status"] == "ok"]
    d = difference("searched family", accs, "random θ family", raccs)
    lines = ["# Does searching pay? (benchmarks/does_search_pay.py)", "",
             f"- {fam['comparison']['verdict']}" if fam.get("comparison") else "- no baseline was trained",
             f"- Searched family against a random θ of the same space: {d.diff:+.2f} points"
             + (f" [{d.ci_low:+.2f}, {d.ci_high:+.2f}] (95% CI, Welch p = {d.p_value:.3g})" if d.ci_low is not None
                else "") + f", {d.n_a} vs {d.n_b} samples.", "",
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
    (results / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
