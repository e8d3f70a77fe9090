"""`autokd report RUN [RUN ...] [--compare OTHER ...] [--aggregate]`: report.md, correlation.csv and figures.

One run: which family won, by how much, whether the difference is noise (standard errors on the validation split),
and whether KD mattered (α of the winners; the no-KD run with --compare). Several runs with --aggregate: the paper's
repeated-run figures (accuracies tallied over runs, best-so-far mean ± std, rank correlations with their spread);
--compare then names a second group (e.g. the no-KD runs)."""

from __future__ import annotations

import json

import statistics
from pathlib import Path
from typing import Any, Sequence

from autokd.errors import UserError
from autokd.fsutil import make_output_dir, write_atomic
from autokd.report import figures
from autokd.report.pareto import front_budget, front_lines, handmade_costs
from autokd.report.correlation import BudgetPair, budget_correlations, correlation_csv
from autokd.report.data import RunData, load_run_data, pct, standard_error
from autokd.space.configspace import OPTIONAL_THETA_KEYS, THETA_KEYS
from autokd.rungs import rungs_of


def _group_label(runs: list[RunData]) -> str:
    if len(runs) == 1:
        return runs[0].label
    kd = {r.kd for r in runs}
    kind = "KD" if kd == {True} else "no KD" if kd == {False} else "mixed"
    return f"{runs[0].run_dir.resolve().parent.name}/{runs[0].name}… ({len(runs)} runs, {kind})"


def _corr_cell(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def correlation_table(pairs: list[BudgetPair]) -> list[str]:
    lines = ["| budgets | n | Spearman [95% CI] | Kendall [95% CI] | note |", "|---|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p.low:g} → {p.high:g} | {p.n} | {_corr_cell(p.spearman, p.spearman_ci)} | "
                     f"{_corr_cell(p.kendall, p.kendall_ci)} | {p.why_empty or ''} |")
    return lines


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "?"


def _header(run: RunData) -> list[str]:
    st, r = run.settings, run.run
    teacher = r.get("teacher") or {}
    end = run.end
    n_val = run.val_images
    lines = [f"# autokd search report: {run.name}", "",
             "| | |", "|---|---|",
             f"| run directory | `{run.run_dir}` |",
             f"| dataset, preset | {st.get('dataset', '?')}, {st.get('preset', '?')} |",
             f"| training / validation images | {_num(r.get('train_images'))} / {_num(n_val)} |",
             f"| parameter limit | {_num(r.get('param_limit'))}"
             + "".join(f", {name} {_num(st[key])}" for key, name in (("macs_limit", "MACs limit"),
                                                                      ("memory_limit", "activation MB limit"),
                                                                      ("latency_limit", "batch-1 ms limit"))
                       if st.get(key) is not None) + " |",
             f"| objective | {st.get('objective') or 'accuracy'}"
             + (" (ParEGO per bracket: the front below is what it spreads)" if st.get("objective", "accuracy")
                != "accuracy" else "") + " |",
             f"| teacher | {teacher.get('arch', 'none')}"
             + (f" (`{teacher['path']}`)" if teacher.get("path") else "")  # a user's TorchScript file by its name
             + (f", {pct(teacher.get('test_acc'), digits=2)} test accuracy" if teacher.get("test_acc") is not None
                else "") + " |",
             f"| budgets | {'/'.join(f'{b:g}' for b in run.planned_budgets())} epochs, η = {st.get('eta', '?')}, "
             f"{st.get('iterations', '?')} bracket(s), {st.get('optimizer', 'bohb')} with "
             f"{st.get('promotion', 'sync')} promotion, rungs trained {rungs_of(st).name}, "
             f"lr schedule "
             f"{st.get('lr_schedule', 'cosine')}"
             + (f", pre-screen: the most {st['prescreen']} of {st.get('prescreen_pool')} proposals"
                if st.get("prescreen", "none") != "none" else "") + " |",
             f"| trials | {len(run.finished)} finished, {len(run.failed)} failed |",
             *([f"| fewer trials than workers | {100 * short:.0f}% of the search phase ({r.get('workers', 1)} "
                f"worker(s); rung barriers and the end) |"] if (short := run.under_capacity_share()) is not None
               else []),
             f"| wall time | {run.wall_seconds() / 60:.1f} min"
             + (" (search finished)" if end else " (not finished, or killed)") + " |"]
    if end and end.get("proposals"):
        lines.append(f"| proposals from the {st.get('optimizer', 'bohb')} model | "
                     f"{end.get('model_based_proposals')} of {end.get('proposals')} |")
    if n_val:
        lines += ["", f"Validation accuracies are measured on {n_val:,} images: a standard error of about "
                  f"±{100 * standard_error(0.85, n_val):.1f} points at 85% (±{100 * standard_error(0.5, n_val):.1f} at "
                  f"50%). Differences smaller than about two standard errors are noise."]
    return lines + [""]


def _winner(run: RunData, out: Path) -> list[str]:
    best = run.best
    if not best:
        return ["No finished trial yet: no winner.", ""]
    src = best.get("source", {})
    n_val = src.get("val_images") or run.val_images
    se = standard_error(src.get("val_acc") or 0.0, n_val)
    top = run.by_budget().get(float(src.get("budget", 0)), {})
    ranked = sorted(top.values(), key=lambda e: -e["val_acc"])
    lines = ["## Which family won", "", *([f"**Note: {run.best_note}.**", ""] if run.best_note else []),
             f"Configuration {tuple(src.get('config_id', []))}: **{pct(src.get('val_acc'), se)}** validation accuracy "
             f"at {src.get('budget', 0):g} epochs, {src.get('params') or 0:,} parameters, τ = "
             f"{best['kd']['temperature']:.2f}, α = {best['kd']['alpha']:.2f} (architecture seed "
             f"{src.get('seed', '?')}, arch_id {src.get('arch_id', '?')})."]
    winner = tuple(src.get("config_id", []))
    if len(ranked) < 2:  # successive halving left one configuration at the top: compare where there were several
        crowded = [b for b, rows in run.by_budget().items() if len(rows) > 1]
        if crowded:
            ranked = sorted(run.by_budget()[max(crowded)].values(), key=lambda e: -e["val_acc"])
            ids = [tuple(e["config_id"]) for e in ranked]
            place = f"ranked {ids.index(winner) + 1} of {len(ids)}" if winner in ids else "was not trained"
            lines.append(f"It was the only configuration trained at {src.get('budget', 0):g} epochs; at "
                         f"{max(crowded):g} epochs it {place}.")
    if len(ranked) > 1 and se:
        first, second = ranked[0], ranked[1]
        gap = first["val_acc"] - second["val_acc"]
        noise = "more than noise." if gap > 2 * se * 2 ** 0.5 else "within noise."
        lines.append(f"At {first['budget']:g} epochs the best, configuration {tuple(first['config_id'])} at "
                     f"{pct(first['val_acc'])}, leads the runner-up {tuple(second['config_id'])} at "
                     f"{pct(second['val_acc'])} by {100 * gap:.1f} points: {gap / (se * 2 ** 0.5):.1f} standard errors "
                     f"of the difference, {noise}")
    theta = best.get("generator", {})
    keys = THETA_KEYS + OPTIONAL_THETA_KEYS
    lines += ["", "Generator θ: " + ", ".join(f"{k} = {theta[k]:.3g}" for k in keys if k in theta) + "."]
    shape, classes = run.run.get("input_shape"), run.run.get("num_classes")
    if shape and classes:
        from autokd.report.draw import draw_architecture
        from autokd.space.generator import sample_architecture

        try:
            spec = sample_architecture(theta, int(src.get("seed", 0)), tuple(shape), classes,
                                       best.get("param_limit") or run.run.get("param_limit") or 4_000_000,
                                       merge=best.get("merge_width", "cell"))  # θ carries head_channels
            draw_architecture(spec, out / "best_architecture.png")
            lines += ["", f"![the winning architecture (seed {src.get('seed', 0)}, arch_id {spec.arch_id})]"
                          f"(best_architecture.png)"]
        except UserError as exc:
            lines += ["", f"(no drawing: {exc})"]
    return lines + [""]


def _retrain_section(run: RunData) -> list[str]:
    """The family's long retrain (`autokd retrain` writes RUN_DIR/retrain/ by default) against the hand-designed
    baselines trained next to it: the verdict the user acts on."""
    path = run.run_dir / "retrain" / "summary.json"
    if not path.is_file():
        return []
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return ["## Retrain", "", f"(unreadable: {path})", ""]
    if summary.get("test_acc_mean") is None:
        return []
    lines = ["## Retrain: does searching pay?", "",
             f"The family retrained ({summary['ok']} samples, {summary['settings']['epochs']:g} epochs): "
             f"**{100 * summary['test_acc_mean']:.2f}% ± {100 * summary['test_acc_std']:.2f}** top-1 test accuracy."]
    verdict = (summary.get("comparison") or {}).get("verdict")
    if verdict:
        lines += ["", verdict, ""]
        for name, b in summary.get("baselines", {}).items():
            d = summary["comparison"]["differences"].get(name)
            if b.get("test_acc_mean") is not None and d:
                ci = f" [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]" if d.get("ci_low") is not None else ""
                lines.append(f"- {name}: {100 * b['test_acc_mean']:.2f}% ± {100 * b['test_acc_std']:.2f} "
                             f"({b['ok']} samples); family − {name} {d['diff']:+.2f} points{ci}")
    else:
        lines.append("No hand-designed baseline was trained next to it (`autokd retrain --baselines resnet,cnn`).")
    ablation = summary.get("kd_ablation") or {}
    if ablation.get("verdict"):
        lines += ["", "**Does distillation pay?** " + ablation["verdict"]]
        for d in ablation.get("groups", {}).values():
            ci = f" [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]" if d.get("ci_low") is not None else ""
            lines.append(f"- {d['name']}: {d['mean_with']:.2f}% with KD, {d['mean_without']:.2f}% without "
                         f"({d['n']} pairs): {d['diff']:+.2f} points{ci}")
    elif summary.get("teacher"):
        lines += ["", "Whether distillation paid was not measured (`autokd retrain --ablate-kd` trains every "
                  "architecture also without KD, same seeds)."]
    return lines + ["", f"Details: `{path.parent / 'summary.md'}`.", ""]


def _kd_section(main: list[RunData], other: list[RunData] | None) -> list[str]:
    lines = ["## Did KD matter?", ""]
    kd_runs = [r for r in main if r.kd]
    if kd_runs:
        alphas = []
        for r in kd_runs:
            by = r.by_budget()
            if by:
                top = max(by)
                alphas += [e.get("alpha") or 0.0 for e in sorted(by[top].values(), key=lambda e: -e["val_acc"])[:3]]
        if alphas:
            lines.append("The best configurations at the highest budget use α = "
                         + ", ".join(f"{a:.2f}" for a in alphas)
                         + (" — the search kept distillation on." if statistics.mean(alphas) > 0.3 else
                            " — the search mostly turned distillation down."))
    if other:
        def best_of(runs: list[RunData]) -> list[float]:
            return [max((e["val_acc"] for e in r.by_budget().get(max(r.budgets()), {}).values()), default=0.0)
                    for r in runs if r.budgets()]

        a, b = best_of(main), best_of(other)
        if a and b:
            n = main[0].val_images
            ma, mb = statistics.mean(a), statistics.mean(b)
            spread = (f" (mean of {len(a)} and {len(b)} runs)" if len(a) + len(b) > 2 else "")
            se = standard_error(ma, n) if n else None
            lines.append(f"Best at the highest budget: {_group_label(main)} {pct(ma)} against {_group_label(other)} "
                         f"{pct(mb)}{spread}: a difference of {100 * (ma - mb):+.1f} points"
                         + (f" (one run's standard error ±{100 * se:.1f})." if se else "."))
    elif not kd_runs:
        lines.append("This run searched without KD (the NAGO baseline).")
    else:
        lines.append("Compare with a --no-kd run to measure it: `autokd report RUN --compare NOKD_RUN`.")
    return lines + [""]


def _correlation_section(groups: list[tuple[str, list[RunData]]], out: Path) -> list[str]:
    lines = ["## Rank correlation across budgets", "",
             "Do cheap budgets rank configurations as the expensive ones do? Over the configurations evaluated at both "
             "budgets (n), with bootstrap 95% confidence intervals; values in `correlation.csv`.", ""]
    csv_text = ""
    for label, runs in groups:
        lines += [f"**{label}**", ""]
        if len(runs) == 1:
            pairs = budget_correlations(runs[0].events)
            lines += correlation_table(pairs) + [""]
            csv_text += f"# {label}\n" + correlation_csv(pairs)
        else:
            per_run = [budget_correlations(r.events, n_boot=200) for r in runs]
            keys = sorted({(p.low, p.high) for ps in per_run for p in ps})
            lines += ["| budgets | runs with a value | Spearman mean ± std | Kendall mean ± std |", "|---|---|---|---|"]
            for lo, hi in keys:
                sp = [p.spearman for ps in per_run for p in ps if (p.low, p.high) == (lo, hi) and p.spearman is not None]
                kt = [p.kendall for ps in per_run for p in ps if (p.low, p.high) == (lo, hi) and p.kendall is not None]
                cell = lambda v: (f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1  # noqa: E731
                                  else f"{v[0]:.2f}" if v else "–")
                lines.append(f"| {lo:g} → {hi:g} | {len(sp)} of {len(runs)} | {cell(sp)} | {cell(kt)} |")
            lines.append("")
            for r, ps in zip(runs, per_run):
                csv_text += f"# {r.label}\n" + correlation_csv(ps)
    write_atomic(out / "correlation.csv", csv_text)
    return lines


def _failures(runs: list[RunData]) -> list[str]:
    failed = [(r, e) for r in runs for e in r.failed]
    lost = [(r, e) for r in runs for e in r.events if e["event"] == "env_failed"]
    if not failed and not lost:
        return ["## Failed trials", "", "None.", ""]
    lines = ["## Failed trials", "", "| run | trial | config | budget | reason |", "|---|---|---|---|---|"]
    for r, e in failed:
        lines.append(f"| {r.name} | {e['trial_id']} | {tuple(e['config_id'])} | {e['budget']:g} | "
                     f"{(e.get('error') or '?')[:120]} |")
    for r, e in lost:
        lines.append(f"| {r.name} | {e['trial_id']} | {tuple(e['config_id'])} | {e['budget']:g} | environment "
                     f"(rerun on resume): {(e.get('error') or '?')[:100]} |")
    return lines + [""]


def _top_table(run: RunData) -> list[str]:
    n_val = run.val_images
    lines = ["## Top configurations", "",
             "| config | budget | val_acc ± SE | τ | α | params | " + " | ".join(THETA_KEYS) + " |",
             "|" + "---|" * (6 + len(THETA_KEYS))]
    for e in sorted(run.finished, key=lambda e: (-e["budget"], -e["val_acc"]))[:10]:
        theta = e.get("theta", {})
        lines.append(f"| {tuple(e['config_id'])} | {e['budget']:g} | {pct(e['val_acc'], standard_error(e['val_acc'], n_val))} "
                     f"| {(e.get('temperature') or 0):.2f} | {(e.get('alpha') or 0):.2f} | {e.get('params') or 0:,} | "
                     + " | ".join(f"{theta.get(k, 0):.3g}" for k in THETA_KEYS) + " |")
    return lines + [""]


def build_report(run_dirs: str | Path | Sequence[str | Path], out_dir: str | Path | None = None,
                 compare: str | Path | Sequence[str | Path] | None = None, aggregate: bool = False) -> Path:
    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    others = [compare] if isinstance(compare, (str, Path)) else list(compare or [])
    main = [load_run_data(d) for d in dirs]
    other = [load_run_data(d) for d in others] or None
    if len(main) > 1 and not aggregate:
        raise UserError("several run directories make one report only with --aggregate (repeats of one search); "
                        "or compare two runs with RUN --compare OTHER")
    out = Path(out_dir) if out_dir else (main[0].run_dir / "report" if len(main) == 1
                                         else main[0].run_dir.resolve().parent / "report")
    make_output_dir(out)
    groups = [(_group_label(main), main)] + ([(_group_label(other), other)] if other else [])
    lead = main[0]
    lines = _header(lead) if len(main) == 1 else [
        f"# autokd report: {len(main)} repeated runs" + (f" against {len(other)}" if other else ""), "",
        "Runs: " + ", ".join(f"`{r.run_dir}`" for r in main) + ".",
        *(["Compared with: " + ", ".join(f"`{r.run_dir}`" for r in other) + "."] if other else []), ""]
    if len(main) == 1:
        lines += _winner(lead, out)
        lines += _retrain_section(lead)
    else:
        bests = [r.best["source"]["val_acc"] for r in main if r.best]
        if bests:
            lines += ["## Winners over the runs", "",
                      "Best validation accuracy per run: " + ", ".join(pct(b) for b in bests)
                      + (f"; mean {pct(statistics.mean(bests))} ± {100 * statistics.stdev(bests):.1f} (std over runs)."
                         if len(bests) > 1 else "."), ""]
    if not any(r.finished for r in main + (other or [])):  # nothing to plot or correlate: say so, draw nothing
        lines += ["Nothing to plot or correlate yet; continue the search with "
                  + " or ".join(f"`autokd search --run-dir {r.run_dir} --resume`" for r in main) + ".", ""]
        write_atomic(out / "report.md", "\n".join(lines) + "\n")
        return out
    lines += _kd_section(main, other)
    if len(main) == 1 and lead.run.get("num_classes"):
        from autokd.report.diagnosis import diagnose, diagnosis_markdown

        lines += diagnosis_markdown(diagnose(lead.events, int(lead.run["num_classes"])))
    lines += _correlation_section(groups, out)
    figures.accuracy_strips(groups, out / "accuracy_by_budget.png")
    figures.best_so_far(groups, out / "best_so_far.png")
    figures.accuracy_vs_params(groups, out / "accuracy_vs_params.png")
    lines += ["## Accuracy per budget", "", "Every configuration as a point, on one axis for all budgets"
              + (", tallied over the runs" if len(main) > 1 else "") + "; lines: chance, a linear classifier on the "
              "same split, the teacher's test accuracy.", "", "![accuracy per budget](accuracy_by_budget.png)", "",
              "## Best so far", "", "At each budget separately (" + ("mean ± std over runs, against evaluations"
                                                                     if len(main) > 1 else "against wall-clock time")
              + ").", "", "![best so far](best_so_far.png)", ""]
    if lead.kd and len(main) == 1:
        shown = figures.tau_alpha(lead, out / "tau_alpha.png")
        if shown is not None:
            lines += ["## τ / α", "", f"At {shown:g} epochs (the budget with the most results), so colour is "
                      "accuracy, not budget.", "", "![tau alpha](tau_alpha.png)", ""]
    lines += ["## Accuracy against size", "", "![accuracy vs params](accuracy_vs_params.png)", ""]
    if len(main) == 1 and front_budget(lead) is not None:
        figures.pareto(lead, front_budget(lead), out / "pareto.png", handmade_costs(lead))
        lines += front_lines(lead)
    lines += _failures(main + (other or []))
    if len(main) == 1:
        lines += _top_table(lead)
    write_atomic(out / "report.md", "\n".join(lines) + "\n")
    return out
