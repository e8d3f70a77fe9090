"""Rank-correlation study: the same N generator configurations evaluated at three budgets, with KD and without.

Writes two run directories in the search's own format (run.json + journal.jsonl), so `autokd report OUT/kd
--compare OUT/nokd` renders them, and prints the Spearman/Kendall table low → high budget for both.

    python benchmarks/rank_correlation.py --experiment experiments/rank-correlation.yaml --out runs/rankcorr
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path

import yaml

from autokd.data.dataset import load_dataset
from autokd.fsutil import write_atomic
from autokd.kd.teacher import resolve_teacher
from autokd.report.correlation import budget_correlations
from autokd.search.journal import Journal, read_journal
from autokd.search.trial import TrialContext, TrialSpec, run_trial
from autokd.space.configspace import THETA_KEYS, config_to_plain, load_space


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default="experiments/rank-correlation.yaml")
    ap.add_argument("--out", default="runs/rankcorr")
    args = ap.parse_args()
    exp = yaml.safe_load(Path(args.experiment).read_text())["study"]
    out = Path(args.out)
    ds = load_dataset(exp["dataset"])
    teacher = resolve_teacher(exp["teacher"], ds, smoke=exp.get("smoke_teacher", False))
    space = load_space("nago").with_max_nodes(exp.get("max_nodes"))
    cs = space.to_configspace(seed=exp["seed"])
    configs = [config_to_plain(c) for c in cs.sample_configuration(exp["configs"])]
    budgets = [float(b) for b in exp["budgets"]]
    for arm, with_kd in (("kd", True), ("nokd", False)):
        run_dir = out / arm
        run_dir.mkdir(parents=True, exist_ok=True)
        journal_path = run_dir / "journal.jsonl"
        done = set()
        if journal_path.exists():  # resumable: finished (config, budget) pairs are kept
            journal, _, events = Journal.resume(journal_path)
            done = {(tuple(e["config_id"]), e["budget"]) for e in events if e["event"] in ("finished", "failed")}
        else:
            journal = Journal.create(journal_path, {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "space": "nago"})
        settings = {"dataset": exp["dataset"], "teacher": exp["teacher"] if with_kd else None, "no_kd": not with_kd,
                    "min_budget": budgets[0], "max_budget": budgets[-1], "eta": 2, "subset": exp["subset"],
                    "param_limit": exp["param_limit"], "seed": exp["seed"], "max_nodes": exp.get("max_nodes")}
        write_atomic(run_dir / "run.json", json.dumps(
            {"format": "autokd.run/1", "settings": settings, "space": "nago" if with_kd else "nago-nokd",
             "param_limit": exp["param_limit"], "input_shape": list(ds.input_shape), "num_classes": ds.num_classes,
             "teacher_path": str(teacher.path) if with_kd else None, "host": socket.gethostname(),
             "study": exp}, indent=1) + "\n")
        ctx = TrialContext(exp["dataset"], None, str(teacher.path) if with_kd else None, exp["param_limit"],
                           exp["subset"], 0.1, exp["batch_size"], exp["lr"], 1e-4, exp["seed"])
        tid = 0
        for i, cfg in enumerate(configs):
            for b in budgets:
                cid = (0, 0, i)
                tid += 1
                if (cid, b) in done:
                    continue
                alpha = float(cfg["alpha"]) if with_kd else 0.0
                spec = TrialSpec(tid, cid, {k: cfg[k] for k in THETA_KEYS}, float(cfg["temperature"]), alpha, b,
                                 exp["seed"] * 1000 + i)
                journal.append("started", **spec.to_json())
                r = run_trial(spec, ctx)
                fields = {k: v for k, v in r.to_json().items() if k != "extra"}
                journal.append("finished" if r.status == "ok" else "failed", **fields, theta=spec.theta,
                               temperature=spec.temperature, alpha=alpha, seed=spec.seed)
                print(f"{arm} config {i} @{b:g}: {r.status} {r.val_acc} ({r.seconds:.0f}s)", file=sys.stderr,
                      flush=True)
        journal.close()
    print("| budgets | n | Spearman KD | Spearman no KD | Kendall KD | Kendall no KD |")
    print("|---|---|---|---|---|---|")
    kd = budget_correlations(read_journal(out / "kd" / "journal.jsonl")[1])
    nokd = budget_correlations(read_journal(out / "nokd" / "journal.jsonl")[1])
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for a, b in zip(kd, nokd):
        print(f"| {a.low:g} → {a.high:g} | {a.n}/{b.n} | {f(a.spearman)} | {f(b.spearman)} | {f(a.kendall)} | "
              f"{f(b.kendall)} |")


if __name__ == "__main__":
    main()
