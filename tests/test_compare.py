"""The family-against-baselines statistics: Welch's interval and test checked against scipy's own, and the verdict
sentence follows the interval."""

import pytest
from scipy import stats

from autokd.compare import against_baselines, difference, verdict


def test_difference_matches_scipys_welch_test_and_interval():
    a, b = [0.931, 0.934, 0.929, 0.936], [0.925, 0.928, 0.921]
    d = difference("family", a, "resnet", b)
    ref = stats.ttest_ind([100 * x for x in a], [100 * x for x in b], equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert d.diff == pytest.approx(100 * (sum(a) / 4 - sum(b) / 3))
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (d.ci_low, d.ci_high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    assert d.n_a == 4 and d.n_b == 3


def test_verdict_follows_the_interval():
    beats = difference("family", [0.94, 0.941, 0.939], "resnet", [0.92, 0.921, 0.919])
    assert verdict(beats).startswith("The searched family (94.00%) beats the best hand-designed student (resnet")
    worse = difference("family", [0.915, 0.916, 0.914], "resnet", [0.927, 0.928, 0.926])
    assert "is worse than" in verdict(worse) and "use resnet" in verdict(worse)
    tie = difference("family", [0.92, 0.93, 0.925], "resnet", [0.921, 0.929, 0.926])
    assert "does not beat" in verdict(tie) and "not told apart" in verdict(tie)
    single = difference("family", [0.93], "resnet", [0.92, 0.925])
    assert single.ci_low is None and "no CI" in verdict(single) and "does not beat" in verdict(single)


def test_the_verdict_is_against_the_best_baseline_by_mean():
    out = against_baselines([0.93, 0.931, 0.929], {"cnn": [0.90, 0.901, 0.899], "resnet": [0.935, 0.936, 0.934]})
    assert out["best_baseline"] == "resnet" and set(out["differences"]) == {"cnn", "resnet"}
    assert "is worse than the best hand-designed student (resnet" in out["verdict"]
    assert out["differences"]["cnn"]["ci_low"] > 0


def test_paired_kd_difference_matches_a_paired_t_test_and_its_verdict_follows_the_ci():
    from scipy import stats

    from autokd.compare import kd_ablation, paired_difference

    with_kd, without = [0.931, 0.929, 0.935, 0.930], [0.927, 0.926, 0.930, 0.928]
    d = paired_difference("family", with_kd, without)
    t = stats.ttest_rel([100 * a for a in with_kd], [100 * b for b in without])
    assert d.p_value == pytest.approx(t.pvalue) and d.ci_low > 0 and d.diff == pytest.approx(0.35)
    ab = kd_ablation({"family": (with_kd, without), "resnet": (without, with_kd)})
    assert ab["pooled"]["n"] == 8 and ab["pooled"]["diff"] == pytest.approx(0.0)
    assert ab["verdict"].startswith("Distillation did not measurably pay")
    assert kd_ablation({"family": (with_kd, without)})["verdict"].startswith("Distillation paid")
    assert kd_ablation({"family": (without, with_kd)})["verdict"].startswith("Distillation cost accuracy")
    assert "no CI" in kd_ablation({"family": ([0.9], [0.8])})["verdict"]
    with pytest.raises(ValueError):
        paired_difference("x", [0.9], [0.8, 0.7])
