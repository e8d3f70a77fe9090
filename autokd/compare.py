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


# ------------------------------------------------------------------------------------------------ does KD pay?
@dataclass(frozen=True)
class PairedDifference:
    """mean(with − without) over pairs trained alike but for one thing (same architecture, seed, data order and
    recipe; KD on or off), in points, with the paired t-interval and two-sided test."""

    name: str
    n: int
    mean_with: float  # points
    mean_without: float
    diff: float  # points
    std_diff: float | None
    ci_low: float | None  # None with fewer than 2 pairs
    ci_high: float | None
    p_value: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def paired_difference(name: str, with_accs: Sequence[float], without_accs: Sequence[float]) -> PairedDifference:
    """Paired t on the per-pair differences; accuracies are fractions, the result in points."""
    if len(with_accs) != len(without_accs) or not with_accs:
        raise ValueError("paired accuracies: the same positive number on each side")
    d = [100.0 * (a - b) for a, b in zip(with_accs, without_accs)]
    mean = statistics.mean(d)
    sd = statistics.stdev(d) if len(d) > 1 else None
    low = high = p = None
    if sd is not None:
        from scipy import stats

        se = sd / math.sqrt(len(d))
        if se > 0:
            t = stats.t.ppf(0.5 + CONFIDENCE / 2, len(d) - 1)
            low, high = mean - t * se, mean + t * se
            p = float(2 * stats.t.sf(abs(mean) / se, len(d) - 1))
        else:
            low = high = mean
            p = 0.0 if mean != 0 else 1.0
    return PairedDifference(name, len(d), 100.0 * statistics.mean(with_accs), 100.0 * statistics.mean(without_accs),
                            mean, sd, low, high, p)


def kd_verdict(d: PairedDifference) -> str:
    """One sentence: did distillation pay, by how much, with its 95% CI and test."""
    if d.ci_low is None:
        return (f"Distillation: {d.diff:+.2f} points with KD ({d.name}, 1 pair: no CI; retrain with --samples 2 or "
                f"more).")
    stats_text = (f"{d.diff:+.2f} points [{d.ci_low:+.2f}, {d.ci_high:+.2f}] (95% CI, paired t-test p = "
                  f"{d.p_value:.3g}, {d.n} pairs: same architectures and seeds with and without KD; {d.name})")
    if d.ci_low > 0:
        return f"Distillation paid: {stats_text}."
    if d.ci_high < 0:
        return f"Distillation cost accuracy: {stats_text}; retrain with --no-kd, or try another teacher or --kd-loss."
    return f"Distillation did not measurably pay: {stats_text}; not told apart at this number of pairs."


def kd_ablation(pairs: dict[str, tuple[Sequence[float], Sequence[float]]]) -> dict[str, Any]:
    """Per group (the family, each baseline) and pooled over every pair: KD − no KD, and the pooled verdict."""
    groups = {name: paired_difference(name, w, wo) for name, (w, wo) in pairs.items() if w}
    if not groups:
        return {"groups": {}, "pooled": None, "verdict": None}
    with_all = [a for w, _ in pairs.values() for a in w]
    without_all = [a for _, wo in pairs.values() for a in wo]
    pooled = paired_difference("pooled over " + ", ".join(groups) if len(groups) > 1 else next(iter(groups)),
                               with_all, without_all)
    return {"groups": {k: v.to_json() for k, v in groups.items()}, "pooled": pooled.to_json(),
            "verdict": kd_verdict(pooled)}
