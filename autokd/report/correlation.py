"""Rank correlation of configurations across budgets, from the journal alone."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

from scipy import stats


@dataclass(frozen=True)
class BudgetPair:
    low: float
    high: float
    n: int  # configurations evaluated (successfully) at both budgets
    spearman: float | None  # None when n < 3 or a side is constant
    spearman_p: float | None
    kendall: float | None
    kendall_p: float | None


def accuracies_by_budget(events: list[dict[str, Any]]) -> dict[float, dict[tuple[int, ...], float]]:
    """budget → {config_id: val_acc} over finished trials (a rerun's later result wins)."""
    out: dict[float, dict[tuple[int, ...], float]] = {}
    for e in events:
        if e["event"] == "finished" and e.get("val_acc") is not None:
            out.setdefault(float(e["budget"]), {})[tuple(e["config_id"])] = float(e["val_acc"])
    return dict(sorted(out.items()))


def _finite(x: float) -> float | None:
    return None if x != x else float(x)  # NaN (constant input) → None


def budget_correlations(events: list[dict[str, Any]]) -> list[BudgetPair]:
    by_budget = accuracies_by_budget(events)
    pairs = []
    for lo, hi in combinations(sorted(by_budget), 2):
        common = sorted(set(by_budget[lo]) & set(by_budget[hi]))
        a = [by_budget[lo][c] for c in common]
        b = [by_budget[hi][c] for c in common]
        if len(common) >= 3 and len(set(a)) > 1 and len(set(b)) > 1:
            sp = stats.spearmanr(a, b)
            kt = stats.kendalltau(a, b)
            pairs.append(BudgetPair(lo, hi, len(common), _finite(sp.statistic), _finite(sp.pvalue),
                                    _finite(kt.statistic), _finite(kt.pvalue)))
        else:
            pairs.append(BudgetPair(lo, hi, len(common), None, None, None, None))
    return pairs


def correlation_csv(pairs: list[BudgetPair]) -> str:
    rows = ["budget_low,budget_high,n,spearman,spearman_p,kendall,kendall_p"]
    fmt = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
    for p in pairs:
        rows.append(f"{p.low:g},{p.high:g},{p.n},{fmt(p.spearman)},{fmt(p.spearman_p)},{fmt(p.kendall)},"
                    f"{fmt(p.kendall_p)}")
    return "\n".join(rows) + "\n"
