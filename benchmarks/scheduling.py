"""The README's main job under each promotion rule, back to back on this machine (issue 19's figures).

    python benchmarks/scheduling.py [--variants sync,async,continue] [--extra "--seed 1"] [--out FILE.json]

Each variant is the real command (`autokd search --dataset fashion-mnist --preset cpu` plus its flags, VARIANTS) in
its own run directory under runs/scheduling/; a variant whose run already finished is read back, not rerun (the study
resumes). Per variant: the whole command's seconds, the search phase, the share of it with fewer trials running than
workers (from the journal's started/finished times), the best validation accuracy and the model-based proposals.
Run it on a quiet machine: the times are the point.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autokd.report.data import load_run_data  # noqa: E402


def finished(run_dir: Path) -> bool:
    journal = run_dir / "journal.jsonl"
    return journal.is_file() and '"event": "search_finished"' in journal.read_text()


VARIANTS = {
    "sync": ["--promotion", "sync"],  # the cpu preset as it was: successive halving, every rung from scratch
    "async": ["--promotion", "async"],
    "continue": ["--promotion", "async", "--lr-schedule", "wsd", "--rung-training", "continue"],
    "wsd-scratch": ["--promotion", "async", "--lr-schedule", "wsd"],  # the schedule alone, without continuing
    # a candidate first-run preset: two brackets of 0.2/0.6/1.8/5.4 epochs (27 configurations at the first rung
    # feed the model: ≥ 20 results at one budget; the second bracket fills the worker the top rung leaves idle)
    "two-brackets": ["--min-budget", "0.2", "--max-budget", "5.4", "--eta", "3", "--iterations", "2",
                     "--subset", "10000", "--promotion", "async", "--lr-schedule", "wsd", "--rung-training",
                     "continue"],
}


def measure(variant: str, extra: list[str], root: Path) -> dict:
    run_dir = root / f"{variant}{'-' + '-'.join(extra).replace('--', '') if extra else ''}"
    command = [sys.executable, "-m", "autokd.cli", "search", "--dataset", "fashion-mnist", "--preset", "cpu",
               *VARIANTS[variant], "--run-dir", str(run_dir), *extra]
    seconds = None
    if not finished(run_dir):
        if run_dir.exists():
            command = [sys.executable, "-m", "autokd.cli", "search", "--run-dir", str(run_dir), "--resume"]
        t0 = time.time()
        subprocess.run(command, check=True, cwd=ROOT)
        seconds = time.time() - t0
        (run_dir / "bench-seconds.txt").write_text(f"{seconds:.1f}\n")
    elif (run_dir / "bench-seconds.txt").is_file():
        seconds = float((run_dir / "bench-seconds.txt").read_text())
    data = load_run_data(run_dir)
    end = data.end or {}
    best = max((e["val_acc"] for e in data.finished), default=None)
    top = max(data.budgets()) if data.budgets() else None
    best_top = max((e["val_acc"] for e in data.finished if e["budget"] == top), default=None)
    return {"variant": variant, "flags": VARIANTS[variant], "extra": extra, "run_dir": str(run_dir.relative_to(ROOT)),
            "whole_command_seconds": seconds, "search_seconds": end.get("seconds"),
            "under_capacity_share": data.under_capacity_share(), "best_val_acc_top_budget": best_top,
            "best_val_acc_any_budget": best, "model_based": end.get("model_based_proposals"),
            "proposals": end.get("proposals"), "workers": data.run.get("workers")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="sync,async,continue")
    ap.add_argument("--extra", default="", help="more search flags, the same for every variant")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    root = ROOT / "runs" / "scheduling"
    rows = [measure(v, shlex.split(args.extra), root) for v in args.variants.split(",")]
    for r in rows:
        secs = r["whole_command_seconds"]
        print(f"{r['variant']:>11}: whole command {secs:.0f} s, search {r['search_seconds']:.0f} s, fewer trials "
              f"than workers {100 * r['under_capacity_share']:.0f}%, best {100 * r['best_val_acc_top_budget']:.2f}% "
              f"at the top budget, {r['model_based']} of {r['proposals']} model-based" if secs else r)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
