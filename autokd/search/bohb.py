"""The BOHB driver: our Hyperband bookkeeping, proposals from hpbandster's BOHB config generator (its KDE model),
driven directly with ask/tell (no Pyro master), the way Ray Tune's TuneBOHB does.

Several brackets run at once: when every rung of the open brackets waits for results, a new bracket starts, so
workers never idle while a rung completes. A configuration keeps its architecture seed across budgets; every
(configuration, budget) trains from scratch with its schedule annealed to its own budget.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np

from autokd.search.hyperband import Bracket, ConfigId, plan_bracket, promote
from autokd.search.trial import TrialResult, TrialSpec
from autokd.space.configspace import THETA_KEYS, SearchSpace, config_to_plain


class BOHBDriver:
    def __init__(self, space: SearchSpace, budgets: list[float], eta: int, iterations: int, seed: int) -> None:
        from hpbandster.optimizers.config_generators.bohb import BOHB as BOHBConfigGenerator

        self.space = space
        self.budgets = list(budgets)
        self.eta = eta
        self.iterations = iterations
        self.seed = seed
        self.configspace = space.to_configspace(seed=seed)
        logging.getLogger("hpbandster").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = BOHBConfigGenerator(configspace=self.configspace)
        self.brackets: list[Bracket] = []
        self.configs: dict[ConfigId, dict[str, Any]] = {}  # θ + temperature + alpha
        self.proposal_info: dict[ConfigId, dict[str, Any]] = {}
        self.results: dict[tuple[ConfigId, float], TrialResult] = {}
        self.in_flight: dict[int, TrialSpec] = {}
        self.requeue: list[TrialSpec] = []
        self.next_trial_id = 0
        self.told = 0  # results the model received

    # ------------------------------------------------------------------ proposals
    def _propose(self, budget: float) -> dict[str, Any]:
        # Reseed before every proposal: the sequence depends only on the seed and the results told so far.
        n = len(self.configs)
        np.random.seed((self.seed * 1_000_003 + n) % 2**32)
        self.configspace.seed((self.seed * 7_919 + n) % 2**32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config, info = self.model.get_config(budget)
        return {"config": config_to_plain(config), "info": config_to_plain(info or {})}

    def arch_seed(self, config_id: ConfigId) -> int:
        return (self.seed * 1_000_003 + config_id[0] * 1_009 + config_id[2]) % 2**31

    def _spec(self, config_id: ConfigId, budget: float) -> TrialSpec:
        cfg = self.configs[config_id]
        spec = TrialSpec(self.next_trial_id, config_id, {k: cfg[k] for k in THETA_KEYS},
                         float(cfg.get("temperature", 4.0)), float(cfg.get("alpha", 0.0)), float(budget),
                         self.arch_seed(config_id))
        self.next_trial_id += 1
        self.in_flight[spec.trial_id] = spec
        return spec

    # ------------------------------------------------------------------ ask / tell
    def _busy(self, config_id: ConfigId, budget: float) -> bool:
        return ((config_id, budget) in self.results
                or any(s.config_id == config_id and s.budget == budget for s in self.in_flight.values())
                or any(s.config_id == config_id and s.budget == budget for s in self.requeue))

    def _next_in_bracket(self, b: Bracket) -> TrialSpec | None:
        for r, budget in enumerate(b.budgets):
            if not b.promoted[r]:
                prev = b.rungs[r - 1]
                if len(prev) < b.sizes[r - 1] and r - 1 == 0:
                    return None  # rung 0 still being proposed
                if not all((cid, b.budgets[r - 1]) in self.results for cid in prev):
                    return None  # waiting for the previous rung
                acc = [(cid, self.results[(cid, b.budgets[r - 1])].val_acc) for cid in prev]
                b.rungs[r] = promote(acc, b.sizes[r])
                b.promoted[r] = True
            for cid in b.rungs[r]:
                if not self._busy(cid, budget):
                    return self._spec(cid, budget)
            if r == 0 and len(b.rungs[0]) < b.sizes[0]:
                cid = (b.index, 0, len(b.rungs[0]))
                proposal = self._propose(budget)
                self.configs[cid] = proposal["config"]
                self.proposal_info[cid] = proposal["info"]
                b.rungs[0].append(cid)
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
            self.brackets.append(plan_bracket(len(self.brackets), self.budgets, self.eta))
            return self._next_in_bracket(self.brackets[-1])
        return None

    def tell(self, result: TrialResult, update_model: bool = True) -> None:
        self.in_flight.pop(result.trial_id, None)
        cid = tuple(result.config_id)
        self.results[(cid, float(result.budget))] = result
        cfg = self.configs[cid]
        job = SimpleNamespace(id=cid, kwargs={"budget": float(result.budget), "config": cfg},
                              result=None if result.loss is None else {"loss": float(result.loss)},
                              exception=result.error, timestamps={})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.new_result(job, update_model=update_model)
        self.told += 1

    def bracket_complete(self, b: Bracket) -> bool:
        if len(b.rungs[0]) < b.sizes[0]:
            return False
        for r, budget in enumerate(b.budgets):
            if not b.promoted[r]:
                prev_done = [c for c in b.rungs[r - 1] if (c, b.budgets[r - 1]) in self.results]
                if len(prev_done) < len(b.rungs[r - 1]):
                    return False
                if not promote([(c, self.results[(c, b.budgets[r - 1])].val_acc) for c in prev_done], 1):
                    return True  # every configuration of the rung failed: nothing to promote
                return False  # ask() promotes the next rung
            if not all((c, budget) in self.results for c in b.rungs[r]):
                return False
        return True

    def done(self) -> bool:
        return (len(self.brackets) >= self.iterations and not self.in_flight and not self.requeue
                and all(self.bracket_complete(b) for b in self.brackets))

    # ------------------------------------------------------------------ resume
    def replay(self, events: list[dict[str, Any]]) -> int:
        """Rebuild the state from journal events: finished and failed trials are told to the model (never rerun);
        started-but-unfinished ones are queued to run again. Returns the number of results replayed."""
        started: dict[int, dict[str, Any]] = {}
        replayed = 0
        for e in events:
            tid = int(e["trial_id"])
            self.next_trial_id = max(self.next_trial_id, tid + 1)
            cid: ConfigId = tuple(e["config_id"])  # type: ignore[assignment]
            if e["event"] == "started":
                started[tid] = e
                b_index = cid[0]
                while len(self.brackets) <= b_index:
                    self.brackets.append(plan_bracket(len(self.brackets), self.budgets, self.eta))
                b = self.brackets[b_index]
                if cid not in self.configs:
                    kd_names = {p.name for p in self.space.kd}  # nago-nokd has no temperature
                    self.configs[cid] = {**e["theta"], **{k: e[k] for k in ("temperature", "alpha")
                                                          if k in kd_names}}
                    if float(e["budget"]) == b.budgets[0]:
                        b.rungs[0].append(cid)
                    self.proposal_info[cid] = e.get("proposal", {})
                self.in_flight[tid] = TrialSpec(tid, cid, dict(e["theta"]), float(e["temperature"]),
                                                float(e["alpha"]), float(e["budget"]), int(e["seed"]))
            else:
                r = TrialResult(tid, cid, float(e["budget"]), "ok" if e["event"] == "finished" else "failed",
                                val_acc=e.get("val_acc"), loss=e.get("loss"), params=e.get("params"),
                                macs=e.get("macs"), seconds=float(e.get("seconds") or 0.0),
                                arch_id=e.get("arch_id"), peak_memory_mb=e.get("peak_memory_mb"),
                                error=e.get("error"))
                self.tell(r, update_model=True)
                replayed += 1
        # Promotions are recomputed by ask() from the results (deterministically); unfinished trials run again
        # under new trial ids, so ids stay unique in the journal.
        unfinished = sorted(self.in_flight.values(), key=lambda t: t.trial_id)
        self.in_flight = {}
        for old in unfinished:
            self.requeue.append(replace(old, trial_id=self.next_trial_id))
            self.next_trial_id += 1
        return replayed
