"""Every search diagnoses its own budgets from its journal (autokd.report.diagnosis): a rung at chance, a rung whose
ranking does not carry to the next, and what to change."""

import json

import numpy as np

from autokd.cli import main
from autokd.report.diagnosis import chance_bar, closing_lines, diagnose, diagnosis_markdown


def events(rungs: dict[float, dict[int, float]]) -> list[dict]:
    return [{"event": "finished", "budget": b, "config_id": [0, 0, c], "val_acc": acc}
            for b, accs in rungs.items() for c, acc in accs.items()]


def test_chance_bar_is_twice_chance_for_many_classes_and_reachable_for_few():
    assert chance_bar(0.1) == 0.2 and chance_bar(0.01) == 0.02
    assert chance_bar(0.5) < 0.6 and chance_bar(1 / 3) < 0.45


def test_a_lowest_rung_at_chance_is_named_with_the_budget_to_raise_it_to():
    rng = np.random.default_rng(0)
    low = {c: 0.1 + 0.09 * rng.random() for c in range(27)}  # 10 classes: all below 20%
    low[3] = 0.42
    mid = {c: 0.5 + 0.01 * c for c in range(9)}
    top = {c: 0.7 + 0.01 * c for c in range(3)}
    d = diagnose(events({0.2: low, 0.6: mid, 1.8: top}), num_classes=10)
    assert not d.ok and d.rungs[0].at_chance == 26 and d.rungs[0].is_at_chance
    assert "rung 0.2 epochs: 26 of 27 evaluations at chance" in d.problems[0]
    assert "raise --min-budget to 0.6" in d.problems[0]
    assert closing_lines(d)[0].startswith("budgets: rung 0.2 epochs")
    assert "Budget diagnosis" in diagnosis_markdown(d)[0]


def test_a_rung_that_does_not_rank_the_next_is_named_and_a_working_ladder_is_said_to_hold():
    rng = np.random.default_rng(1)
    a = {c: 0.5 + 0.3 * rng.random() for c in range(30)}
    noisy = {c: 0.5 + 0.3 * rng.random() for c in range(30)}  # independent of a
    d = diagnose(events({1.0: a, 3.0: noisy}), num_classes=10)
    assert d.agreements[0].verdict == "does not predict"
    assert any("rung 1 epoch does not predict rung 3 epochs" in p for p in d.problems)
    good = {c: a[c] + 0.1 + 0.01 * rng.random() for c in range(30)}
    ok = diagnose(events({1.0: a, 3.0: good}), num_classes=10)
    assert ok.ok and ok.agreements[0].verdict == "predicts"
    assert closing_lines(ok) == ["budgets: no rung at chance; every rung predicted the next"]
    few = diagnose(events({1.0: {0: 0.5, 1: 0.6}, 3.0: {0: 0.7, 1: 0.8}}), num_classes=10)
    assert few.agreements[0].verdict == "undecided" and few.ok


def test_a_search_made_to_fail_says_its_lowest_rung_is_at_chance_and_the_report_carries_it(tmp_path, capsys):
    """A real search whose lowest rung is one SGD step: its closing lines and report.md name the rung."""
    run = tmp_path / "run"
    assert main(["search", "--dataset", "synthetic:1x8x8:10:400", "--no-kd", "--preset", "smoke", "--min-budget",
                 "0.01", "--max-budget", "0.04", "--iterations", "1", "--run-dir", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "budgets: rung 0.01 epochs:" in out and "at chance" in out
    assert main(["report", str(run)]) == 0
    report = (run / "report" / "report.md").read_text()
    assert "## Budget diagnosis" in report and "rung 0.01 epochs:" in report
    assert json.loads((run / "run.json").read_text())["num_classes"] == 10


def test_dry_run_probes_the_lowest_rung_and_warns_when_it_is_at_chance(tmp_path, capsys):
    from autokd.hpo.rung_probe import RungProbe

    assert RungProbe(0.2, [0.148, 0.356], 0.1, 1.0).warning().startswith("warning: the lowest rung (0.2 epochs)")
    assert RungProbe(0.2, [0.25, 0.356], 0.1, 1.0).warning() is None
    base = ["search", "--dataset", "synthetic:1x8x8:10:400", "--no-kd", "--preset", "smoke", "--dry-run",
            "--run-dir", str(tmp_path / "run")]
    assert main([*base, "--min-budget", "0.01", "--max-budget", "0.04"]) == 0
    assert "warning: the lowest rung (0.01 epochs) looks at chance" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # a dry run writes nothing
