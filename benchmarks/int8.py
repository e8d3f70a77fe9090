"""What int8 costs and buys (issue 24): for every sample of a retrain folder, student.onnx against
student.int8.onnx — test accuracy (from result.json: both files scored in ONNX Runtime on the whole test set) and
latency at batch 1 and 64, re-measured here on a quiet machine (median of `--rounds` alternating rounds, each the
median of repeated runs), one thread by default.

    python benchmarks/int8.py RETRAIN_DIR [--threads 1] [--rounds 7] [--out docs/deploy/int8.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from autokd.deploy import cpu_model, latency_ms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("retrain_dir")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = []
    for result_path in sorted(Path(args.retrain_dir).glob("**/sample-*/result.json")):
        r = json.loads(result_path.read_text())
        d = r.get("deploy") or {}
        if not d.get("int8_file"):
            print(f"{result_path.parent}: no int8 file ({d.get('int8_error', 'not written')})", file=sys.stderr)
            continue
        fp32, int8 = result_path.parent / "student.onnx", result_path.parent / d["int8_file"]
        shape = tuple(json.loads((result_path.parent / "arch.json").read_text())["input_shape"])
        row = {"sample": str(result_path.parent), "arch_id": r["arch_id"], "params": r["params"], "macs": r["macs"],
               "fp32_test_acc": d["fp32_onnx_test_acc"], "int8_test_acc": d["int8_test_acc"],
               "int8_minus_fp32_points": round(100 * (d["int8_test_acc"] - d["fp32_onnx_test_acc"]), 3)}
        for batch in (1, 64):
            runs: dict[str, list[float]] = {"fp32": [], "int8": []}
            for _ in range(args.rounds):
                for name, path in (("fp32", fp32), ("int8", int8)):
                    runs[name].append(latency_ms(path, shape, batch, args.threads)["median_ms"])
            for name, values in runs.items():
                row[f"{name}_batch{batch}_ms"] = round(statistics.median(values), 4)
            row[f"speedup_batch{batch}"] = round(row[f"fp32_batch{batch}_ms"] / row[f"int8_batch{batch}_ms"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"machine": cpu_model(), "threads": args.threads, "rounds": args.rounds, "commit": commit, "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
