"""`autokd report RUN_DIR [--compare OTHER]`: report.md, correlation.csv and PNG figures from the journal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autokd.errors import RunDirError
from autokd.fsutil import write_atomic
from autokd.report.correlation import BudgetPair, accuracies_by_budget, budget_correlations, correlation_csv
from autokd.search.journal import read_journal
from autokd.space.configspace import THETA_KEYS


@dataclass
class RunData:
    run_dir: Path
    run: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return "no KD" if self.run.get("settings", {}).get("no_kd") else "KD"

    @property
    def results(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] in ("finished", "failed")]


def load_run_data(run_dir: str | Path) -> RunData:
    d = Path(run_dir)
    if not (d / "journal.jsonl").is_file():
        raise RunDirError(f"{d} has no journal.jsonl; give the run directory of an autokd search")
    _, events, _ = read_journal(d / "journal.jsonl")
    try:
        run = json.loads((d / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        run = {}
    return RunData(d, run, events)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_histograms(runs: list[RunData], path: Path) -> None:
    plt = _plt()
    budgets = sorted({b for r in runs for b in accuracies_by_budget(r.events)})
    fig, axes = plt.subplots(1, max(1, len(budgets)), figsize=(4.2 * max(1, len(budgets)), 3.4), squeeze=False)
    for ax, b in zip(axes[0], budgets):
        for r in runs:
            accs = list(accuracies_by_budget(r.events).get(b, {}).values())
            if accs:
                ax.hist(accs, bins=min(20, max(5, len(accs))), alpha=0.6, label=f"{r.label} (n={len(accs)})")
        ax.set_title(f"{b:g} epochs")
        ax.set_xlabel("validation accuracy")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("configurations")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def best_so_far(r: RunData) -> tuple[list[float], list[float]]:
    """(minutes since the first event, best validation accuracy so far) at each finished trial."""
    if not r.events:
        return [], []
    t0 = min(e["time"] for e in r.events)
    xs, ys, best = [], [], float("-inf")
    for e in sorted((e for e in r.events if e["event"] == "finished"), key=lambda e: e["time"]):
        best = max(best, e["val_acc"])
        xs.append((e["time"] - t0) / 60)
        ys.append(best)
    return xs, ys


def plot_best_so_far(runs: list[RunData], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in runs:
        xs, ys = best_so_far(r)
        if xs:
            ax.step(xs, ys, where="post", label=r.label)
    ax.set_xlabel("wall-clock minutes")
    ax.set_ylabel("best validation accuracy so far")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def per_config_top(r: RunData) -> dict[tuple[int, ...], dict[str, Any]]:
    """Each configuration's result at its highest budget."""
    out: dict[tuple[int, ...], dict[str, Any]] = {}
    for e in r.events:
        if e["event"] == "finished":
            cid = tuple(e["config_id"])
            if cid not in out or e["budget"] >= out[cid]["budget"]:
                out[cid] = e
    return out


def plot_tau_alpha(r: RunData, path: Path) -> None:
    plt = _plt()
    tops = list(per_config_top(r).values())
    fig, ax = plt.subplots(figsize=(5.2, 4))
    if tops:
        sc = ax.scatter([e["temperature"] for e in tops], [e["alpha"] for e in tops],
                        c=[e["val_acc"] for e in tops], s=[20 + 20 * (e["budget"] / max(t["budget"] for t in tops))
                                                           for e in tops], cmap="viridis")
        fig.colorbar(sc, ax=ax, label="val accuracy at the configuration's highest budget")
    ax.set_xlabel("temperature τ")
    ax.set_ylabel("KD weight α")
    ax.set_title("τ / α landscape (marker size: budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _corr_rows(pairs: list[BudgetPair]) -> list[str]:
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    return [f"| {p.low:g} → {p.high:g} | {p.n} | {f(p.spearman)} | {f(p.kendall)} |" for p in pairs]


def build_report(run_dir: str | Path, out_dir: str | Path | None = None,
                 compare: str | Path | None = None) -> Path:
    main = load_run_data(run_dir)
    other = load_run_data(compare) if compare else None
    out = Path(out_dir) if out_dir else main.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    runs = [main] + ([other] if other else [])
    pairs = budget_correlations(main.events)
    write_atomic(out / "correlation.csv", correlation_csv(pairs))
    plot_histograms(runs, out / "accuracy_by_budget.png")
    plot_best_so_far(runs, out / "best_so_far.png")
    plot_tau_alpha(main, out / "tau_alpha.png")
    settings = main.run.get("settings", {})
    results = main.results
    ok = [e for e in results if e["event"] == "finished"]
    lines = [f"# autokd search report: {main.run_dir}", "",
             f"Dataset **{settings.get('dataset', '?')}**, teacher **{settings.get('teacher') or 'none'}**, space "
             f"{main.run.get('space', '?')}, budgets {settings.get('min_budget', '?')}–{settings.get('max_budget', '?')}"
             f" epochs (η={settings.get('eta', '?')}). {len(ok)} trials finished, {len(results) - len(ok)} failed.", ""]
    best_path = main.run_dir / "best.json"
    if best_path.is_file():
        best = json.loads(best_path.read_text())
        src = best.get("source", {})
        lines += [f"Best generator (`best.json`): config {tuple(src.get('config_id', []))}, val_acc "
                  f"{src.get('val_acc', float('nan')):.4f} at {src.get('budget', 0):g} epochs, "
                  f"τ={best['kd']['temperature']:.2f}, α={best['kd']['alpha']:.2f}.", ""]
        shape, classes = main.run.get("input_shape"), main.run.get("num_classes")
        if shape and classes:
            from autokd.errors import InvalidGenerator
            from autokd.report.draw import draw_architecture
            from autokd.space.generator import sample_architecture

            try:
                spec = sample_architecture(best["generator"], 0, tuple(shape), classes, best.get("param_limit")
                                           or main.run.get("param_limit") or 4_000_000)
                draw_architecture(spec, out / "best_architecture.png")
                lines += ["![an architecture sampled from the best generator](best_architecture.png)", ""]
            except InvalidGenerator as exc:
                lines += [f"(no drawing: {exc})", ""]
    lines += ["## Rank correlation across budgets", "",
              "Over the configurations evaluated at both budgets (n); values in `correlation.csv`.", ""]
    header = ["| budgets | n | Spearman | Kendall |", "|---|---|---|---|"]
    lines += [f"**{main.label}**", ""] + header + _corr_rows(pairs) + [""]
    if other:
        lines += [f"**{other.label}** ({other.run_dir})", ""] + header + _corr_rows(budget_correlations(other.events))
        lines += [""]
    lines += ["## Accuracy per budget", "", "![histograms](accuracy_by_budget.png)", "",
              "## Best so far", "", "![best so far](best_so_far.png)", "",
              "## τ / α landscape", "", "![tau alpha](tau_alpha.png)", "", "## Top configurations", "",
              "| config | budget | val_acc | τ | α | params | " + " | ".join(THETA_KEYS) + " |",
              "|" + "---|" * (6 + len(THETA_KEYS))]
    for e in sorted(ok, key=lambda e: (-e["budget"], -e["val_acc"]))[:10]:
        theta = e.get("theta", {})
        lines.append(f"| {tuple(e['config_id'])} | {e['budget']:g} | {e['val_acc']:.4f} | "
                     f"{(e.get('temperature') or 0):.2f} | {(e.get('alpha') or 0):.2f} | {e.get('params') or 0:,} | "
                     + " | ".join(f"{theta.get(k, 0):.3g}" for k in THETA_KEYS) + " |")
    write_atomic(out / "report.md", "\n".join(lines) + "\n")
    return out
