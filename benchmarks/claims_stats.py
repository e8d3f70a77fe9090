"""Claims 2 and 3 of issue 25, stated fully from the committed result files: effect sizes with 95% intervals first,
then exact permutation p-values (every sign flip of the paired seeds; every split of the pooled samples — cheap at
these sizes, so enumerated rather than resampled), Holm-corrected within each claim.

    python benchmarks/claims_stats.py            # prints docs/results.md's tables

Claim 2: BOHB against random search, the cpu preset, paired by seed (docs/scheduling/bohb-vs-random.json): the best
validation accuracy reached within the shorter of the pair's two searches (equal wall time) and after all
evaluations (equal evaluations). Claim 3: families after the 7-epoch KD retrain
(docs/does-search-pay/one-bracket-preset/): the searched family against the hand-designed ResNet-8 and against a
random θ of the same space.
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

from scipy import stats

from rank_report import holm  # Holm's step-down, shared with claim 1's report

ROOT = Path(__file__).resolve().parents[1]


def t_interval(diffs: list[float]) -> tuple[float, float, float]:
    n, m = len(diffs), statistics.mean(diffs)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(diffs) / n ** 0.5
    return m, m - half, m + half


def sign_flip_p(diffs: list[float]) -> float:
    """Exact two-sided p of the paired mean: all 2^n sign patterns."""
    observed = abs(sum(diffs))
    flips = [abs(sum(s * d for s, d in zip(signs, diffs))) for signs in itertools.product((1, -1), repeat=len(diffs))]
    return sum(f >= observed - 1e-12 for f in flips) / len(flips)


def split_p(a: list[float], b: list[float]) -> tuple[float, int]:
    """Exact two-sided p of the difference in means: every way to split the pooled samples into groups of |a|, |b|."""
    pooled, observed = a + b, abs(statistics.mean(a) - statistics.mean(b))
    splits = list(itertools.combinations(range(len(pooled)), len(a)))
    hits = 0
    for idx in splits:
        x = [pooled[i] for i in idx]
        y = [pooled[i] for i in range(len(pooled)) if i not in idx]
        hits += abs(statistics.mean(x) - statistics.mean(y)) >= observed - 1e-12
    return hits / len(splits), len(splits)


def best_within(curve: list[list[float]], seconds: float) -> float:
    return max((acc for t, acc in curve if t <= seconds), default=float("nan"))


def claim2() -> None:
    rows = json.loads((ROOT / "docs/scheduling/bohb-vs-random.json").read_text())
    by = {(r["optimizer"], r["seed"]): r for r in rows}
    seeds = sorted({s for o, s in by if ("bohb", s) in by and ("random", s) in by})
    time_d, eval_d = [], []
    for s in seeds:
        b, r = by["bohb", s], by["random", s]
        horizon = min(b["search_seconds"], r["search_seconds"])
        time_d.append(100 * (best_within(b["curve"], horizon) - best_within(r["curve"], horizon)))
        eval_d.append(100 * (b["curve"][-1][1] - r["curve"][-1][1]))
    ps = [sign_flip_p(time_d), sign_flip_p(eval_d)]
    print(f"Claim 2, {len(seeds)} seeds ({', '.join(map(str, seeds))}); exact sign-flip test over "
          f"{2 ** len(seeds)} patterns, Holm over the 2 comparisons\n")
    print("| comparison | BOHB − random, points: mean [95% t CI] | per seed | p (exact) | p (Holm) |\n"
          "|---|---|---|---|---|")
    for (label, d), p, ph in zip((("equal wall time", time_d), ("equal evaluations", eval_d)), ps, holm(ps)):
        m, lo, hi = t_interval(d)
        print(f"| {label} | {m:+.2f} [{lo:+.2f}, {hi:+.2f}] | {', '.join(f'{x:+.2f}' for x in d)} | {p:.3f} "
              f"| {ph:.3f} |")


def claim3() -> None:
    summary = json.loads((ROOT / "docs/does-search-pay/one-bracket-preset/retrain-summary.json").read_text())
    one_bracket = [100 * r["test_acc"] for r in summary["per_sample"] if r.get("test_acc") is not None]
    resnet = [100 * a for a in summary["baselines"]["resnet"]["test_accs"]]
    samples = ROOT / "docs/does-search-pay/one-bracket-preset/random-samples"
    random_theta = [100 * json.loads(p.read_text())["test_acc"] for p in sorted(samples.glob("sample-*.json"))]
    # the two-bracket preset's winner and its family (docs/deploy/retrain-cpu/: the same 7-epoch KD retrain)
    two_bracket = [100 * json.loads(p.read_text())["test_acc"]
                   for p in sorted((ROOT / "docs/deploy/retrain-cpu").glob("sample-*.json"))]
    families = [("searched (one-bracket preset)", one_bracket)]
    if len(two_bracket) >= 2:
        families.append(("searched (two-bracket preset)", two_bracket))
    pairs = [(fam, name, other) for fam in families
             for name, other in (("hand-designed ResNet-8", resnet), ("random θ family", random_theta))]
    print(f"\nClaim 3, families after the 7-epoch KD retrain; Welch 95% interval, exact permutation test over every "
          f"split of the pooled samples, Holm over the {len(pairs)} comparisons\n")
    for label, accs in [*families, ("hand-designed ResNet-8", resnet), ("random θ family", random_theta)]:
        print(f"- {label}: {', '.join(f'{a:.2f}' for a in accs)} → {statistics.mean(accs):.2f} ± "
              f"{statistics.stdev(accs):.2f}")
    print("\n| comparison | n | searched − other, points: mean [95% Welch CI] | p (exact) | splits | p (Holm) |\n"
          "|---|---|---|---|---|---|")
    results = []
    for (label, searched), name, other in pairs:
        w = stats.ttest_ind(searched, other, equal_var=False)
        ci = w.confidence_interval(0.95)
        p, n_splits = split_p(searched, other)
        results.append((f"{label} − {name}", len(searched), len(other), statistics.mean(searched)
                        - statistics.mean(other), ci, p, n_splits))
    for (name, na, nb, d, ci, p, n_splits), ph in zip(results, holm([r[5] for r in results])):
        print(f"| {name} | {na} vs {nb} | {d:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}] | {p:.3f} | {n_splits} | {ph:.3f} |")


if __name__ == "__main__":
    claim2()
    claim3()
