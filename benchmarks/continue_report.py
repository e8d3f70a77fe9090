"""Continued rungs against training from scratch, on the same configurations (issue 19): reads the rank part of
`benchmarks/study.py` run with experiments/continue-vs-scratch.yaml and prints docs/training.md's table.

    python benchmarks/continue_report.py docs/scheduling/continue-vs-scratch [--arms kd-continue,kd-cosine]

Per budget: each arm's mean validation accuracy, the paired difference (first arm − second) with a percentile
bootstrap 95% interval over configurations, and Spearman's ρ between the arms' scores of the same configurations;
per arm: ρ between each lower budget and the top one (how well a rung predicts the final ranking), with its
interval. Bootstrap: 10,000 resamples of the configurations, seed 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import ConstantInputWarning, spearmanr

RESAMPLES = 10_000


def load_arm(folder: Path) -> dict[int, dict[float, float]]:
    """config index → budget → validation accuracy (configurations with a failed budget are left out)."""
    out: dict[int, dict[float, float]] = {}
    for path in sorted(folder.glob("config-*.json")):
        d = json.loads(path.read_text())
        scores = {float(b): r["val_acc"] for b, r in d["results"].items() if r.get("val_acc") is not None}
        if scores:
            out[int(d["config"])] = scores
    return out


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ; 0 for a resample whose rows are all one configuration (ρ undefined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        r = spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else 0.0


def bootstrap(stat, *columns: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """(statistic, 2.5th, 97.5th percentile) over resamples of the rows."""
    rng = np.random.default_rng(seed)
    n = len(columns[0])
    draws = [stat(*(c[idx] for c in columns)) for idx in (rng.integers(0, n, n) for _ in range(RESAMPLES))]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return stat(*columns), float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", help="the study's --out folder")
    ap.add_argument("--arms", default="kd-continue,kd-cosine")
    args = ap.parse_args()
    first, second = args.arms.split(",")
    a, b = (load_arm(Path(args.study) / "rank" / arm) for arm in (first, second))
    common = sorted(set(a) & set(b))
    budgets = sorted(set.intersection(*(set(a[c]) & set(b[c]) for c in common))) if common else []
    if len(common) < 3 or not budgets:
        sys.exit(f"{len(common)} configuration(s) in both arms so far; the table needs at least 3")
    print(f"{len(common)} configurations in both arms; bootstrap {RESAMPLES:,} resamples\n")
    print(f"| budget (epochs) | {first} mean | {second} mean | {first} − {second} [95% CI] | ρ between arms [95% CI] |")
    print("|---|---|---|---|---|")
    for bud in budgets:
        x = np.array([a[c][bud] for c in common])
        y = np.array([b[c][bud] for c in common])
        d, lo, hi = bootstrap(lambda u, v: float(np.mean(u - v)), x, y)
        r, rlo, rhi = bootstrap(_rho, x, y)
        print(f"| {bud:g} | {100 * x.mean():.2f}% | {100 * y.mean():.2f}% | {100 * d:+.2f} [{100 * lo:+.2f}, "
              f"{100 * hi:+.2f}] | {r:.2f} [{rlo:.2f}, {rhi:.2f}] |")
    top = budgets[-1]
    print("\n| arm | " + " | ".join(f"ρ({bud:g} ep, {top:g} ep) [95% CI]" for bud in budgets[:-1])
          + f" | best at {top:g} ep |")
    print("|---|" + "---|" * len(budgets))
    for arm, scores in ((first, a), (second, b)):
        cells = []
        for bud in budgets[:-1]:
            r, lo, hi = bootstrap(_rho, np.array([scores[c][bud] for c in common]),
                                  np.array([scores[c][top] for c in common]))
            cells.append(f"{r:.2f} [{lo:.2f}, {hi:.2f}]")
        best = max(common, key=lambda c: scores[c][top])
        print(f"| {arm} | " + " | ".join(cells) + f" | config {best} ({100 * scores[best][top]:.2f}%) |")


if __name__ == "__main__":
    main()
