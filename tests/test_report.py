import json
from pathlib import Path

import pytest
from scipy import stats

from autokd.cli import main
from autokd.report.correlation import budget_correlations


def crafted_journal(path, accs):
    """accs: {config index: {budget: val_acc}} → a journal in the real format."""
    lines = [json.dumps({"format": "autokd.journal/1", "created": "x"})]
    tid, t = 0, 1000.0
    for c, by_budget in accs.items():
        for b, a in by_budget.items():
            common = {"trial_id": tid, "config_id": [0, 0, c], "budget": b, "temperature": 2.0 + c % 5,
                      "alpha": (c % 10) / 10, "seed": c, "theta": {"G1_nodes": 3}}
            lines.append(json.dumps({"event": "started", "time": t, **common}))
            t += 5
            if a is None:
                lines.append(json.dumps({"event": "failed", "time": t, "error": "boom", **common}))
            else:
                lines.append(json.dumps({"event": "finished", "time": t, "val_acc": a, "loss": 1 - a,
                                         "params": 1000, "seconds": 5.0, **common}))
            tid += 1
    path.write_text("\n".join(lines) + "\n")


def test_correlations_match_scipy(tmp_path):
    import random
    rng = random.Random(0)
    accs = {}
    for c in range(12):
        base = 0.2 + 0.5 * rng.random()
        clip = lambda v: min(1.0, max(0.0, v))  # noqa: E731 - accuracies stay in [0, 1]
        accs[c] = {30.0: clip(base + rng.gauss(0, 0.1)), 60.0: clip(base + rng.gauss(0, 0.05))}
        if c < 6:
            accs[c][120.0] = clip(base + rng.gauss(0, 0.03))
    accs[12] = {30.0: None, 60.0: 0.5}  # failed at 30: not in the 30→60 pair
    crafted_journal(tmp_path / "journal.jsonl", accs)
    from autokd.hpo.journal import read_journal
    _, events, _ = read_journal(tmp_path / "journal.jsonl")
    pairs = {(p.low, p.high): p for p in budget_correlations(events)}
    a30 = [accs[c][30.0] for c in range(12)]
    a60 = [accs[c][60.0] for c in range(12)]
    p = pairs[(30.0, 60.0)]
    assert p.n == 12
    assert p.spearman == pytest.approx(stats.spearmanr(a30, a60).statistic)
    assert p.kendall == pytest.approx(stats.kendalltau(a30, a60).statistic)
    q = pairs[(60.0, 120.0)]
    assert q.n == 6 and q.spearman == pytest.approx(
        stats.spearmanr([accs[c][60.0] for c in range(6)], [accs[c][120.0] for c in range(6)]).statistic)


def test_report_renders_from_a_small_real_search(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--dataset", "synthetic:1x8x8:3:400", "--preset", "smoke", "--subset", "200", "--min-budget",
            "0.5", "--max-budget", "2", "--executor", "local", "--quiet"]
    assert main(["search", *args, "--no-kd", "--objective", "accuracy+macs", "--run-dir", str(run)]) == 0
    lo, hi = json.loads((run / "run.json").read_text())["objective_bounds"]  # the space's MACs, for ParEGO's scale
    assert 0 < lo < hi
    other = tmp_path / "other"
    assert main(["search", *args, "--no-kd", "--seed", "1", "--optimizer", "tpe", "--run-dir", str(other)]) == 0
    assert main(["report", str(run), "--compare", str(other)]) == 0
    rep = run / "report"
    text = (rep / "report.md").read_text()
    assert "Spearman" in text and "0.5 → 1" in text and "Top configurations" in text
    for png in ("accuracy_by_budget.png", "best_so_far.png", "accuracy_vs_params.png", "best_architecture.png"):
        assert (rep / png).read_bytes()[:4] == b"\x89PNG"
    csv = (rep / "correlation.csv").read_text().splitlines()
    assert csv[0].startswith("# run (no KD)") and csv[1].startswith("budget_low,budget_high,n,spearman")
    assert len(csv) == 2 * 5  # per run: a name line, a header, 3 budget pairs
    assert "other (no KD)" in text  # runs are labelled by name

    # the accuracy/cost front, and a point of it exported: the very network that was evaluated
    assert "## Accuracy against cost" in text and (rep / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    from autokd.report.data import load_run_data
    from autokd.report.pareto import front_budget, knee, pareto_front
    from autokd.space.spec import load_arch

    data = load_run_data(run)
    events = list(data.by_budget()[front_budget(data)].values())
    assert all(e["activation_mb"] > 0 and e["macs"] > 0 for e in events)
    front = pareto_front(events, "macs")
    assert f"| {len(events)} | {len(front)} |" in text
    for pick, chosen in (("knee", knee(front, "macs")), (f"under:macs={front[0]['macs']}", front[0])):
        out = tmp_path / f"export-{pick}"
        assert main(["export", str(run), "--pick", pick, "--out", str(out)]) == 0
        assert load_arch(out / "arch.json").arch_id == chosen["arch_id"]
        assert json.loads((out / "generator.json").read_text())["source"]["trial_id"] == chosen["trial_id"]
    capsys.readouterr()
    assert main(["export", str(run), "--pick", f"under:macs={front[0]['macs'] - 1}", "--out",
                 str(tmp_path / "none")]) == 2
    assert "the cheapest costs" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_report_without_journal_is_exit_2(tmp_path):
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "autokd.cli", "report", str(tmp_path)], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "no journal" in p.stderr and "Traceback" not in p.stderr


def test_report_of_a_run_with_no_result_yet_says_how_to_continue_and_draws_nothing(tmp_path, capsys):
    import warnings

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "autokd.run/1", "settings": {
        "dataset": "synthetic:1x8x8:3:400", "preset": "smoke", "min_budget": 1.0, "max_budget": 4.0, "eta": 2,
        "iterations": 3, "no_kd": True}, "space": "nago-nokd", "num_classes": 3, "val_images": 40}))
    started = {"event": "started", "time": 1.0, "trial_id": 0, "config_id": [0, 0, 0], "budget": 1.0,
               "temperature": None, "alpha": None, "seed": 0, "theta": {"G1_nodes": 3}}
    (run / "journal.jsonl").write_text(json.dumps({"format": "autokd.journal/1", "created": "x"}) + "\n"
                                       + json.dumps(started) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no plotting warning about empty axes
        assert main(["report", str(run)]) == 0
    text = (run / "report" / "report.md").read_text()
    assert f"autokd search --run-dir {run} --resume" in text and "| budgets | 1/2/4 epochs" in text
    assert not list((run / "report").glob("*.png"))


def test_the_front_is_every_point_no_other_dominates_and_the_knee_is_its_bend():
    import random

    from autokd.report.pareto import knee, pareto_front

    rng = random.Random(3)
    events = [{"trial_id": i, "macs": rng.randint(1, 50) * 1000, "val_acc": round(rng.random(), 2)}
              for i in range(60)]
    front = pareto_front(events, "macs")

    def dominated(e):
        return any(o is not e and o["macs"] <= e["macs"] and o["val_acc"] >= e["val_acc"]
                   and (o["macs"], -o["val_acc"], o["trial_id"]) < (e["macs"], -e["val_acc"], e["trial_id"])
                   for o in events)

    assert {e["trial_id"] for e in front} == {e["trial_id"] for e in events if not dominated(e)}
    assert [e["macs"] for e in front] == sorted(e["macs"] for e in front)
    bend = [{"trial_id": i, "macs": m, "val_acc": a}
            for i, (m, a) in enumerate([(1e5, 0.50), (1e6, 0.88), (1e7, 0.90), (1e8, 0.91)])]
    assert knee(pareto_front(bend, "macs"), "macs")["macs"] == 1e6


def test_a_corrupt_best_json_is_named_and_the_winner_rebuilt_from_the_journal(tmp_path):
    """The previous release's finished run with its best.json torn: the report says so and still names the winner
    the journal holds (the best evaluation at the highest budget)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).resolve().parent / "data" / "previous-release" / "complete", run)
    good = json.loads((run / "best.json").read_text())
    (run / "best.json").write_text('{"generator": ')
    assert main(["report", str(run)]) == 0
    text = (run / "report" / "report.md").read_text()
    assert "best.json is unreadable" in text and "rebuilt from the journal" in text
    assert f"Configuration {tuple(good['source']['config_id'])}" in text
