"""The search driver: our Hyperband bookkeeping with proposals from a proposer (autokd.hpo.proposers: hpbandster's
BOHB config generator, its KDE model, driven directly with ask/tell as Ray Tune's TuneBOHB does; uniform random
proposals in the same brackets, the baseline; or Optuna's TPE per budget).

Several brackets run at once: when every rung of the open brackets waits for results, a new bracket starts, so
workers never idle while a rung completes. A configuration keeps its architecture seed across budgets; every
(configuration, budget) trains from scratch with its own schedule.

Configuration ids are hpbandster's (bracket, stage, index): stage 0 for the bracket's first rung, stage r for a
configuration proposed to fill rung r when failures left fewer survivors than the rung needs (hpbandster's
`get_next_run` does the same: a short stage gets newly sampled configurations at its budget).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import ConfigSpace as CS
import numpy as np

from autokd.hpo.objective import Objective
from autokd.space.prescreen import Prescreen
from autokd.hpo.proposers import make_proposer
from autokd.hpo.hyperband import Bracket, ConfigId, plan_bracket, promote
from autokd.hpo.trial import TrialResult, TrialSpec
from autokd.space.configspace import SearchSpace, config_to_plain
from autokd.rungs import RUNG_TRAININGS, RungTraining

Key = tuple[ConfigId, float]  # (configuration, budget): one evaluation


# sync: a rung's members are chosen once every result of the rung below is in (successive halving, the paper's).
# async: as in ASHA (Li et al. 2020), a configuration moves up as soon as it is in the top ⌊results so far / η⌋ of
# its rung, while the rung still has room; the rest of the rung is chosen as in sync once the rung below is
# complete. Bracket sizes, evaluations and epochs are those of sync; only who waits for whom changes.
PROMOTIONS = ("sync", "async")


class BracketDriver:
    """Hyperband's brackets of successive halving, whatever proposes their configurations: BOHB's KDE model,
    uniform random draws or Optuna's TPE (autokd.hpo.proposers); promotion sync or async; rungs trained from scratch
    or continued (autokd.rungs). Ask for evaluations, tell their results."""

    def __init__(self, space: SearchSpace, budgets: list[float], eta: int, iterations: int, seed: int,
                 optimizer: str = "bohb", rounding: str = "hyperband", refill_failed: bool = True,
                 min_points_in_model: int | None = None, random_fraction: float = 1 / 3,
                 promotion: str = "sync", rungs: RungTraining = RUNG_TRAININGS["scratch"],
                 objective: Objective = Objective(), prescreen: Prescreen | None = None,
                 prescreen_pool: int = 1) -> None:
        if promotion not in PROMOTIONS:
            raise ValueError(f"promotion must be one of {PROMOTIONS}, got {promotion!r}")
        self.promotion = promotion
        self.objective = objective
        # a training-free pre-screen (autokd.space.prescreen): each new configuration is the best-scored of a pool
        self.prescreen, self.prescreen_pool = prescreen, max(1, int(prescreen_pool))
        self.rungs = rungs  # how a promoted configuration trains at its next rung (autokd.rungs)
        self.space = space
        self.budgets = list(budgets)
        self.eta = eta
        self.iterations = iterations
        self.seed = seed
        self.optimizer = optimizer
        self.rounding = rounding
        self.refill_failed = refill_failed
        self.configspace = space.to_configspace(seed=seed)
        # the model sees only the dimensions that vary: hpbandster counts a Constant as one more dimension of its
        # KDE (it needs d + 1 good and d + 1 bad results at a budget before it proposes anything)
        self.constants = {hp.name: hp.value for hp in self.configspace.values() if isinstance(hp, CS.Constant)}
        self.model_space = CS.ConfigurationSpace(name=self.configspace.name, seed=seed)
        self.model_space.add([hp for hp in self.configspace.values() if hp.name not in self.constants])
        # a searched KD loss's parameters stay conditional on it (ConfigSpace rebuilds them on the model space)
        self.model_space.add([type(c)(self.model_space[c.child.name], self.model_space[c.parent.name], c.value)
                              for c in self.configspace.conditions])
        self.proposer = make_proposer(optimizer, model_space=self.model_space, seed=seed,
                                      min_points_in_model=min_points_in_model, random_fraction=random_fraction)
        self.model: Any = getattr(self.proposer, "model", None)  # hpbandster's generator, for bohb
        self.brackets: list[Bracket] = []
        self.configs: dict[ConfigId, dict[str, Any]] = {}  # θ + temperature + alpha
        self.proposal_info: dict[ConfigId, dict[str, Any]] = {}
        self.results: dict[Key, TrialResult] = {}
        self.in_flight: dict[int, TrialSpec] = {}
        self.requeue: list[TrialSpec] = []
        self.refills: dict[tuple[int, int], list[ConfigId]] = {}  # (bracket, rung) → configurations proposed there
        self.next_trial_id = 0
        self.told = 0  # results the model received

    # ------------------------------------------------------------------ proposals
    def _propose(self, budget: float, draw: int = 0) -> dict[str, Any]:
        # Reseed before every proposal: the sequence depends only on the seed and the results told so far. A
        # pre-screen's pool draws more than one per configuration; its first draw is the proposal without one.
        n = len(self.configs) + draw * 1_000_000_007
        np.random.seed((self.seed * 1_000_003 + n) % 2**32)
        self.configspace.seed((self.seed * 7_919 + n) % 2**32)
        self.model_space.seed((self.seed * 7_919 + n) % 2**32)
        picked = self.proposer.propose(budget, n)
        if picked is None:
            config, info = self.configspace.sample_configuration(), {"model_based_pick": False, "random_search": True}
        else:
            config, info = picked
            config = {**dict(config), **self.constants}
        return {"config": config_to_plain(config), "info": config_to_plain(info or {})}

    def _new_config(self, cid: ConfigId, budget: float) -> None:
        proposal = self._propose(budget)
        if self.prescreen is not None and self.prescreen_pool > 1:
            pool = [proposal] + [self._propose(budget, draw) for draw in range(1, self.prescreen_pool)]
            scores = [self.prescreen(p["config"], self.arch_seed(cid)) for p in pool]
            best = max(range(len(pool)), key=lambda i: (scores[i], -i))  # the earliest of equals
            proposal = pool[best]
            proposal["info"] = {**proposal["info"], "prescreen_pool": len(pool),  # score None: none could be sampled
                                "prescreen_score": scores[best] if math.isfinite(scores[best]) else None}
        self.configs[cid] = proposal["config"]
        self.proposal_info[cid] = proposal["info"]

    def arch_seed(self, config_id: ConfigId) -> int:
        # stage 0 keeps the formula of runs written before refills existed
        return (self.seed * 1_000_003 + config_id[0] * 1_009 + config_id[1] * 100_003 + config_id[2]) % 2**31

    def model_based_proposals(self) -> tuple[int, int]:
        """(proposals the KDE model made, all proposals)."""
        picks = [bool(info.get("model_based_pick")) for info in self.proposal_info.values()]
        return sum(picks), len(picks)

    def _spec(self, config_id: ConfigId, budget: float) -> TrialSpec:
        cfg = self.configs[config_id]
        b = self.brackets[config_id[0]]
        r = b.budgets.index(float(budget))
        continue_from, keep_trunk = self.rungs.links(b.budgets, r,  # the trunk of the rung below, if it ran there
                                                     r > 0 and (config_id, b.budgets[r - 1]) in self.results)
        spec = TrialSpec(self.next_trial_id, config_id, dict(cfg), float(budget), self.arch_seed(config_id),
                         continue_from, keep_trunk)
        self.next_trial_id += 1
        self.in_flight[spec.trial_id] = spec
        return spec

    # ------------------------------------------------------------------ ask / tell
    def _busy(self, config_id: ConfigId, budget: float) -> bool:
        return ((config_id, budget) in self.results
                or any(s.config_id == config_id and s.budget == budget for s in self.in_flight.values())
                or any(s.config_id == config_id and s.budget == budget for s in self.requeue))

    def _rung_ready(self, b: Bracket, r: int) -> bool:
        """Whether rung r's members can be chosen: every member of rung r-1 has its result."""
        prev = b.rungs[r - 1]
        if r - 1 == 0 and len(prev) < b.sizes[0]:
            return False  # rung 0 still being proposed
        return all((cid, b.budgets[r - 1]) in self.results for cid in prev)

    def _promote(self, b: Bracket, r: int) -> None:
        early = b.rungs[r]  # async: configurations promoted before the rung below was complete (kept)
        acc = [(cid, self.objective.score(self.results[(cid, b.budgets[r - 1])], b.index)) for cid in b.rungs[r - 1]
               if cid not in early]
        b.rungs[r] = early + promote(acc, b.sizes[r] - len(early))
        b.promoted[r] = True
        if self.refill_failed:
            # configurations that already filled this rung (known from a replayed journal) come back first
            b.rungs[r] += self.refills.get((b.index, r), [])[:b.sizes[r] - len(b.rungs[r])]

    def _early_promotion(self, b: Bracket) -> TrialSpec | None:
        """async: the highest rung that can take a configuration now takes it (ASHA's rule, within the bracket)."""
        for r in range(len(b.budgets) - 1, 0, -1):
            if b.promoted[r] or len(b.rungs[r]) >= b.sizes[r]:
                continue
            below = [(cid, self.objective.score(self.results[(cid, b.budgets[r - 1])], b.index))
                     for cid in b.rungs[r - 1] if (cid, b.budgets[r - 1]) in self.results]
            for cid in promote(below, min(b.sizes[r], len(below) // self.eta)):
                if cid not in b.rungs[r]:
                    b.rungs[r].append(cid)
                    return self._spec(cid, b.budgets[r])
        return None

    def _next_in_bracket(self, b: Bracket) -> TrialSpec | None:
        if self.promotion == "async":
            spec = self._early_promotion(b)
            if spec is not None:
                return spec
        for r, budget in enumerate(b.budgets):
            if not b.promoted[r]:
                if not self._rung_ready(b, r):
                    return None
                self._promote(b, r)
            for cid in b.rungs[r]:
                if not self._busy(cid, budget):
                    return self._spec(cid, budget)
            short = len(b.rungs[r]) < b.sizes[r]
            if r == 0 and short:
                cid = (b.index, 0, len(b.rungs[0]))
                self._new_config(cid, budget)
                b.rungs[0].append(cid)
                return self._spec(cid, budget)
            if r > 0 and short and self.refill_failed and b.rungs[r - 1]:
                # failures left this rung short: fill it with new proposals at its budget (as hpbandster does)
                cid = (b.index, r, len(self.refills.setdefault((b.index, r), [])))
                self._new_config(cid, budget)
                self.refills[(b.index, r)].append(cid)
                b.rungs[r].append(cid)
                return self._spec(cid, budget)
        return None

    def ask(self) -> TrialSpec | None:
        """The next trial to run, or None while everything left waits on trials in flight (or all is done)."""
        if self.requeue:
            spec = self.requeue.pop(0)
            self.in_flight[spec.trial_id] = spec
            return spec
        for b in self.brackets:
            spec = self._next_in_bracket(b)
            if spec is not None:
                return spec
        if len(self.brackets) < self.iterations:
            self.brackets.append(plan_bracket(len(self.brackets), self.budgets, self.eta, self.rounding))
            return self._next_in_bracket(self.brackets[-1])
        return None

    def tell(self, result: TrialResult, update_model: bool = True) -> None:
        self.in_flight.pop(result.trial_id, None)
        cid = tuple(result.config_id)
        key = (cid, float(result.budget))
        if key in self.results:
            return  # a duplicate (an old journal may hold one): the first result stands
        self.results[key] = result
        cfg = {k: v for k, v in self.configs[cid].items() if k not in self.constants}
        self.proposer.observe(cfg, float(result.budget), self.objective.loss(result, cid[0]), update_model)
        self.told += 1

    def release(self, trial_id: int) -> TrialSpec | None:
        """Forget a trial in flight without a result (it failed for reasons outside the configuration); it is
        offered again by ask() after a resume, never told to the model."""
        return self.in_flight.pop(trial_id, None)

    def retry(self, trial_id: int) -> TrialSpec | None:
        """Offer a trial in flight again, under a new trial id (its machine went away: no result, not the
        configuration's verdict); ask() returns it before anything new."""
        old = self.in_flight.pop(trial_id, None)
        if old is None:
            return None
        spec = replace(old, trial_id=self.next_trial_id)
        self.next_trial_id += 1
        self.requeue.insert(0, spec)
        return spec

    def bracket_complete(self, b: Bracket) -> bool:
        if len(b.rungs[0]) < b.sizes[0]:
            return False
        for r, budget in enumerate(b.budgets):
            if not b.promoted[r]:
                if not self._rung_ready(b, r):
                    return False
                prev = [(c, self.results[(c, b.budgets[r - 1])].val_acc) for c in b.rungs[r - 1]]
                if not promote(prev, 1) and not (self.refill_failed and b.rungs[r - 1]):
                    return True  # every configuration of the rung failed and nothing refills: nothing to promote
                return False  # ask() promotes the next rung
            if len(b.rungs[r]) < b.sizes[r] and self.refill_failed and b.rungs[r - 1]:
                return False  # ask() refills the rung
            if not all((c, budget) in self.results for c in b.rungs[r]):
                return False
        return True

    def settle(self) -> None:
        """Choose every rung whose previous rung has all its results (as ask() would), proposing nothing: after a
        replay, done() is then exact."""
        for b in self.brackets:
            for r in range(1, len(b.budgets)):
                if not b.promoted[r]:
                    if not self._rung_ready(b, r):
                        break
                    self._promote(b, r)

    def done(self) -> bool:
        return (len(self.brackets) >= self.iterations and not self.in_flight and not self.requeue
                and all(self.bracket_complete(b) for b in self.brackets))

    # ------------------------------------------------------------------ resume
    def _register(self, e: dict[str, Any]) -> None:
        """A configuration from a journal's `started` event, placed in its bracket as when it was proposed."""
        cid: ConfigId = tuple(e["config_id"])  # type: ignore[assignment]
        b_index, stage = cid[0], cid[1]
        while len(self.brackets) <= b_index:
            self.brackets.append(plan_bracket(len(self.brackets), self.budgets, self.eta, self.rounding))
        if cid in self.configs:
            return
        kd_names = {p.name for p in self.space.kd}  # nago-nokd has no temperature
        self.configs[cid] = {**e["theta"], **{k: e[k] for k in ("temperature", "alpha") if k in kd_names}}
        if e.get("kd_loss") is not None:  # a searched KD loss: the configuration's categorical and its parameters
            self.configs[cid].update(loss=e["kd_loss"], **(e.get("kd_params") or {}))
        self.proposal_info[cid] = e.get("proposal") or {}
        b = self.brackets[b_index]
        if stage == 0:
            if float(e["budget"]) == b.budgets[0]:
                b.rungs[0].append(cid)
        else:
            self.refills.setdefault((b_index, stage), []).append(cid)

    def _register_promotion(self, e: dict[str, Any]) -> None:
        """async: a configuration started at a higher rung before that rung was chosen in full is a member of it
        (the order results arrived decided it; a replay must not decide again with every result known)."""
        cid: ConfigId = tuple(e["config_id"])  # type: ignore[assignment]
        b = self.brackets[cid[0]]
        budget = float(e["budget"])
        if cid[1] != 0 or budget not in b.budgets[1:]:
            return
        r = b.budgets.index(budget)
        if not b.promoted[r] and cid not in b.rungs[r]:
            b.rungs[r].append(cid)

    def replay(self, events: list[dict[str, Any]]) -> int:
        """Rebuild the state from journal events. An evaluation (configuration, budget) with a `finished` or
        `failed` event is told to the model once and never rerun, whatever trial id carried it and however many
        times the run was resumed; one that was started without such a result is queued to run once more.
        Returns the number of results replayed."""
        started: dict[Key, dict[str, Any]] = {}
        for e in events:
            kind = e["event"]
            if kind not in ("started", "finished", "failed"):
                continue  # env_failed (rerun), search_finished, notes
            self.next_trial_id = max(self.next_trial_id, int(e["trial_id"]) + 1)
            cid: ConfigId = tuple(e["config_id"])  # type: ignore[assignment]
            key = (cid, float(e["budget"]))
            if kind == "started":
                self._register(e)
                if self.promotion == "async":
                    self._register_promotion(e)
                started.setdefault(key, e)
                continue
            if key in self.results:
                continue
            self.tell(TrialResult(int(e["trial_id"]), cid, float(e["budget"]),
                                  "ok" if kind == "finished" else "failed", val_acc=e.get("val_acc"),
                                  loss=e.get("loss"), params=e.get("params"), macs=e.get("macs"),
                                  seconds=float(e.get("seconds") or 0.0), arch_id=e.get("arch_id"),
                                  peak_memory_mb=e.get("peak_memory_mb"), activation_mb=e.get("activation_mb"),
                                  latency_ms=e.get("latency_ms"), error=e.get("error")))
        # Promotions are recomputed by ask() from the results (deterministically). Unfinished evaluations run again
        # under new trial ids, so ids stay unique in the journal.
        for key, e in sorted(started.items(), key=lambda kv: int(kv[1]["trial_id"])):
            if key in self.results:
                continue
            old = TrialSpec.from_json({**e, "config_id": key[0], "budget": key[1]})
            self.requeue.append(replace(old, trial_id=self.next_trial_id))
            self.next_trial_id += 1
        return len(self.results)
