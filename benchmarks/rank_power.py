"""Power of the rank-correlation study (issue 25), planned before it runs: how many configurations per arm does it
take to tell Spearman's ρ between a low and a high budget with KD from ρ without KD?

    python benchmarks/rank_power.py [--reps 1000] [--resamples 1000] > docs/study-cpu/scratch/power.json

The model: in each arm a configuration's (low-budget, high-budget) scores are standard bivariate normal with the
Pearson correlation whose Spearman value is the scenario's (ρ_P = 2·sin(π·ρ_S / 6)); the arms are independent
(across arms the same configurations ranked differently in docs/study-cpu: ρ between arms +0.13 / −0.29 / −0.17, so
no help from pairing is assumed). The analysis the study uses: the difference ρ_KD − ρ_noKD with a percentile
bootstrap 95% interval over configurations (both arms resampled together); a replicate "detects" the gap when the
interval excludes 0. Each cell: `reps` simulated studies × `resamples` bootstrap resamples, seed 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
from scipy.stats import rankdata

SCENARIOS = {  # name → (Spearman without KD, with KD)
    "paper (0.49 → 0.82)": (0.49, 0.82),
    "lower level, same gap (0.30 → 0.63)": (0.30, 0.63),
}
SIZES = (20, 30, 40, 50, 60, 80, 100, 140)


def _pearson_for(spearman: float) -> float:
    return 2.0 * math.sin(math.pi * spearman / 6.0)


def _rows_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's ρ of every row pair of (R, n) arrays (average ranks for the ties resampling makes)."""
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    return np.divide((ra * rb).sum(axis=1), den, out=np.zeros(len(ra)), where=den > 0)


def _arm(rng: np.random.Generator, n: int, spearman: float) -> np.ndarray:
    r = _pearson_for(spearman)
    return rng.multivariate_normal([0.0, 0.0], [[1.0, r], [r, 1.0]], size=n)  # (n, 2): low, high


def power(n: int, nokd: float, kd: float, reps: int, resamples: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    detected = 0
    widths = []
    for _ in range(reps):
        a, b = _arm(rng, n, kd), _arm(rng, n, nokd)
        idx = rng.integers(0, n, size=(resamples, n))
        diff = _rows_spearman(a[idx, 0], a[idx, 1]) - _rows_spearman(b[idx, 0], b[idx, 1])
        lo, hi = np.percentile(diff, [2.5, 97.5])
        detected += lo > 0 or hi < 0
        widths.append(hi - lo)
    return {"n": n, "power": detected / reps, "mean_ci_width": float(np.mean(widths))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args()
    out = {"reps": args.reps, "resamples": args.resamples, "test": "paired percentile bootstrap 95%, two-sided",
           "scenarios": {}}
    for name, (nokd, kd) in SCENARIOS.items():
        rows = [power(n, nokd, kd, args.reps, args.resamples) for n in SIZES]
        out["scenarios"][name] = rows
        for row in rows:
            print(f"{name}: n = {row['n']}: power {row['power']:.2f}, interval width {row['mean_ci_width']:.2f}",
                  file=sys.stderr, flush=True)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
