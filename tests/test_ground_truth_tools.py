"""The issue-35 tools that decide budgets without training: the successive-halving replay and the table reader."""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from ground_truth_report import best_of_k, load_table, rho_ci  # noqa: E402
from holdout_test import holm, permutation_p, score  # noqa: E402
from sh_replay import population_ci, population_gains, replay  # noqa: E402


def test_replay_of_a_perfect_fidelity_always_picks_the_best_and_an_inverted_one_never_the_top_three():
    target = np.random.default_rng(3).normal(size=30)
    perfect = replay(np.stack([target, target], 1), target, k=20, eta=3, draws=300)
    inverted = replay(np.stack([-target, -target], 1), target, k=20, eta=3, draws=300)
    assert perfect["top3"] == 1.0 and perfect["mean_target"] > perfect["random_mean_target"]
    assert inverted["top3"] == 0.0 and inverted["mean_target"] < inverted["random_mean_target"]
    assert abs(perfect["random_top3"] - 3 / 20) < 1e-9


def test_replay_promotes_on_the_lower_rung_only():
    """A lowest rung that inverts the target hides the best configurations from a perfect top rung."""
    target = np.arange(30, dtype=float)
    r = replay(np.stack([-target, target], 1), target, k=27, eta=3, draws=200)
    assert r["top3"] == 0.0


def test_a_prescreen_filters_the_pool_before_the_rungs_and_the_population_interval_brackets_the_estimate():
    target = np.random.default_rng(4).normal(size=40)
    noisy = np.stack([target + np.random.default_rng(5).normal(scale=2, size=40)], 1)
    good = replay(noisy, target, k=10, eta=3, draws=400, prescreen=target, pool=30)
    bad = replay(noisy, target, k=10, eta=3, draws=400, prescreen=-target, pool=30)
    control = replay(noisy, target, k=10, eta=3, draws=400, pool=30)  # 10 of the 30 kept at random
    assert good["mean_target"] > control["mean_target"] > bad["mean_target"]
    assert abs(good["random_top3"] - 3 / 30) < 1e-9 and abs(control["random_top3"] - 3 / 30) < 1e-9
    # arms pair element by element: the same resamples and subsets, so an arm against itself differs by exactly 0
    a = population_gains(noisy, target, k=10, eta=3, resamples=20, draws=30, pool=30)
    assert np.array_equal(a, population_gains(noisy, target, k=10, eta=3, resamples=20, draws=30, pool=30))
    ci = population_ci(noisy, target, k=10, eta=3, resamples=30, draws=50)
    assert ci["top3"][0] <= ci["top3"][1] and ci["gain"][0] <= ci["gain"][1]


def test_the_oracles_best_of_k_is_the_mean_at_one_and_climbs_to_the_maximum():
    t = np.arange(10.0)
    assert abs(best_of_k(t, 1, draws=4000) - 4.5) < 0.3
    assert best_of_k(t, 3) < best_of_k(t, 6) < best_of_k(t, 9) <= 9.0
    assert best_of_k(t, 9, draws=4000) > 8.8  # nine of ten miss the 9 one time in ten


def test_table_reader_keeps_finished_rows_and_the_bootstrap_brackets_rho(tmp_path: Path):
    for i, (status, acc) in enumerate([("ok", 0.9), ("ok", 0.91), ("failed", None), ("ok", 0.92)]):
        (tmp_path / f"config-{i:03d}.json").write_text(json.dumps({"config": i, "status": status, "test_acc": acc}))
    assert sorted(load_table(tmp_path)) == [0, 1, 3]
    a = np.arange(12.0)
    r, lo, hi = rho_ci(a, a + np.random.default_rng(0).normal(scale=3, size=12), resamples=500)
    assert lo <= r <= hi and -1 <= lo and hi <= 1


def test_holdout_test_permutation_p_separates_signal_from_noise_and_holm_steps_down():
    rng = np.random.default_rng(1)
    y = rng.normal(size=16)
    assert permutation_p(y + rng.normal(scale=0.3, size=16), y, permutations=999) < 0.01
    assert permutation_p(-y, y, permutations=999) > 0.9
    # Holm: the k-th smallest p must meet 0.05/(m − k + 1); once one fails, every larger p stays, even one ≤ 0.05
    assert holm({"a": 0.01, "b": 0.06, "c": 0.02}) == {"a": True, "c": True, "b": False}
    assert holm({"a": 0.02, "b": 0.03, "c": 0.04}) == {"a": False, "b": False, "c": False}
    # a combination is the sum of ranks: two opposite orders cancel into a tie
    assert np.ptp(score([np.arange(5.0), -np.arange(5.0)])) == 0


def _summary(accs, tau=2.0, alpha=0.5, baseline=None):
    out = {"per_sample": [{"sample": i, "status": "ok", "test_acc": a, "kd": {"temperature": tau, "alpha": alpha}}
                          for i, a in enumerate(accs)]}
    if baseline is not None:
        out["baselines"] = {"resnet": {"student": "resnet", "test_acc_mean": sum(baseline) / len(baseline),
                                       "test_accs": baseline}}
    return out


def test_the_comparison_splits_the_lead_into_architecture_and_distillation_setting_pairing_by_sample():
    from does_search_pay import split_lines

    fam = _summary([0.930, 0.931, 0.929, 0.935], baseline=[0.925, 0.926, 0.924])
    std = _summary([0.928, 0.929, 0.9275], tau=4.0, alpha=0.9)  # samples 0-2 at the baseline's τ/α
    arch, kd = split_lines(fam, std)
    assert "searched family − resnet +0.32 points" in arch and "3 vs 3 samples" in arch
    # paired on samples 0-2 only: +0.20, +0.20, +0.15 → +0.18; sample 3 (no twin) is left out
    assert "+0.18 points" in kd and "3 pairs" in kd and "τ 2.00, α 0.50" in kd
    assert split_lines(fam, None) == []


def test_the_comparisons_tests_are_holm_corrected_together():
    from autokd.compare import against_baselines, difference
    from does_search_pay import holm_line, split
    from rank_report import holm

    fam = _summary([0.930, 0.931, 0.929, 0.935], baseline=[0.925, 0.926, 0.924])
    fam["comparison"] = against_baselines([0.930, 0.931, 0.929, 0.935], {"resnet": [0.925, 0.926, 0.924]})
    std = _summary([0.928, 0.929, 0.9275], tau=4.0, alpha=0.9)
    r = difference("family", [0.930, 0.931, 0.929, 0.935], "random", [0.929, 0.931, 0.928])
    arch, kd, _ = split(fam, std)
    raw = [fam["comparison"]["differences"]["resnet"]["p_value"], r.p_value, arch.p_value, kd.p_value]
    line = holm_line(fam, r, std)
    assert line.startswith("- Holm over the 4 tests")
    for p in holm(raw):  # every adjusted p is printed, each ≥ its raw p (so a raw p < 0.05 can fail after Holm)
        assert f"{p:.3g}" in line
    assert min(holm(raw)) >= min(raw)
    assert "Holm over the 2 tests" in holm_line(fam, r, None)  # without the standard-KD retrain: no split
