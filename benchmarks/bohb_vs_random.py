"""BOHB against random search on the README's main job, seed by seed, at equal wall time (issue 19).

    python benchmarks/bohb_vs_random.py --seeds 0,1,2,3,4 [--out docs/scheduling/bohb-vs-random.json]

Each (optimizer, seed) is the real command `autokd search --dataset fashion-mnist --preset cpu --optimizer O
--seed S` in runs/bohb-vs-random/O-seedS; a finished run is read back, not rerun, so the study resumes where it
stopped (commit the JSON after each run); the --out file keeps the rows of earlier sessions (seeds whose run folders
are gone), so the study grows across sessions. Per run: the best validation accuracy found at the top budget, its
best-so-far curve against the search's elapsed seconds (from the journal), the whole command's seconds; then, over
the seeds, both optimizers' mean best at the wall time both reached (the shorter of each pair's search phases).
Run it on a quiet machine, nothing else on the CPU: the times are the comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autokd.report.data import load_run_data  # noqa: E402


def _finished(run_dir: Path) -> bool:
    journal = run_dir / "journal.jsonl"
    return journal.is_file() and '"event": "search_finished"' in journal.read_text()


def curve(run_dir: Path) -> list[tuple[float, float]]:
    """(seconds since the search began, best validation accuracy at the top budget so far) at each improvement."""
    data = load_run_data(run_dir)
    top = max(data.budgets())
    t0 = min(e["time"] for e in data.events if e["event"] == "started")
    best, out = 0.0, []
    for e in sorted(data.finished, key=lambda e: e["time"]):
        if e["budget"] == top and e["val_acc"] > best:
            best = e["val_acc"]
            out.append((round(e["time"] - t0, 1), best))
    return out


def best_at(points: list[tuple[float, float]], seconds: float) -> float | None:
    """The best accuracy found within `seconds` (None: nothing at the top budget by then)."""
    reached = [acc for t, acc in points if t <= seconds]
    return max(reached) if reached else None


def one(optimizer: str, seed: int, root: Path) -> dict:
    run_dir = root / f"{optimizer}-seed{seed}"
    if not _finished(run_dir):
        command = [sys.executable, "-m", "autokd.cli", "search", "--run-dir", str(run_dir)]
        command += ["--resume"] if run_dir.exists() else ["--dataset", "fashion-mnist", "--preset", "cpu",
                                                          "--optimizer", optimizer, "--seed", str(seed)]
        t0 = time.time()
        subprocess.run(command, check=True, cwd=ROOT)
        (run_dir / "bench-seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
    data = load_run_data(run_dir)
    seconds = run_dir / "bench-seconds.txt"
    return {"optimizer": optimizer, "seed": seed, "run_dir": str(run_dir.relative_to(ROOT)),
            "whole_command_seconds": float(seconds.read_text()) if seconds.is_file() else None,
            "search_seconds": (data.end or {}).get("seconds"), "curve": curve(run_dir),
            "model_based": (data.end or {}).get("model_based_proposals"),
            "proposals": (data.end or {}).get("proposals")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--optimizers", default="bohb,random")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    root = ROOT / "runs" / "bohb-vs-random"
    out = Path(args.out) if args.out else None
    # rows of earlier sessions (other seeds, committed) are kept: the study grows seed by seed across sessions
    rows = json.loads(out.read_text()) if out is not None and out.is_file() else []
    for seed in (int(s) for s in args.seeds.split(",")):
        for opt in args.optimizers.split(","):
            row = one(opt, seed, root) if (root / f"{opt}-seed{seed}").exists() or not any(
                r["optimizer"] == opt and r["seed"] == seed for r in rows) else None
            if row is None:
                continue  # recorded by an earlier session and its run folder is not here: keep the record
            rows = [r for r in rows if (r["optimizer"], r["seed"]) != (opt, seed)] + [row]
            if out is not None:  # after every run: a stop loses at most the run in progress
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(sorted(rows, key=lambda r: (r["seed"], r["optimizer"])), indent=1) + "\n")
    by_seed: dict[int, dict[str, dict]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["optimizer"]] = r
    for opt in args.optimizers.split(","):
        at_equal = []
        for seed, runs in sorted(by_seed.items()):
            if opt not in runs or len(runs) < 2 or any(r["search_seconds"] is None for r in runs.values()):
                continue  # the seed lacks this optimizer or a partner, or a search did not finish
            horizon = min(r["search_seconds"] for r in runs.values())
            at_equal.append(best_at(runs[opt]["curve"], horizon) or 0.0)
        if at_equal:
            spread = f" ± {100 * statistics.stdev(at_equal):.2f}" if len(at_equal) > 1 else ""
            mean = 100 * statistics.mean(at_equal)
            print(f"{opt}: best at equal wall time, mean over {len(at_equal)} seed(s) {mean:.2f}%{spread} "
                  f"({', '.join(f'{100 * a:.2f}' for a in at_equal)})")


if __name__ == "__main__":
    main()
