"""Rank correlation of configurations across budgets, with bootstrap confidence intervals, and the measure that
matters to successive halving: does the top third at a low budget contain the best configuration at a high one?"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

MIN_PAIRS = 3  # below this a rank correlation is undefined


@dataclass(frozen=True)
class BudgetPair:
    low: float
    high: float
    n: int  # configurations evaluated (successfully) at both budgets
    spearman: float | None  # None when n < 3 or a side is constant
    spearman_p: float | None
    kendall: float | None
    kendall_p: float | None
    spearman_ci: tuple[float, float] | None = None  # bootstrap 95%
    kendall_ci: tuple[float, float] | None = None
    why_empty: str | None = None  # why spearman is None, and what would fill it


def accuracies_by_budget(events: list[dict[str, Any]]) -> dict[float, dict[tuple[int, ...], float]]:
    """budget → {config_id: val_acc} over finished trials (the first result of an evaluation stands)."""
    out: dict[float, dict[tuple[int, ...], float]] = {}
    for e in events:
        if e["event"] == "finished" and e.get("val_acc") is not None:
            out.setdefault(float(e["budget"]), {}).setdefault(tuple(e["config_id"]), float(e["val_acc"]))
    return dict(sorted(out.items()))


def _finite(x: float) -> float | None:
    return None if x != x else float(x)  # NaN (constant input) → None


def bootstrap_ci(a: Sequence[float], b: Sequence[float], statistic: str, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile 95% CI of Spearman's ρ or Kendall's τ over configurations resampled with replacement."""
    a_arr, b_arr = np.asarray(a, float), np.asarray(b, float)
    n = len(a_arr)
    if n < MIN_PAIRS:
        return None
    rng = np.random.default_rng(seed)
    values = []
    fn = stats.spearmanr if statistic == "spearman" else stats.kendalltau
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        x, y = a_arr[idx], b_arr[idx]
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        v = fn(x, y).statistic
        if v == v:
            values.append(v)
    if len(values) < n_boot // 2:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def correlate(a: Sequence[float], b: Sequence[float], low: float, high: float, n_boot: int = 2000) -> BudgetPair:
    n = len(a)
    if n < MIN_PAIRS:
        why = (f"n = {n}: fewer than {MIN_PAIRS} configurations reached both budgets (successive halving promotes only "
               f"the best 1/η); more brackets (--iterations) or the rank-correlation study (every configuration at "
               f"every budget) fill it")
        return BudgetPair(low, high, n, None, None, None, None, why_empty=why)
    if len(set(a)) < 2 or len(set(b)) < 2:
        return BudgetPair(low, high, n, None, None, None, None,
                          why_empty="every configuration has the same accuracy at one budget: ranks are undefined")
    sp, kt = stats.spearmanr(a, b), stats.kendalltau(a, b)
    return BudgetPair(low, high, n, _finite(sp.statistic), _finite(sp.pvalue), _finite(kt.statistic),
                      _finite(kt.pvalue), bootstrap_ci(a, b, "spearman", n_boot), bootstrap_ci(a, b, "kendall", n_boot))


def budget_correlations(events: list[dict[str, Any]], n_boot: int = 2000) -> list[BudgetPair]:
    by_budget = accuracies_by_budget(events)
    return [pair_from(by_budget[lo], by_budget[hi], lo, hi, n_boot) for lo, hi in combinations(sorted(by_budget), 2)]


def pair_from(low_acc: Mapping[Any, float], high_acc: Mapping[Any, float], low: float, high: float,
              n_boot: int = 2000) -> BudgetPair:
    common = sorted(set(low_acc) & set(high_acc))
    return correlate([low_acc[c] for c in common], [high_acc[c] for c in common], low, high, n_boot)


def top_fraction_hit(low_acc: Mapping[Any, float], high_acc: Mapping[Any, float], fraction: float = 1 / 3) -> bool | None:
    """Whether the best configuration at the high budget is in the top `fraction` at the low budget (what successive
    halving needs to keep it)."""
    common = sorted(set(low_acc) & set(high_acc))
    if len(common) < MIN_PAIRS:
        return None
    best = max(common, key=lambda c: high_acc[c])
    keep = max(1, int(round(len(common) * fraction)))
    top = sorted(common, key=lambda c: -low_acc[c])[:keep]
    return best in top


def correlation_csv(pairs: list[BudgetPair]) -> str:
    rows = ["budget_low,budget_high,n,spearman,spearman_p,spearman_ci_low,spearman_ci_high,kendall,kendall_p,"
            "kendall_ci_low,kendall_ci_high,why_empty"]
    fmt = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
    for p in pairs:
        sci, kci = p.spearman_ci or (None, None), p.kendall_ci or (None, None)
        why = (p.why_empty or "").replace(",", ";")
        rows.append(f"{p.low:g},{p.high:g},{p.n},{fmt(p.spearman)},{fmt(p.spearman_p)},{fmt(sci[0])},{fmt(sci[1])},"
                    f"{fmt(p.kendall)},{fmt(p.kendall_p)},{fmt(kci[0])},{fmt(kci[1])},{why}")
    return "\n".join(rows) + "\n"
