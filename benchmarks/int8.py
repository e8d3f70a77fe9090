"""What int8 costs and buys (issue 24): for every sample of a retrain folder, student.onnx against
student.int8.onnx — test accuracy (from result.json: both files scored in ONNX Runtime on the whole test set) and
latency at batch 1 and 64, re-measured here on a quiet machine (median of `--rounds` alternating rounds, each the
median of repeated runs), one thread by default.

    python benchmarks/int8.py RETRAIN_DIR [--threads 1] [--rounds 7] [--out docs/deploy/int8.json] [--levers]

--levers also quantises each sample other ways (per-tensor weights; the QOperator format) and scores and times
each against the shipped choice (QDQ, per-channel), so docs/benchmarks.md can say which paid.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from autokd.deploy import cpu_model, latency_ms


def levers(folder: Path, fp32: Path, shape: tuple[int, ...], threads: int, rounds: int) -> list[dict]:
    """Other quantisation choices for one sample: test accuracy in ONNX Runtime and batch-1 latency against fp32."""
    import tempfile

    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from autokd.data.dataset import load_dataset
    from autokd.deploy import onnx_accuracy

    settings = json.loads((folder.parent / "summary.json").read_text())["settings"]
    ds = load_dataset(settings["dataset"], settings.get("data_dir"))
    calib = ds.train.images[torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(0))[:512]]
    images = calib.float().div(255.0).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"images": images[i:i + 64]} for i in range(0, len(images), 64)])

        def get_next(self):
            return next(self.it, None)

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        for name, fmt, per_channel in (("qdq per-channel (shipped)", QuantFormat.QDQ, True),
                                       ("qdq per-tensor", QuantFormat.QDQ, False),
                                       ("qoperator per-channel", QuantFormat.QOperator, True)):
            path = Path(tmp) / f"{len(out)}.onnx"
            quantize_static(str(pre), str(path), Reader(), quant_format=fmt, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            f, q = [], []
            for _ in range(rounds):
                f.append(latency_ms(fp32, shape, 1, threads)["median_ms"])
                q.append(latency_ms(path, shape, 1, threads)["median_ms"])
            out.append({"lever": name, "test_acc": onnx_accuracy(path, ds.test.images, ds.test.labels),
                        "speedup_batch1": round(statistics.median(f) / statistics.median(q), 3)})
            print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("retrain_dir")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out")
    ap.add_argument("--levers", action="store_true")
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
        if args.levers:
            row["levers"] = levers(result_path.parent, fp32, shape, args.threads, args.rounds)
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
