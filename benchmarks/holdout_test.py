"""The pre-registered held-out test of issue 35's ground-truth table (docs/ground-truth/preregistration.json).

The preregistration fixes, before the held-out configurations were trained, which predictors are tested on them
and how: Spearman's ρ with the retrain target, a one-sided permutation test of ρ > 0, Holm's correction across the
predictors. This script only reads the committed table and fidelities; it prints, per predictor, ρ on the held-out
rows with its permutation p and the Holm decision, and ρ on every row with a 95% bootstrap interval (the effect
size, optimistic for a predictor picked after looking at the seen rows).

    python benchmarks/holdout_test.py [--table docs/ground-truth]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ground_truth_report import REPO, RESAMPLES, load_fidelities, load_table, rho, rho_ci  # noqa: E402

PERMUTATIONS = 10_000


def score(parts: list[np.ndarray]) -> np.ndarray:
    """One predictor's values; several parts combine as the sum of their ranks (ties averaged)."""
    return parts[0] if len(parts) == 1 else np.sum([rankdata(p) for p in parts], axis=0)


def permutation_p(x: np.ndarray, y: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """One-sided p of ρ > 0: the share of target permutations whose ρ is at least the observed (with the +1)."""
    rng = np.random.default_rng(seed)
    observed = rho(x, y)
    hits = sum(rho(x, rng.permutation(y)) >= observed for _ in range(permutations))
    return (hits + 1) / (permutations + 1)


def holm(pvalues: dict[str, float], alpha: float = 0.05) -> dict[str, bool]:
    """Holm's step-down rejections at family-wise `alpha`."""
    order = sorted(pvalues, key=pvalues.get)
    rejected, m = {}, len(order)
    still = True
    for i, name in enumerate(order):
        still = still and pvalues[name] <= alpha / (m - i)
        rejected[name] = still
    return rejected


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=str(REPO / "docs" / "ground-truth"))
    args = ap.parse_args()
    table = Path(args.table)
    plan = json.loads((table / "preregistration.json").read_text())
    rows, fids = load_table(table), load_fidelities(REPO, table)
    predictors = {name: [parts] if isinstance(parts, str) else list(parts)
                  for name, parts in plan["predictors"].items()}

    def values(parts: list[str], ids: list[int]) -> np.ndarray:
        return score([np.array([fids[p][i][0] for i in ids]) for p in parts])

    def usable(parts: list[str], ids: list[int]) -> list[int]:
        return [i for i in ids if i in rows and all(i in fids.get(p, {}) for p in parts)]

    pvals, lines = {}, []
    for name, parts in predictors.items():
        held = usable(parts, plan["holdout"])
        if len(held) < 4:
            lines.append((name, len(held), None, None))
            continue
        x, y = values(parts, held), np.array([rows[i]["test_acc"] for i in held])
        pvals[name] = permutation_p(x, y)
        lines.append((name, len(held), rho(x, y), pvals[name]))
    decisions = holm(pvals)
    print(f"Held-out configurations with a target: {sum(i in rows for i in plan['holdout'])} of "
          f"{len(plan['holdout'])} (pre-registered {plan['written']}).\n")
    print(f"| predictor | held-out n | ρ held out | one-sided p ({PERMUTATIONS:,} permutations) | Holm (0.05) "
          f"| all rows n | ρ all rows | 95% CI ({RESAMPLES:,} resamples) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, r, p in lines:
        every = usable(predictors[name], sorted(rows))
        ra, lo, hi = rho_ci(values(predictors[name], every), np.array([rows[i]["test_acc"] for i in every]))
        held = "— | — | —" if r is None else f"{r:+.2f} | {p:.4f} | {'rejects ρ ≤ 0' if decisions[name] else 'no'}"
        print(f"| {name} | {n} | {held} | {len(every)} | {ra:+.2f} | [{lo:+.2f}, {hi:+.2f}] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
