"""Claim 1 of issue 25, as far as the study has run: reads the rank part of `benchmarks/study.py` run with
experiments/rank-scratch.yaml and prints docs/results.md's tables.

    python benchmarks/rank_report.py docs/study-cpu/scratch [--resamples 10000] [--first 50]

`--first N` reads configurations 0 … N−1 only (they are drawn in a fixed order before the run, so the first N are a
prespecified subset, not a choice): a reading quoted at one n stays reproducible while the study adds files.

Primary analysis (the paper's protocol): per arm, Spearman's ρ between the two budgets' scores, each budget trained
from scratch with its own seed; the paired difference ρ_KD − ρ_noKD with a percentile bootstrap 95% interval over
the configurations both arms finished (both arms resampled together), and its bootstrap two-sided p-value.
Secondary, labelled (the prefix analysis the earlier study used): ρ between the top budget's run scored at the low
budget on the way and the same run's end. Also: each arm's mean accuracy per budget (the chance-regime check), and
KD − no KD accuracy per budget. Holm's correction runs over the family of the two ρ differences. The power the run
has at its n comes from power.json (benchmarks/rank_power.py), interpolated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from continue_report import _rho

ARMS = ("kd-scratch", "nokd-scratch")


def load(folder: Path, part: str) -> dict[int, dict[float, float]]:
    """config → budget → validation accuracy, from the result files' `results` or `prefix` block."""
    out: dict[int, dict[float, float]] = {}
    for path in sorted(folder.glob("config-*.json")):
        d = json.loads(path.read_text())
        scores = {float(b): r["val_acc"] for b, r in d.get(part, {}).items() if r.get("val_acc") is not None}
        if scores:
            out[int(d["config"])] = scores
    return out


def paired_bootstrap(stat, columns: list[np.ndarray], resamples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(columns[0])
    return np.array([stat(*(c[idx] for c in columns)) for idx in (rng.integers(0, n, n) for _ in range(resamples))])


def ci(draws: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def p_two_sided(draws: np.ndarray) -> float:
    """Bootstrap two-sided p of "no difference": twice the smaller tail, resamples at exactly 0 split between them
    (small n gives many: a resample of one configuration has ρ undefined, counted 0 in both arms)."""
    ties = 0.5 * (draws == 0).mean()
    return float(min(1.0, 2 * min((draws < 0).mean() + ties, (draws > 0).mean() + ties)))


def holm(ps: list[float]) -> list[float]:
    order = sorted(range(len(ps)), key=ps.__getitem__)
    out, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


def power_at(study: Path, n: int) -> dict[str, float]:
    path = study / "power.json"
    if not path.is_file():
        return {}
    d = json.loads(path.read_text())
    return {name: (float(np.interp(n, [r["n"] for r in rows], [r["power"] for r in rows])), n < rows[0]["n"])
            for name, rows in d["scenarios"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", help="the study's --out folder")
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--first", type=int, help="only configurations 0 … N−1 (default: every one finished)")
    args = ap.parse_args()
    study = Path(args.study)
    kd, nokd = (load(study / "rank" / arm, "results") for arm in ARMS)
    kd_pre, nokd_pre = (load(study / "rank" / arm, "prefix") for arm in ARMS)
    budgets = sorted({b for c in kd.values() for b in c})
    if len(budgets) < 2:
        sys.exit("no configuration has both budgets yet")
    low, high = budgets[0], budgets[-1]
    common = sorted(c for c in set(kd) & set(nokd) if {low, high} <= set(kd[c]) and {low, high} <= set(nokd[c])
                    and (args.first is None or c < args.first))
    planned = len(json.loads((study / "rank" / "configs.json").read_text()))
    if args.first is not None:
        print(f"the first {args.first} configurations only (--first)")
    if len(common) < 4:
        sys.exit(f"{len(common)} configuration(s) in both arms so far; the tables need at least 4")
    col = {(name, b): np.array([arm[c][b] for c in common]) for name, arm in (("kd", kd), ("nokd", nokd))
           for b in (low, high)}
    print(f"{len(common)} of {planned} configurations done in both arms; bootstrap {args.resamples:,} resamples "
          f"of the configurations, seed 0\n")
    print("| arm | budget (epochs) | mean val. acc. | min – max |\n|---|---|---|---|")
    for name in ("kd", "nokd"):
        for b in (low, high):
            x = col[name, b]
            print(f"| {name}-scratch | {b:g} | {100 * x.mean():.2f}% | {100 * x.min():.1f} – {100 * x.max():.1f} |")
    print("\n| analysis | ρ with KD [95% CI] | ρ without KD [95% CI] | KD − no KD [95% CI] | p (bootstrap) | "
          "p (Holm, 2 tests) |\n|---|---|---|---|---|---|")
    rows, ps = [], []
    analyses = [("from scratch, own seeds (primary)", col["kd", low], col["kd", high], col["nokd", low],
                 col["nokd", high])]
    pre = [c for c in common if low in kd_pre.get(c, {}) and low in nokd_pre.get(c, {})]
    if len(pre) == len(common):
        analyses.append((f"prefix: the {high:g}-epoch run scored at {low:g} (secondary)",
                         np.array([kd_pre[c][low] for c in common]), col["kd", high],
                         np.array([nokd_pre[c][low] for c in common]), col["nokd", high]))
    for label, a_lo, a_hi, b_lo, b_hi in analyses:
        cols = [a_lo, a_hi, b_lo, b_hi]
        ra = paired_bootstrap(lambda u, v, *_: _rho(u, v), cols, args.resamples)
        rb = paired_bootstrap(lambda _u, _v, x, y: _rho(x, y), cols, args.resamples)
        diff = ra - rb
        ps.append(p_two_sided(diff))
        rows.append((label, _rho(a_lo, a_hi), ci(ra), _rho(b_lo, b_hi), ci(rb), _rho(a_lo, a_hi) - _rho(b_lo, b_hi),
                     ci(diff)))
    for (label, r1, c1, r2, c2, d, cd), p, ph in zip(rows, ps, holm(ps)):
        print(f"| {label} | {r1:.2f} [{c1[0]:.2f}, {c1[1]:.2f}] | {r2:.2f} [{c2[0]:.2f}, {c2[1]:.2f}] | "
              f"{d:+.2f} [{cd[0]:+.2f}, {cd[1]:+.2f}] | {p:.3f} | {ph:.3f} |")
    print("\n| budget (epochs) | KD − no KD accuracy, points [95% CI] | ρ between the arms [95% CI] |\n|---|---|---|")
    for b in (low, high):
        d = paired_bootstrap(lambda u, v: float(np.mean(u - v)), [col["kd", b], col["nokd", b]], args.resamples)
        r = paired_bootstrap(_rho, [col["kd", b], col["nokd", b]], args.resamples)
        mean = float(np.mean(col["kd", b] - col["nokd", b]))
        print(f"| {b:g} | {100 * mean:+.2f} [{100 * ci(d)[0]:+.2f}, {100 * ci(d)[1]:+.2f}] | "
              f"{_rho(col['kd', b], col['nokd', b]):.2f} [{ci(r)[0]:.2f}, {ci(r)[1]:.2f}] |")
    power = power_at(study, len(common))
    if power:
        print("\nPower at this n (benchmarks/rank_power.py, interpolated): "
              + "; ".join(f"{name}: {'below ' if below else ''}{100 * p:.0f}%" for name, (p, below) in power.items())
              + ".")


if __name__ == "__main__":
    main()
