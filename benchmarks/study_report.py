"""Tables and figures of the study (benchmarks/study.py) for docs/results.md: rank correlations with bootstrap CIs,
the paired KD − no-KD difference, the successive-halving hit rate, BOHB against random search, families against
hand-designed students with a significance test.

    python benchmarks/study_report.py runs/study --experiment experiments/study-cpu.yaml [--figures docs/figures]
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from autokd.report.correlation import pair_from, top_fraction_hit


def load_rank(out: Path) -> dict[str, dict[int, dict[float, float]]]:
    """arm → config → budget → val_acc."""
    arms: dict[str, dict[int, dict[float, float]]] = {}
    for f in sorted((out / "rank").glob("*/config-*.json")):
        r = json.loads(f.read_text())
        accs = {float(b): v["val_acc"] for b, v in r["results"].items() if v.get("val_acc") is not None}
        arms.setdefault(r["arm"], {})[int(r["config"])] = accs
    return arms


def paired_difference(a: dict[int, dict[float, float]], b: dict[int, dict[float, float]], lo: float, hi: float,
                      n_boot: int = 2000) -> tuple[float, tuple[float, float]] | None:
    """Spearman(a) − Spearman(b) over the configurations both arms scored at both budgets, with a paired bootstrap
    95% CI (the same resampled configurations in both arms)."""
    common = sorted(c for c in set(a) & set(b) if all(x in a[c] and x in b[c] for x in (lo, hi)))
    if len(common) < 3:
        return None
    xa = np.array([[a[c][lo], a[c][hi]] for c in common])
    xb = np.array([[b[c][lo], b[c][hi]] for c in common])
    diff = stats.spearmanr(xa[:, 0], xa[:, 1]).statistic - stats.spearmanr(xb[:, 0], xb[:, 1]).statistic
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(common), len(common))
        sa = stats.spearmanr(xa[i, 0], xa[i, 1]).statistic
        sb = stats.spearmanr(xb[i, 0], xb[i, 1]).statistic
        if sa == sa and sb == sb:
            boots.append(sa - sb)
    lo_ci, hi_ci = np.percentile(boots, [2.5, 97.5])
    return float(diff), (float(lo_ci), float(hi_ci))


def bracket_hit_rate(low: dict[int, float], high: dict[int, float], size: int = 9, draws: int = 2000) -> float | None:
    """How often successive halving with η = 3 keeps the best: over random brackets of `size` configurations, the
    share where the best at the high budget is in the top third at the low budget (the cpu preset's bracket: 9)."""
    common = sorted(set(low) & set(high))
    if len(common) < size:
        return None
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(draws):
        pick = [common[i] for i in rng.choice(len(common), size, replace=False)]
        hits += bool(top_fraction_hit({c: low[c] for c in pick}, {c: high[c] for c in pick}))
    return hits / draws


def paired_accuracy(a: dict[int, dict[float, float]], b: dict[int, dict[float, float]], budget: float,
                    n_boot: int = 2000) -> tuple[int, float, tuple[float, float]] | None:
    """Mean accuracy of arm a minus arm b at one budget over the configurations both scored, with a bootstrap 95%
    CI over configurations."""
    common = sorted(c for c in set(a) & set(b) if budget in a[c] and budget in b[c])
    if len(common) < 3:
        return None
    d = np.array([a[c][budget] - b[c][budget] for c in common])
    rng = np.random.default_rng(0)
    boots = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return len(common), float(d.mean()), (float(lo), float(hi))


def kd_gain_vs_alpha(a: dict[int, dict[float, float]], b: dict[int, dict[float, float]], budget: float,
                     configs: dict[int, dict[str, Any]]) -> tuple[float, float] | None:
    """Spearman of (KD − no-KD accuracy) against α over configurations, with its p-value: does distilling harder
    help or hurt at this budget?"""
    common = sorted(c for c in set(a) & set(b) if budget in a[c] and budget in b[c] and c in configs)
    if len(common) < 5:
        return None
    r = stats.spearmanr([configs[c]["alpha"] for c in common], [a[c][budget] - b[c][budget] for c in common])
    return float(r.statistic), float(r.pvalue)


def rank_tables(arms: dict[str, dict[int, dict[float, float]]]) -> list[str]:
    budgets = sorted({b for arm in arms.values() for accs in arm.values() for b in accs})
    lines = ["| arm | budget | mean val acc | min – max |", "|---|---|---|---|"]
    for name, arm in arms.items():
        for b in budgets:
            v = [accs[b] for accs in arm.values() if b in accs]
            if v:
                lines.append(f"| {name} | {b:g} | {100 * statistics.mean(v):.1f}% | {100 * min(v):.1f} – "
                             f"{100 * max(v):.1f} |")
    lines += ["", "| arm | budgets | n | Spearman [95% CI] | Kendall [95% CI] | best at high in top third at low: all configs "
              "| same, share of random brackets of 9 |", "|---|---|---|---|---|---|---|"]
    for name, arm in arms.items():
        for lo, hi in combinations(budgets, 2):
            low = {c: a[lo] for c, a in arm.items() if lo in a}
            high = {c: a[hi] for c, a in arm.items() if hi in a}
            p = pair_from(low, high, lo, hi)
            hit = top_fraction_hit(low, high)
            rate = bracket_hit_rate(low, high)
            ci = lambda v, c: f"{v:.2f} [{c[0]:.2f}, {c[1]:.2f}]" if v is not None and c else "–"  # noqa: E731
            lines.append(f"| {name} | {lo:g} → {hi:g} | {p.n} | {ci(p.spearman, p.spearman_ci)} | "
                         f"{ci(p.kendall, p.kendall_ci)} | {'yes' if hit else 'no' if hit is not None else '–'} | "
                         f"{'–' if rate is None else f'{100 * rate:.0f}%'} |")
    return lines


def scatter(arms: dict[str, dict[int, dict[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted({b for arm in arms.values() for accs in arm.values() for b in accs})
    pairs = list(combinations(budgets, 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.3 * len(pairs), 4), squeeze=False)
    colours = {"kd-step": "#4C72B0", "nokd-step": "#DD8452", "kd-cosine": "#55A868", "nokd-cosine": "#C44E52"}
    for ax, (lo, hi) in zip(axes[0], pairs):
        for name, arm in arms.items():
            common = [c for c in arm if lo in arm[c] and hi in arm[c]]
            rho = stats.spearmanr([arm[c][lo] for c in common], [arm[c][hi] for c in common]).statistic \
                if len(common) >= 3 else float("nan")
            ax.scatter([arm[c][lo] for c in common], [arm[c][hi] for c in common], s=16, alpha=0.8,
                       color=colours.get(name), label=f"{name}: ρ = {rho:.2f}, n = {len(common)}")
        ax.set_xlabel(f"validation accuracy at {lo:g} epoch(s)")
        ax.set_ylabel(f"at {hi:g} epochs")
        ax.grid(alpha=0.3)
    for ax in axes[0]:
        ax.legend(fontsize=8)
    n = max(len(arm) for arm in arms.values())
    fig.suptitle(f"the same configurations (up to {n} per arm) at two budgets: each point is one configuration")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def search_section(out: Path, fig: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autokd.report.data import load_run_data

    runs = {p.name: load_run_data(p) for p in sorted((out / "search").glob("*-seed*")) if (p / "journal.jsonl").is_file()}
    if not runs:
        return ["(search part not run)"]
    fig_, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    lines = ["| run | best val acc (any budget) | best at the top budget | evaluations | model-based proposals | "
             "wall time |", "|---|---|---|---|---|---|"]
    finals: dict[str, list[float]] = {"bohb": [], "random": []}
    for name, r in runs.items():
        ok = sorted(r.finished, key=lambda e: e["time"])
        top = max(r.budgets()) if r.budgets() else None
        best_top = max((e["val_acc"] for e in ok if e["budget"] == top), default=None)
        end = r.end or {}
        finals[name.split("-")[0]].append(best_top or 0.0)
        lines.append(f"| {name} | {100 * max(e['val_acc'] for e in ok):.1f}% | {100 * (best_top or 0):.1f}% | "
                     f"{len(r.results)} | {end.get('model_based_proposals', '?')} of {end.get('proposals', '?')} | "
                     f"{r.wall_seconds() / 60:.1f} min |")
        t0 = min(e["time"] for e in r.events)
        best, xs, ys, ns = 0.0, [], [], []
        for i, e in enumerate(ok, 1):
            if e["budget"] == top:
                best = max(best, e["val_acc"])
            if best:
                xs.append((e["time"] - t0) / 60)
                ys.append(best)
                ns.append(i)
        style = "-" if name.startswith("bohb") else "--"
        axes[0].step(ns, ys, style, where="post", label=name)
        axes[1].step(xs, ys, style, where="post", label=name)
    axes[0].set_xlabel("evaluations")
    axes[1].set_xlabel("wall-clock minutes")
    for ax in axes:
        ax.set_ylabel("best validation accuracy at the top budget")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig_.tight_layout()
    fig_.savefig(fig, dpi=100)
    plt.close(fig_)
    if len(finals["bohb"]) > 1 and len(finals["random"]) > 1:
        t = stats.ttest_ind(finals["bohb"], finals["random"], equal_var=False)
        lines += ["", f"Best at the top budget, mean over seeds: BOHB {100 * statistics.mean(finals['bohb']):.2f}% ± "
                  f"{100 * statistics.stdev(finals['bohb']):.2f}, random {100 * statistics.mean(finals['random']):.2f}% "
                  f"± {100 * statistics.stdev(finals['random']):.2f} (Welch t = {t.statistic:.2f}, p = {t.pvalue:.2f})."]
    return lines


def families_section(out: Path, fig: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {}
    for f in sorted((out / "families").glob("*/summary.json")):
        s = json.loads(f.read_text())
        rows[f.parent.name] = [r["test_acc"] for r in s["per_sample"] if r.get("test_acc") is not None], s
    if not rows:
        return ["(families part not run)"]
    lines = ["| family | KD | samples | test top-1 mean ± std | params (mean) |", "|---|---|---|---|---|"]
    for name, (accs, s) in rows.items():
        fam, kd = name.rsplit("-", 1)
        lines.append(f"| {fam} | {'yes' if kd == 'kd' else 'no'} | {len(accs)} | {100 * statistics.mean(accs):.2f}% ± "
                     f"{100 * (statistics.stdev(accs) if len(accs) > 1 else 0):.2f} | {s.get('params_mean') or 0:,.0f} |")
    lines += ["", "Welch's t-test of the searched family against each other family, same KD setting:", ""]
    for kd in ("kd", "nokd"):
        base = rows.get(f"searched-{kd}")
        if not base:
            continue
        for name, (accs, _) in rows.items():
            if name.endswith(f"-{kd}") and not name.startswith("searched") and len(accs) > 1 and len(base[0]) > 1:
                t = stats.ttest_ind(base[0], accs, equal_var=False)
                lines.append(f"- {kd}: searched {100 * statistics.mean(base[0]):.2f}% vs {name} "
                             f"{100 * statistics.mean(accs):.2f}%: t = {t.statistic:.2f}, p = {t.pvalue:.3f}")
    fig_, ax = plt.subplots(figsize=(7, 3.6))
    for i, (name, (accs, _)) in enumerate(rows.items()):
        ax.scatter([i] * len(accs), accs, color="#4C72B0" if name.endswith("-kd") else "#DD8452")
        ax.plot([i - 0.2, i + 0.2], [statistics.mean(accs)] * 2, color="black")
    ax.set_xticks(range(len(rows)), list(rows), rotation=30, ha="right")
    ax.set_ylabel("test accuracy")
    ax.set_title("each family's samples after retraining (blue: KD, orange: no KD; bar: mean)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig_.tight_layout()
    fig_.savefig(fig, dpi=100)
    plt.close(fig_)
    return lines


def main() -> None:
    # a bootstrap resample with tied accuracies has no rank correlation: skipped (NaN), not worth a warning each
    warnings.filterwarnings("ignore", category=stats.ConstantInputWarning)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--experiment")
    ap.add_argument("--figures", default="docs/figures")
    args = ap.parse_args()
    out, figs = Path(args.out), Path(args.figures)
    figs.mkdir(parents=True, exist_ok=True)
    arms = load_rank(out)
    print("## Rank correlation\n")
    print("\n".join(rank_tables(arms)))
    budgets = sorted({b for arm in arms.values() for accs in arm.values() for b in accs})
    print("\nPaired differences of Spearman's ρ (bootstrap 95% CI over configurations):\n")
    for a, b in (("kd-step", "nokd-step"), ("kd-cosine", "nokd-cosine"), ("kd-step", "kd-cosine")):
        if a in arms and b in arms:
            for lo, hi in combinations(budgets, 2):
                d = paired_difference(arms[a], arms[b], lo, hi)
                if d:
                    print(f"- {a} − {b}, {lo:g} → {hi:g}: {d[0]:+.2f} [{d[1][0]:+.2f}, {d[1][1]:+.2f}]")
    configs_file = out / "rank" / "configs.json"
    configs = {c["index"]: c for c in json.loads(configs_file.read_text())} if configs_file.is_file() else {}
    if "kd-step" in arms and "nokd-step" in arms:
        print("\nAccuracy with KD minus without (same configuration, same budget; bootstrap 95% CI), and how that gain"
              " moves with α (Spearman over configurations):\n")
        for b in budgets:
            d = paired_accuracy(arms["kd-step"], arms["nokd-step"], b)
            g = kd_gain_vs_alpha(arms["kd-step"], arms["nokd-step"], b, configs)
            if d:
                print(f"- at {b:g} epoch(s), n = {d[0]}: {100 * d[1]:+.1f} points [{100 * d[2][0]:+.1f}, "
                      f"{100 * d[2][1]:+.1f}]" + (f"; gain vs α: ρ = {g[0]:+.2f} (p = {g[1]:.2f})" if g else ""))
    if "kd-cosine" in arms and "kd-step" in arms:
        print("\nCosine (annealed per budget) minus step (prefix) accuracy, KD arm:\n")
        for b in budgets:
            d = paired_accuracy(arms["kd-cosine"], arms["kd-step"], b)
            if d:
                print(f"- at {b:g} epoch(s), n = {d[0]}: {100 * d[1]:+.1f} points [{100 * d[2][0]:+.1f}, "
                      f"{100 * d[2][1]:+.1f}]")
    scatter(arms, figs / "study_rank_scatter.png")
    print("\n## Search against random\n")
    print("\n".join(search_section(out, figs / "study_search.png")))
    print("\n## Families\n")
    print("\n".join(families_section(out, figs / "study_families.png")))


if __name__ == "__main__":
    main()
