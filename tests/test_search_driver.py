"""BOHB driver bookkeeping with a cheap objective: brackets, promotion, no lost results, the model sees all."""

import random

import pytest

from autokd.config import SearchSettings
from autokd.errors import UserError
from autokd.hpo.brackets import BracketDriver
from autokd.hpo.hyperband import plan_bracket, promote, schedule_summary
from autokd.hpo.trial import TrialResult
from autokd.space.configspace import load_space
from autokd.rungs import RUNG_TRAININGS

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
    d = BracketDriver(load_space("nago"), BUDGETS, 2, 3, seed=0)
    order = run(d)
    assert [(s.budget) for s in order].count(30) == 4 and len(order) == 14
    assert len(d.results) == 14 and d.told == 14
    b0 = d.brackets[0]
    acc30 = {cid: d.results[(cid, 30.0)].val_acc for cid in b0.rungs[0]}
    assert set(b0.rungs[1]) == set(sorted(acc30, key=acc30.get, reverse=True)[:2])
    acc60 = {cid: d.results[(cid, 60.0)].val_acc for cid in b0.rungs[1]}
    assert b0.rungs[2] == [max(acc60, key=acc60.get)]


def test_parallel_out_of_order_results_lose_nothing_and_open_new_brackets():
    d = BracketDriver(load_space("nago"), BUDGETS, 2, 6, seed=1)
    order = run(d, max_parallel=5)
    assert len(order) == schedule_summary(BUDGETS, 2, 6)["evaluations"] == 28
    assert len({(s.config_id, s.budget) for s in order}) == 28  # nothing ran twice
    assert d.told == 28 and sum(len(v) for v in d.model.losses.values()) == 28


def test_same_seed_same_proposals_and_the_model_starts_proposing():
    a = run(BracketDriver(load_space("nago"), BUDGETS, 2, 12, seed=3))
    b = run(BracketDriver(load_space("nago"), BUDGETS, 2, 12, seed=3))
    c = run(BracketDriver(load_space("nago"), BUDGETS, 2, 12, seed=4))
    assert [s.theta for s in a] == [s.theta for s in b]
    assert [s.theta for s in a] != [s.theta for s in c]
    # hpbandster fits its KDE once a budget has > 2·(dims+1) = 22 results: 7 cycles give 28 at 30 epochs.
    d = BracketDriver(load_space("nago"), BUDGETS, 2, 24, seed=3)
    run(d)
    picks = [d.proposal_info[cid].get("model_based_pick") for cid in sorted(d.proposal_info)]
    assert not any(picks[:20]) and any(picks)


def test_failures_are_told_as_infinite_loss_and_never_promoted():
    def flaky(spec):
        if spec.config_id[2] % 2 == 0:
            return TrialResult(spec.trial_id, spec.config_id, spec.budget, "failed", error="boom")
        return objective(spec)

    d = BracketDriver(load_space("nago"), BUDGETS, 2, 3, seed=0)
    run(d, flaky)
    b0 = d.brackets[0]
    assert all(cid[2] % 2 == 1 for cid in b0.rungs[1])
    assert any(l == float("inf") for l in d.model.losses[30.0])


def broken(spec):
    return TrialResult(spec.trial_id, spec.config_id, spec.budget, "failed", error="boom")


def test_all_failed_bracket_ends_without_refill():
    d = BracketDriver(load_space("nago"), BUDGETS, 2, 1, seed=0, refill_failed=False)
    order = run(d, broken)
    assert len(order) == 4 and d.done()


def test_failed_slots_are_refilled_with_new_proposals_at_the_rung_budget():
    """As hpbandster's get_next_run: a rung left short by failures samples new configurations at its budget,
    numbered (bracket, stage, index)."""
    d = BracketDriver(load_space("nago"), BUDGETS, 2, 1, seed=0)
    order = run(d, broken)
    assert d.done() and [(s.config_id, s.budget) for s in order][4:] == [((0, 1, 0), 60.0), ((0, 1, 1), 60.0),
                                                                         ((0, 2, 0), 120.0)]

    def half(spec):  # (0,0,0), (0,0,1) fail at 30: the two survivors fill rung 1, nothing to refill
        return broken(spec) if spec.config_id in ((0, 0, 0), (0, 0, 1)) else objective(spec)

    d = BracketDriver(load_space("nago"), BUDGETS, 2, 1, seed=0)
    order = run(d, half)
    assert [s.config_id for s in order if s.budget == 60.0] == [(0, 0, 2), (0, 0, 3)]

    def three(spec):  # three of four fail at 30: one survivor, one refill at 60
        return objective(spec) if spec.config_id == (0, 0, 3) else broken(spec)

    d = BracketDriver(load_space("nago"), BUDGETS, 2, 1, seed=0)
    order = run(d, three)
    assert sorted(s.config_id for s in order if s.budget == 60.0) == [(0, 0, 3), (0, 1, 0)]
    assert len({d.arch_seed(c) for c in d.configs}) == len(d.configs)  # refills get their own architectures


def test_hpbandster_rounding_gives_its_bracket_sizes():
    assert [plan_bracket(i, BUDGETS, 2, "hpbandster").sizes for i in range(3)] == [[4, 2, 1], [2, 1], [3]]
    assert schedule_summary(BUDGETS, 2, 63, "hpbandster")["evaluations"] == 273
    assert schedule_summary(BUDGETS, 2, 63)["evaluations"] == 294


def test_random_search_proposes_without_a_model_in_the_same_brackets():
    d = BracketDriver(load_space("nago"), BUDGETS, 2, 24, seed=3, optimizer="random")
    order = run(d)
    assert len(order) == schedule_summary(BUDGETS, 2, 24)["evaluations"] and d.model is None
    assert d.model_based_proposals()[0] == 0
    again = run(BracketDriver(load_space("nago"), BUDGETS, 2, 24, seed=3, optimizer="random"))
    assert [s.theta for s in order] == [s.theta for s in again]


def test_replay_never_reruns_an_evaluation_whatever_trial_id_carried_it():
    """A journal from repeated kills: the same evaluation started under several trial ids, finished under the
    last one. Replay runs it zero more times; an evaluation started twice and never finished runs once."""
    d = BracketDriver(load_space("nago"), BUDGETS, 2, 1, seed=0)
    a, b = d.ask(), d.ask()
    theta = lambda s: {"theta": s.theta, "temperature": s.temperature, "alpha": s.alpha, "seed": s.seed}  # noqa
    events = []
    for tid, spec in ((0, a), (1, b), (2, a), (3, b), (4, a)):  # a: started 3×, b: started 2×
        events.append({"event": "started", "trial_id": tid, "config_id": list(spec.config_id),
                       "budget": spec.budget, **theta(spec)})
    events.append({"event": "finished", "trial_id": 4, "config_id": list(a.config_id), "budget": a.budget,
                   "val_acc": 0.5, "loss": 0.5, **theta(a)})
    fresh = BracketDriver(load_space("nago"), BUDGETS, 2, 1, seed=0)
    assert fresh.replay(events) == 1
    assert [(s.config_id, s.budget) for s in fresh.requeue] == [(b.config_id, b.budget)]
    order = run(fresh)
    assert (a.config_id, a.budget) not in [(s.config_id, s.budget) for s in order]
    assert [(s.config_id, s.budget) for s in order].count((b.config_id, b.budget)) == 1


def test_promote_ignores_failures_and_breaks_ties_by_id():
    assert promote([((0, 0, 2), 0.5), ((0, 0, 1), 0.5), ((0, 0, 0), None)], 2) == [(0, 0, 1), (0, 0, 2)]


def test_nokd_space_proposes_alpha_zero():
    d = BracketDriver(load_space("nago-nokd"), BUDGETS, 2, 1, seed=0)
    spec = d.ask()
    assert spec.alpha == 0.0


def _first_model_pick(driver, give_up_after=None):
    """Index (in proposal order) of the driver's first model-based configuration, driving it only until then, or
    None once it has proposed `give_up_after` configurations (or finished) without one."""
    while not driver.done():
        spec = driver.ask()
        assert spec is not None, "stalled"
        driver.tell(objective(spec))
        picks = [driver.proposal_info[cid].get("model_based_pick") for cid in sorted(driver.proposal_info)]
        if True in picks:
            return picks.index(True)
        if give_up_after is not None and len(picks) >= give_up_after:
            return None
    return None


def test_constants_are_left_out_of_the_model_so_it_engages_sooner_and_never_varies_them():
    space = load_space("nago").with_max_nodes(4)
    dead = space.dead_dimensions()
    assert set(dead) == {"G1_K", "G3_K"}
    full = BracketDriver(space, BUDGETS, 2, 24, seed=3)
    fixed = BracketDriver(space.fixing(dead), BUDGETS, 2, 24, seed=3)
    assert len(list(fixed.model_space.values())) == len(list(full.model_space.values())) - 2
    first_fixed = _first_model_pick(fixed)
    assert first_fixed is not None
    # the full space must not pick as early: driven only as far as the fixed one's first pick (the rest would not
    # change the verdict, and the whole 24 iterations of both cost ≈ 12 s of KDE fits)
    first_full = _first_model_pick(full, give_up_after=first_fixed + 1)
    assert first_full is None or first_fixed < first_full
    assert {(c["G1_K"], c["G3_K"]) for c in fixed.configs.values()} == {(2.0, 2.0)}


def _journal_run(driver, max_parallel, stop_after=None, seed=0):
    """Like run(), recording started/finished events as the search loop journals them; stops after `stop_after`
    results (a kill), leaving what was in flight started without a result."""
    events, in_flight, rng, told = [], [], random.Random(seed), 0
    ev = lambda kind, s, **kw: {"event": kind, "trial_id": s.trial_id, "config_id": list(s.config_id),  # noqa
                                "budget": s.budget, "theta": s.theta, "temperature": s.temperature,
                                "alpha": s.alpha, "seed": s.seed, **kw}
    while not driver.done() and (stop_after is None or told < stop_after):
        while len(in_flight) < max_parallel:
            spec = driver.ask()
            if spec is None:
                break
            in_flight.append(spec)
            events.append(ev("started", spec))
        spec = in_flight.pop(rng.randrange(len(in_flight)))
        r = objective(spec)
        driver.tell(r)
        events.append(ev("finished", spec, val_acc=r.val_acc, loss=r.loss))
        told += 1
    return events


def test_async_promotion_moves_a_configuration_up_before_its_rung_is_complete_with_the_same_plan():
    planned = schedule_summary(BUDGETS, 2, 6)["evaluations"]
    d = BracketDriver(load_space("nago"), BUDGETS, 2, 6, seed=1, promotion="async")
    events = _journal_run(d, max_parallel=3)
    done = [(tuple(e["config_id"]), e["budget"]) for e in events if e["event"] == "finished"]
    assert len(done) == len(set(done)) == planned  # the same evaluations as sync, none twice
    b0 = d.brackets[0]
    first_up = next(i for i, e in enumerate(events) if e["event"] == "started" and e["budget"] == 60.0
                    and tuple(e["config_id"])[0] == 0)
    rung0_done = max(i for i, e in enumerate(events) if e["event"] == "finished" and e["budget"] == 30.0
                     and tuple(e["config_id"]) in b0.rungs[0])
    assert first_up < rung0_done  # promoted while rung 0 still ran: nobody waited at the barrier
    assert all(len(b.rungs[r]) == b.sizes[r] for b in d.brackets for r in range(len(b.sizes)))


def test_async_replay_keeps_the_early_promotions_and_never_reruns_an_evaluation():
    planned = schedule_summary(BUDGETS, 2, 6)["evaluations"]
    for stop in (3, 7, 12, 20):
        first = BracketDriver(load_space("nago"), BUDGETS, 2, 6, seed=2, promotion="async")
        events = _journal_run(first, max_parallel=3, stop_after=stop)
        fresh = BracketDriver(load_space("nago"), BUDGETS, 2, 6, seed=2, promotion="async")
        fresh.replay(events)
        # what was started at a higher rung before the kill is still a member of that rung after it
        for e in events:
            if e["event"] == "started" and tuple(e["config_id"])[1] == 0 and e["budget"] > 30.0:
                b = fresh.brackets[e["config_id"][0]]
                assert tuple(e["config_id"]) in b.rungs[b.budgets.index(e["budget"])]
        rest = _journal_run(fresh, max_parallel=3, seed=stop)
        done = [(tuple(e["config_id"]), e["budget"]) for e in events + rest if e["event"] == "finished"]
        assert len(done) == len(set(done)) == planned, stop


def test_continued_rungs_name_the_trunk_they_continue_and_the_plan_counts_only_new_epochs():
    d = BracketDriver(load_space("nago"), BUDGETS, 2, 1, seed=0, rungs=RUNG_TRAININGS["continue"])
    order = run(d)
    for s in order:
        r = d.brackets[0].budgets.index(s.budget)
        assert s.continue_from == (BUDGETS[r - 1] if r else None) and s.keep_trunk == (r < 2)
    scratch = BracketDriver(load_space("nago"), BUDGETS, 2, 1, seed=0)
    assert all(s.continue_from is None and not s.keep_trunk for s in run(scratch))
    # one bracket of 9 @0.5 → 3 @1.5 → 1 @4.5 epochs: 13.5 from scratch; trunks of 80% continued: 11.1
    assert schedule_summary([0.5, 1.5, 4.5], 3, 1)["epochs"] == pytest.approx(13.5)
    assert schedule_summary([0.5, 1.5, 4.5], 3, 1, trunk_share=0.8)["epochs"] == pytest.approx(11.1)


def test_a_cost_objective_promotes_by_each_brackets_tradeoff_and_accuracy_alone_is_unchanged():
    """ParEGO per bracket: the same results, ranked by error alone, put the accurate-and-costly configuration
    first; bracket 1 (λ ≈ 0.12, mostly cost) puts the cheap one first; `accuracy` promotes exactly as before."""
    from types import SimpleNamespace

    from autokd.hpo.objective import Objective

    def costly_is_better(spec):  # accuracy grows with cost: the trade-off a front is made of
        k = spec.config_id[2]
        return TrialResult(spec.trial_id, spec.config_id, spec.budget, "ok", 0.5 + 0.1 * k, 0.5 - 0.1 * k,
                           macs=10 ** (5 + k))

    mo = Objective("accuracy+macs", (1e5, 1e9))
    assert [round(mo.weight(b), 3) for b in range(4)] == [0.5, 0.118, 0.736, 0.354]
    plain, multi = (BracketDriver(load_space("nago"), BUDGETS, 2, 2, seed=0, objective=o)
                    for o in (Objective(), mo))
    run(plain, costly_is_better)
    run(multi, costly_is_better)
    assert plain.brackets[1].rungs[1] == [max(plain.brackets[1].rungs[0], key=lambda c: c[2])]
    assert multi.brackets[1].rungs[1] == [min(multi.brackets[1].rungs[0], key=lambda c: c[2])]
    r = costly_is_better(SimpleNamespace(trial_id=0, config_id=(0, 0, 1), budget=30.0))
    assert mo.score(r, 0) == -mo.loss(r, 0) and Objective().score(r, 0) == r.val_acc
    worse = TrialResult(0, (0, 0, 1), 30.0, "ok", r.val_acc - 0.1, r.loss + 0.1, macs=r.macs)
    assert mo.loss(worse, 0) > mo.loss(r, 0)  # error and cost both count
    assert mo.loss(TrialResult(0, (0, 0, 1), 30.0, "failed", error="x"), 0) is None


def test_tpe_proposes_from_its_model_deterministically_and_better_than_chance():
    """The proposer seam's third implementation: Optuna's TPE per budget. Same seed, same proposals; it starts
    modelling once a budget has d + 1 results; its proposals concentrate where the loss is low."""
    from autokd.hpo.proposers import TPEProposer

    def smooth(spec):  # the loss falls with G1_P: a model should learn to propose large G1_P
        acc = 0.2 + 0.7 * spec.theta["G1_P"]
        return TrialResult(spec.trial_id, spec.config_id, spec.budget, "ok", acc, 1 - acc)

    runs = [BracketDriver(load_space("nago"), BUDGETS, 2, 16, seed=s, optimizer="tpe") for s in (5, 5, 6)]
    orders = [run(d, smooth) for d in runs]
    assert [s.theta for s in orders[0]] == [s.theta for s in orders[1]] != [s.theta for s in orders[2]]
    d = runs[0]
    assert isinstance(d.proposer, TPEProposer) and d.model is None
    info = [d.proposal_info[cid] for cid in sorted(d.proposal_info)]
    model_picks = [cid for cid in sorted(d.proposal_info) if d.proposal_info[cid].get("model_based_pick")]
    assert not any(i.get("model_based_pick") for i in info[:d.proposer.min_points]) and len(model_picks) >= 10
    g1p = lambda cids: sum(d.configs[c]["G1_P"] for c in cids) / len(cids)  # noqa: E731
    uniform = [c for c in sorted(d.proposal_info) if not d.proposal_info[c].get("model_based_pick")]
    assert g1p(model_picks) > g1p(uniform) + 0.1

    # a proposal depends on the seed, its index and the results only (what a resume relies on)
    a, b = (TPEProposer(model_space=d.model_space, seed=1, min_points_in_model=None, random_fraction=0.0)
            for _ in range(2))
    for cid in sorted(d.configs)[:20]:
        cfg = {k: v for k, v in d.configs[cid].items() if k not in d.constants}
        for p in (a, b):
            p.observe(cfg, 30.0, 1 - cfg["G1_P"])
    a.propose(30.0, 0)  # an extra proposal on one side changes nothing for the next
    assert a.propose(30.0, 7) == b.propose(30.0, 7)


@pytest.mark.parametrize("optimizer", ["bohb", "random", "tpe"])
def test_a_searched_kd_loss_reaches_every_trial_and_survives_a_replay(optimizer):
    from autokd.space.configspace import kd_loss_params

    owners = kd_loss_params()

    def by_loss(spec):  # dkd students do best: a model should notice
        acc = 0.4 + (0.3 if spec.kd_loss == "dkd" else 0.0) + spec.budget / 400
        return TrialResult(spec.trial_id, spec.config_id, spec.budget, "ok", acc, 1 - acc)

    d = BracketDriver(load_space("nago-small-losses"), BUDGETS, 2, 6, seed=2, optimizer=optimizer)
    order = run(d, by_loss)
    assert {s.kd_loss for s in order} == {"hinton", "dkd", "dist"}
    for s in order:
        assert all(owners[k] == s.kd_loss for k in s.kd_params)  # only the chosen loss's own parameters
        assert s.to_json()["kd_loss"] == s.kd_loss
    events = []
    for s in order:  # the journal as the loop writes it
        events.append({"event": "started", "time": 0.0, **s.to_json()})
        r = by_loss(s)
        events.append({"event": "finished", "time": 0.0, **r.to_json()})
    again = BracketDriver(load_space("nago-small-losses"), BUDGETS, 2, 6, seed=2, optimizer=optimizer)
    again.replay(events)
    again.settle()
    assert again.configs == d.configs and again.done() and again.ask() is None  # nothing runs twice
    # best.json's kd section carries the chosen loss and its parameters, and reads back as a generator file
    from autokd.hpo.rundir import _searched_loss
    from autokd.space.configspace import theta_of
    from autokd.space.genfile import generator_from_json

    cid = next(c for c, cfg in d.configs.items() if cfg["loss"] != "hinton")
    kd = {"temperature": d.configs[cid]["temperature"], "alpha": d.configs[cid]["alpha"],
          **_searched_loss(d.configs[cid])}
    gen = generator_from_json({"space": "nago-small-losses", "generator": theta_of(d.configs[cid]), "kd": kd})
    assert gen.kd["loss"] == d.configs[cid]["loss"] and set(gen.kd) - {"temperature", "alpha", "loss"} == {
        k for k in d.configs[cid] if owners.get(k) == d.configs[cid]["loss"]}


def test_a_cost_objective_gets_its_scale_from_the_space_and_a_latency_limit_is_checked_first(monkeypatch):
    import autokd.hpo.plan
    from autokd.config import apply_preset
    from autokd.hpo.plan import check_cost_limits

    monkeypatch.setattr(autokd.hpo.plan, "LIMIT_PROBES", 30)  # a smaller probe of the space: the same logic

    def settings(**kw):
        return apply_preset("smoke", {"dataset": "synthetic:1x8x8:3:200", "no_kd": True, "teacher": None, **kw})

    assert check_cost_limits(settings(), (1, 8, 8), 3, 60_000) is None  # accuracy alone: nothing to probe
    lo, hi = check_cost_limits(settings(objective="accuracy+macs"), (1, 8, 8), 3, 60_000)
    assert 0 < lo < hi
    llo, lhi = check_cost_limits(settings(objective="accuracy+latency"), (1, 8, 8), 3, 60_000)
    assert 0 < llo < lhi  # measured ms at batch 1, on the fewest- and the most-MACs architectures
    with pytest.raises(UserError, match="--latency-limit"):
        check_cost_limits(settings(latency_limit=1e-9), (1, 8, 8), 3, 60_000)


def test_a_prescreen_trains_the_best_scored_of_its_pool_and_without_one_nothing_changes():
    from autokd.space.prescreen import make_prescreen

    plain = BracketDriver(load_space("nago-small"), BUDGETS, 2, 2, seed=5, optimizer="random")
    run(plain)
    # a pool of one is the plain search, proposal for proposal
    same = BracketDriver(load_space("nago-small"), BUDGETS, 2, 2, seed=5, optimizer="random",
                         prescreen=lambda c, s: 0.0, prescreen_pool=1)
    run(same)
    assert same.configs == plain.configs

    params = make_prescreen("params", (1, 28, 28), 10, 100_000)
    screened = BracketDriver(load_space("nago-small"), BUDGETS, 2, 2, seed=5, optimizer="random", prescreen=params,
                             prescreen_pool=6)
    run(screened)
    first = {cid: params(plain.configs[cid], plain.arch_seed(cid)) for cid in plain.configs}
    chosen = {cid: params(cfg, screened.arch_seed(cid)) for cid, cfg in screened.configs.items()}
    assert all(screened.proposal_info[cid]["prescreen_pool"] == 6 for cid in chosen)
    assert all(screened.proposal_info[cid]["prescreen_score"] == chosen[cid] for cid in chosen)
    # (uniform proposals: the first draw is the plain search's) the best of six is never below it, on average above
    assert all(chosen[cid] >= first[cid] for cid in chosen if cid in first)
    assert sum(chosen.values()) / len(chosen) > sum(first.values()) / len(first) + 1000
    assert all(v <= 100_000 for v in chosen.values())
    with pytest.raises(ValueError, match="prescreen"):
        make_prescreen("naswot", (1, 28, 28), 10, 100_000)
