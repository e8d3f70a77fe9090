"""Does the searched family beat the hand-designed students? Difference of mean test accuracy with a 95% CI and a
test, and the one sentence a user acts on. Plain data in and out (accuracies as fractions in [0, 1])."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Sequence

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Difference:
    """mean(a) − mean(b) in points (percentage points of accuracy), Welch's t-interval and two-sided test."""

    name_a: str
    name_b: str
    n_a: int
    n_b: int
    mean_a: float  # points
    mean_b: float
    std_a: float | None  # sample standard deviation, points (None with one sample)
    std_b: float | None
    diff: float  # points
    ci_low: float | None  # None when either side has fewer than 2 samples (no variance to test against)
    ci_high: float | None
    p_value: float | None
    df: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def difference(name_a: str, accs_a: Sequence[float], name_b: str, accs_b: Sequence[float]) -> Difference:
    """Welch's unequal-variance t-interval for mean(a) − mean(b); accuracies are fractions, the result is in points."""
    a = [100.0 * x for x in accs_a]
    b = [100.0 * x for x in accs_b]
    if not a or not b:
        raise ValueError("both groups need at least one accuracy")
    ma, mb = statistics.mean(a), statistics.mean(b)
    sa = statistics.stdev(a) if len(a) > 1 else None
    sb = statistics.stdev(b) if len(b) > 1 else None
    low = high = p = df = None
    if sa is not None and sb is not None:
        from scipy import stats

        va, vb = sa * sa / len(a), sb * sb / len(b)
        se = math.sqrt(va + vb)
        if se > 0:
            df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
            t = stats.t.ppf(0.5 + CONFIDENCE / 2, df)
            low, high = ma - mb - t * se, ma - mb + t * se
            p = float(2 * stats.t.sf(abs(ma - mb) / se, df))
        else:  # identical values on both sides: the difference is exact
            low = high = ma - mb
            p = 0.0 if ma != mb else 1.0
    return Difference(name_a, name_b, len(a), len(b), ma, mb, sa, sb, ma - mb, low, high, p, df)


def verdict(d: Difference, margin: float = 0.0) -> str:
    """One sentence: beats / is worse than / does not beat, with the difference, its 95% CI and the test."""
    stats_text = (f"{d.diff:+.2f} points [{d.ci_low:+.2f}, {d.ci_high:+.2f}] (95% CI, Welch t-test "
                  f"p = {d.p_value:.3g}, {d.n_a} vs {d.n_b} samples)" if d.ci_low is not None else
                  f"{d.diff:+.2f} points ({d.n_a} vs {d.n_b} samples: no CI without ≥ 2 samples on each side; "
                  f"retrain with --samples 3 or more)")
    them = f"the best hand-designed student ({d.name_b}, {d.mean_b:.2f}%)"
    if d.ci_low is not None and d.ci_low > margin:
        return f"The searched family ({d.mean_a:.2f}%) beats {them} by {stats_text}."
    if d.ci_high is not None and d.ci_high < -margin:
        return (f"The searched family ({d.mean_a:.2f}%) is worse than {them}: {stats_text}; "
                f"use {d.name_b}, or search a space whose members suit this limit.")
    return (f"The searched family ({d.mean_a:.2f}%) does not beat {them}: {stats_text}; the two are not told apart "
            f"at this number of samples.")


def against_baselines(family_accs: Sequence[float], baselines: dict[str, Sequence[float]]) -> dict[str, Any]:
    """The family against every baseline (each a Difference) and the verdict against the best one by mean."""
    diffs = {name: difference("family", family_accs, name, accs) for name, accs in baselines.items() if accs}
    if not diffs or not family_accs:
        return {"differences": {}, "best_baseline": None, "verdict": None}
    best = max(diffs.values(), key=lambda d: d.mean_b)
    return {"differences": {k: v.to_json() for k, v in diffs.items()}, "best_baseline": best.name_b,
            "verdict": verdict(best)}
