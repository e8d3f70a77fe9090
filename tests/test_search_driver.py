"""BOHB driver bookkeeping with a cheap objective: brackets, promotion, no lost results, the model sees all."""

import random

import pytest

from autokd.config import SearchSettings
from autokd.errors import UserError
from autokd.search.bohb import BOHBDriver
from autokd.search.hyperband import plan_bracket, promote, schedule_summary
from autokd.search.trial import TrialResult
from autokd.space.configspace import load_space

BUDGETS = [30.0, 60.0, 120.0]


def objective(spec):
    """Accuracy grows with budget, config-dependent, deterministic."""
    base = random.Random(hash((spec.config_id, round(spec.theta["G1_P"], 6)))).random() * 0.5
    return TrialResult(spec.trial_id, spec.config_id, spec.budget, "ok", base + spec.budget / 400,
                       1 - base - spec.budget / 400)


def run(driver, fn=objective, max_parallel=1):
    """Drive ask/tell with up to max_parallel trials in flight, finishing them out of order."""
    order, in_flight = [], []
    rng = random.Random(0)
    while not driver.done():
        while len(in_flight) < max_parallel:
            spec = driver.ask()
            if spec is None:
                break
            in_flight.append(spec)
        assert in_flight, "stalled"
        spec = in_flight.pop(rng.randrange(len(in_flight)))
        driver.tell(fn(spec))
        order.append(spec)
    return order


@pytest.mark.parametrize("index,s,sizes,budgets", [
    (0, 2, [4, 2, 1], [30, 60, 120]), (1, 1, [3, 1], [60, 120]), (2, 0, [3], [120]), (3, 2, [4, 2, 1], [30, 60, 120]),
])
def test_bracket_plan_matches_reference(index, s, sizes, budgets):
    b = plan_bracket(index, BUDGETS, 2)
    assert (b.s, b.sizes, b.budgets) == (s, sizes, budgets)


def test_budgets_from_settings():
    assert SearchSettings().budgets() == BUDGETS
    assert SearchSettings(min_budget=1, max_budget=27, eta=3).budgets() == [1, 3, 9, 27]
    with pytest.raises(UserError, match="out of order"):
        SearchSettings(min_budget=120, max_budget=30).check()
    with pytest.raises(UserError, match="eta"):
        SearchSettings(eta=1).check()


def test_one_cycle_runs_exactly_the_planned_evaluations_and_promotes_the_best():
    d = BOHBDriver(load_space("nago"), BUDGETS, 2, 3, seed=0)
    order = run(d)
    assert [(s.budget) for s in order].count(30) == 4 and len(order) == 14
    assert len(d.results) == 14 and d.told == 14
    b0 = d.brackets[0]
    acc30 = {cid: d.results[(cid, 30.0)].val_acc for cid in b0.rungs[0]}
    assert set(b0.rungs[1]) == set(sorted(acc30, key=acc30.get, reverse=True)[:2])
    acc60 = {cid: d.results[(cid, 60.0)].val_acc for cid in b0.rungs[1]}
    assert b0.rungs[2] == [max(acc60, key=acc60.get)]


def test_parallel_out_of_order_results_lose_nothing_and_open_new_brackets():
    d = BOHBDriver(load_space("nago"), BUDGETS, 2, 6, seed=1)
    order = run(d, max_parallel=5)
    assert len(order) == schedule_summary(BUDGETS, 2, 6)["evaluations"] == 28
    assert len({(s.config_id, s.budget) for s in order}) == 28  # nothing ran twice
    assert d.told == 28 and sum(len(v) for v in d.model.losses.values()) == 28


def test_same_seed_same_proposals_and_the_model_starts_proposing():
    a = run(BOHBDriver(load_space("nago"), BUDGETS, 2, 12, seed=3))
    b = run(BOHBDriver(load_space("nago"), BUDGETS, 2, 12, seed=3))
    c = run(BOHBDriver(load_space("nago"), BUDGETS, 2, 12, seed=4))
    assert [s.theta for s in a] == [s.theta for s in b]
    assert [s.theta for s in a] != [s.theta for s in c]
    # hpbandster fits its KDE once a budget has > 2·(dims+1) = 22 results: 7 cycles give 28 at 30 epochs.
    d = BOHBDriver(load_space("nago"), BUDGETS, 2, 24, seed=3)
    run(d)
    picks = [d.proposal_info[cid].get("model_based_pick") for cid in sorted(d.proposal_info)]
    assert not any(picks[:20]) and any(picks)


def test_failures_are_told_as_infinite_loss_and_never_promoted():
    def flaky(spec):
        if spec.config_id[2] % 2 == 0:
            return TrialResult(spec.trial_id, spec.config_id, spec.budget, "failed", error="boom")
        return objective(spec)

    d = BOHBDriver(load_space("nago"), BUDGETS, 2, 3, seed=0)
    run(d, flaky)
    b0 = d.brackets[0]
    assert all(cid[2] % 2 == 1 for cid in b0.rungs[1])
    assert any(l == float("inf") for l in d.model.losses[30.0])


def test_all_failed_bracket_ends():
    def broken(spec):
        return TrialResult(spec.trial_id, spec.config_id, spec.budget, "failed", error="boom")

    d = BOHBDriver(load_space("nago"), BUDGETS, 2, 1, seed=0)
    order = run(d, broken)
    assert len(order) == 4 and d.done()


def test_promote_ignores_failures_and_breaks_ties_by_id():
    assert promote([((0, 0, 2), 0.5), ((0, 0, 1), 0.5), ((0, 0, 0), None)], 2) == [(0, 0, 1), (0, 0, 2)]


def test_nokd_space_proposes_alpha_zero():
    d = BOHBDriver(load_space("nago-nokd"), BUDGETS, 2, 1, seed=0)
    spec = d.ask()
    assert spec.alpha == 0.0
