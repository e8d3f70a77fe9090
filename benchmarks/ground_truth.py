"""Ground truth for the cpu space (issue 35): configurations of the cpu preset's space, each trained once at the
retrain target — `autokd retrain --preset cpu` of the configuration's own architecture (the one a search trial
evaluates: same θ, same architecture seed), 7 epochs of all 60,000 training images, KD at the configuration's τ/α
from the shipped teacher, scored on the 10,000 test images.

The configurations are the rank study's (docs/study-cpu/scratch/rank/configs.json: drawn in a fixed order before
anything ran, seed 25), so each row also has that study's 1.8- and 5.4-epoch scores with and without KD.

    python benchmarks/ground_truth.py --out docs/ground-truth [--configs 40] [--workers 2] [--work DIR]

Each configuration is a real retrain folder under --work (its training state saved every two minutes, so a kill
loses little) and, once done, one small result file --out/config-NNN.json (commit them as they land); a rerun skips
configurations whose result file exists and resumes the ones in progress. Run it from a worktree of a fixed commit
(`git worktree add ../gt <commit>`, then `PYTHONPATH=../gt python ../gt/benchmarks/ground_truth.py ...`) so the
code under the table does not move while it grows; never time a benchmark while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "docs" / "study-cpu" / "scratch" / "rank" / "configs.json"
FORMAT = "autokd.ground-truth/1"


def generator_file(cfg: dict[str, Any], st: dict[str, Any]) -> dict[str, Any]:
    """The configuration as a generator file whose winner (sample 0) is its architecture seed."""
    return {"format": "autokd.generator/1", "space": st.get("space", "nago-small"), "generator": cfg["theta"],
            "kd": {"temperature": cfg["temperature"], "alpha": cfg["alpha"]}, "merge_width": "cell",
            "param_limit": st["param_limit"],
            "source": {"dataset": st["dataset"], "teacher": st["teacher"], "seed": cfg["seed"],
                       "note": f"ground truth: rank-study configuration {cfg['index']}"}}


def run_config(cfg: dict[str, Any], st: dict[str, Any], work: Path, out: Path, threads: int) -> str:
    """Retrain one configuration (resuming its folder) and write its result file."""
    folder = work / f"config-{cfg['index']:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    gen = folder / "generator.json"
    gen.write_text(json.dumps(generator_file(cfg, st), indent=1))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "autokd.cli", "retrain", "--generator", str(gen), "--preset", "cpu", "--samples",
           "1", "--baselines", "none", "--workers", "1", "--no-int8", "--out", str(folder / "retrain"), "--json"]
    t0 = time.time()
    with open(folder / "log.txt", "a") as log:
        rc = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    sample = folder / "retrain" / "sample-00" / "result.json"
    if rc != 0 or not sample.is_file():
        return f"config {cfg['index']}: retrain exit {rc} (log {folder / 'log.txt'})"
    r = json.loads(sample.read_text())
    row = {"format": FORMAT, "config": cfg["index"], "theta": cfg["theta"], "temperature": cfg["temperature"],
           "alpha": cfg["alpha"], "arch_seed": cfg["seed"],
           **{k: r.get(k) for k in ("arch_id", "status", "test_acc", "test_loss", "params", "macs", "seconds",
                                    "epochs", "train_images", "test_images", "kd", "speed", "error",
                                    "resumed_from_epoch", "identity")},
           "threads": threads, "wall_seconds_this_process": round(time.time() - t0, 1),
           "code": st.get("code"), "history": r.get("history")}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"config-{cfg['index']:03d}.json").write_text(json.dumps(row, indent=1) + "\n")
    acc = r.get("test_acc")
    return (f"config {cfg['index']}: {r['status']} test {acc:.4f}" if acc is not None else
            f"config {cfg['index']}: {r['status']} {r.get('error')}") + f" ({r.get('seconds', 0):.0f}s)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "docs" / "ground-truth"), help="result files (commit these)")
    ap.add_argument("--work", default=None, help="retrain folders (default: OUT/../ground-truth-work, uncommitted)")
    ap.add_argument("--configs", type=int, default=40, help="the first N configurations of configs.json")
    ap.add_argument("--first", type=int, default=0, help="start at this configuration index")
    ap.add_argument("--workers", type=int, default=2, help="configurations at once (one thread each)")
    ap.add_argument("--code", default=None, help="the commit the table is built with (recorded in each row)")
    args = ap.parse_args()
    configs = json.loads(CONFIGS.read_text())
    st = {"dataset": "fashion-mnist", "teacher": "vgg7", "param_limit": 100_000, "space": "nago-small",
          "code": args.code}
    out = Path(args.out)
    work = Path(args.work) if args.work else out.parent / "ground-truth-work"
    todo = [c for c in configs[args.first:args.configs] if not (out / f"config-{c['index']:03d}.json").is_file()]
    print(f"ground truth: {len(todo)} configuration(s) to train, {args.workers} at a time", flush=True)
    threads = 1 if args.workers > 1 else os.cpu_count() or 1
    with ThreadPoolExecutor(args.workers) as pool:  # a line per configuration as it lands, not in index order
        for future in as_completed([pool.submit(run_config, c, st, work, out, threads) for c in todo]):
            print(time.strftime("%H:%M:%S"), future.result(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
