"""The report's figures. Each takes groups of runs (one run, two compared runs, or repeated runs of a search) and
writes one PNG atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from autokd.fsutil import write_atomic
from autokd.report.data import RunData

Group = tuple[str, list[RunData]]  # (label, runs)
COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    write_atomic(path, buf.getvalue())


def _reference_lines(ax: Any, runs: list[RunData], horizontal: bool = False) -> None:
    """Chance, a linear classifier on the same split, and the teacher's test accuracy."""
    first = runs[0]
    refs = [("chance", first.chance, "#999999", ":"), ("linear classifier", first.linear_baseline, "#555555", "--"),
            ("teacher (test)", next((r.teacher_acc for r in runs if r.teacher_acc is not None), None), "#000000",
             "-.")]
    for label, value, colour, style in refs:
        if value is None:
            continue
        if horizontal:
            ax.axhline(value, color=colour, linestyle=style, linewidth=1, label=label)
        else:
            ax.axvline(value, color=colour, linestyle=style, linewidth=1, label=label)


def accuracy_strips(groups: list[Group], path: Path) -> None:
    """Validation accuracy of every configuration at each budget as points on one shared axis (tallied over the
    runs of a group), with chance, linear-classifier and teacher lines."""
    plt = _plt()
    budgets = sorted({b for _, runs in groups for r in runs for b in r.budgets()})
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.9 * max(1, len(budgets)) * max(1, len(groups))))
    rng = np.random.default_rng(0)
    labels, y = [], 0.0
    for bi, b in enumerate(budgets):
        for gi, (name, runs) in enumerate(groups):
            accs = [e["val_acc"] for r in runs for e in r.by_budget().get(b, {}).values()]
            if accs:
                jitter = rng.uniform(-0.25, 0.25, len(accs))
                ax.scatter(accs, y + jitter, s=16, alpha=0.7, color=COLOURS[gi % len(COLOURS)],
                           label=name if bi == 0 else None)
                ax.plot([np.median(accs)] * 2, [y - 0.35, y + 0.35], color="black", linewidth=1.5)
            labels.append(f"{b:g} ep" + (f" · {name}" if len(groups) > 1 else "") + f" (n={len(accs)})")
            y += 1
    _reference_lines(ax, [r for _, runs in groups for r in runs])
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("validation accuracy (black bar: median)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("accuracy per budget, every configuration")
    fig.tight_layout()
    _save(fig, path)


def best_so_far_curve(run: RunData, budget: float) -> tuple[list[float], list[float], list[int]]:
    """(minutes since the run started, best validation accuracy at this budget so far, evaluations so far)."""
    if not run.events:
        return [], [], []
    t0 = min(e["time"] for e in run.events)
    xs, ys, ns, best, n = [], [], [], float("-inf"), 0
    for e in sorted(run.results, key=lambda e: e["time"]):
        n += 1
        if e["event"] == "finished" and float(e["budget"]) == budget and e["val_acc"] > best:
            best = e["val_acc"]
        if best > float("-inf"):
            xs.append((e["time"] - t0) / 60)
            ys.append(best)
            ns.append(n)
    return xs, ys, ns


def best_so_far(groups: list[Group], path: Path) -> None:
    """Best validation accuracy so far at each budget against wall-clock minutes (one run) or against evaluations
    (mean ± std over repeated runs): a budget's curve never jumps because another budget finished."""
    plt = _plt()
    budgets = sorted({b for _, runs in groups for r in runs for b in r.budgets()})
    fig, axes = plt.subplots(1, max(1, len(budgets)), figsize=(4.2 * max(1, len(budgets)), 3.4), squeeze=False,
                             sharey=True, sharex=True)
    repeated = any(len(runs) > 1 for _, runs in groups)
    for ax, b in zip(axes[0], budgets):
        for gi, (name, runs) in enumerate(groups):
            colour = COLOURS[gi % len(COLOURS)]
            if not repeated:
                xs, ys, _ = best_so_far_curve(runs[0], b)
                if xs:  # markers where the best improved, so a budget with one result still shows it
                    ax.step(xs, ys, where="post", color=colour, label=name)
                    better = [i for i in range(len(ys)) if i == 0 or ys[i] > ys[i - 1]]
                    ax.plot([xs[i] for i in better], [ys[i] for i in better], "o", color=colour, markersize=4)
                continue
            curves = [best_so_far_curve(r, b) for r in runs]
            horizon = max((c[2][-1] for c in curves if c[2]), default=0)
            grid = np.arange(1, horizon + 1)
            stacked = []
            for _, ys, ns in curves:
                if ns:
                    stacked.append(np.interp(grid, ns, ys, left=np.nan))
            if stacked:
                arr = np.array(stacked, dtype=float)
                with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
                    __import__("warnings").simplefilter("ignore", RuntimeWarning)  # columns before a run's first result
                    mean, std = np.nanmean(arr, 0), np.nanstd(arr, 0)
                ax.plot(grid, mean, color=colour, label=f"{name} (mean of {len(stacked)})")
                ax.fill_between(grid, mean - std, mean + std, color=colour, alpha=0.2)
        ax.set_title(f"{b:g} epochs")
        ax.set_xlabel("evaluations" if repeated else "wall-clock minutes")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("best validation accuracy so far")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def tau_alpha(run: RunData, path: Path) -> float | None:
    """τ and α of the configurations at one budget (the one with most results), coloured by their accuracy there.
    Returns the budget shown."""
    plt = _plt()
    by_budget = run.by_budget()
    if not by_budget:
        return None
    budget = max(by_budget, key=lambda b: (len(by_budget[b]), -b))
    events = list(by_budget[budget].values())
    fig, ax = plt.subplots(figsize=(5.4, 4))
    sc = ax.scatter([e.get("temperature") or 0 for e in events], [e.get("alpha") or 0 for e in events],
                    c=[e["val_acc"] for e in events], cmap="viridis", s=40, edgecolors="black", linewidths=0.3)
    fig.colorbar(sc, ax=ax, label=f"validation accuracy at {budget:g} epochs")
    ax.set_xlabel("temperature τ")
    ax.set_ylabel("KD weight α")
    ax.set_xlim(0.8, 10.2)
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"τ / α at {budget:g} epochs (n = {len(events)})")
    fig.tight_layout()
    _save(fig, path)
    return budget


def accuracy_vs_params(groups: list[Group], path: Path) -> None:
    """Validation accuracy against parameter count, every evaluation, one marker per budget."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    markers = ("o", "s", "^", "D", "v", "P")
    budgets = sorted({b for _, runs in groups for r in runs for b in r.budgets()})
    for gi, (name, runs) in enumerate(groups):
        for bi, b in enumerate(budgets):
            events = [e for r in runs for e in r.by_budget().get(b, {}).values()]
            if events:
                ax.scatter([e.get("params") or 0 for e in events], [e["val_acc"] for e in events], s=26, alpha=0.8,
                           marker=markers[bi % len(markers)], color=COLOURS[gi % len(COLOURS)],
                           label=f"{name} @{b:g} ep" if len(groups) > 1 else f"{b:g} epochs")
    _reference_lines(ax, [r for _, runs in groups for r in runs], horizontal=True)
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def pareto(run: RunData, budget: float, path: Path, handmade: dict[str, dict[str, float]]) -> None:
    """Validation accuracy against each cost at one budget: every evaluation, the front as a step line, the
    teacher (MACs panel: its MACs and test accuracy), the hand-designed baselines' costs as vertical lines."""
    from autokd.report.pareto import COSTS, costed, pareto_front

    plt = _plt()
    events = list(run.by_budget().get(budget, {}).values())
    shown = [c for c in COSTS if costed(events, c)]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(4.2 * max(len(shown), 1), 3.8), squeeze=False)
    for ax, cost in zip(axes[0], shown):
        key, label = COSTS[cost]
        pool, front = costed(events, cost), pareto_front(events, cost)
        ax.scatter([e[key] for e in pool], [e["val_acc"] for e in pool], s=22, color="#BBBBBB", label="evaluation")
        ax.step([e[key] for e in front], [e["val_acc"] for e in front], where="post", color=COLOURS[0], linewidth=1.2)
        ax.scatter([e[key] for e in front], [e["val_acc"] for e in front], s=34, color=COLOURS[0],
                   label=f"front ({len(front)})", zorder=3)
        accs = [e["val_acc"] for e in pool]
        pad = max(0.01, 0.08 * (max(accs) - min(accs)))
        low, high = min(accs) - pad, max(accs) + pad  # the students' range: a teacher far above would squash it
        teacher = run.run.get("teacher") or {}
        if cost in ("macs", "params") and teacher.get(cost) and teacher.get("test_acc") is not None:
            t_acc, name = teacher["test_acc"], f"teacher {teacher.get('arch') or ''} (test)"
            if t_acc <= high:
                ax.scatter([teacher[cost]], [t_acc], marker="*", s=120, color="#000000", label=name, zorder=4)
            else:  # drawn at the top edge, pointing up, with its accuracy written beside it
                ax.scatter([teacher[cost]], [high], marker="^", s=60, color="#000000", label=f"{name} ↑ above",
                           zorder=4, clip_on=False)
                ax.annotate(f"{100 * t_acc:.2f}%", (teacher[cost], high), textcoords="offset points", xytext=(-6, -11),
                            ha="right", fontsize=6)
        ax.set_ylim(low, high)
        for i, (name, costs) in enumerate(handmade.items()):
            ax.axvline(costs[cost], color=COLOURS[(i + 1) % len(COLOURS)], linestyle="--", linewidth=1,
                       label=f"{name} at the limit")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(f"{run.name}: accuracy against cost at {budget:g} epochs", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
