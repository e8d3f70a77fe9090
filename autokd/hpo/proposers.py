"""Where new configurations come from: the proposer seam of the search driver (autokd.hpo.brackets), one class and one
registration each. The driver owns the brackets (Hyperband bookkeeping, promotion, refills); a proposer only
answers "a configuration for this budget" and hears every result.

A proposer is built with the model space (the varying dimensions: constants are the driver's business), the
search's seed and the model settings, and implements:
    propose(budget, n) → (config, info) or None   n: the proposal's index (seed from it: a resumed search that
                                                  replayed the same results proposes the same next configuration);
                                                  None: the driver samples uniformly from the whole space
    observe(config, budget, loss, update_model)   every result (loss None: a failure)
`info["model_based_pick"]` says whether a model chose it (the report counts these).

Registered: `bohb` (hpbandster's KDE, the paper's), `random` (uniform, the baseline), `tpe` (Optuna's TPE, one
study per budget, modelled on the highest budget with enough results as BOHB does).
"""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace
from typing import Any, Callable, Protocol

import ConfigSpace as CS


class Proposer(Protocol):
    def propose(self, budget: float, n: int) -> tuple[dict[str, Any], dict[str, Any]] | None: ...

    def observe(self, config: dict[str, Any], budget: float, loss: float | None, update_model: bool = True) -> None:
        ...


PROPOSERS: dict[str, Callable[..., Proposer]] = {}


def register(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        PROPOSERS[name] = cls
        return cls
    return wrap


def make_proposer(name: str, model_space: CS.ConfigurationSpace, seed: int, min_points_in_model: int | None,
                  random_fraction: float) -> Proposer:
    if name not in PROPOSERS:
        raise ValueError(f"optimizer must be one of {', '.join(PROPOSERS)}, got {name!r}")
    return PROPOSERS[name](model_space=model_space, seed=seed, min_points_in_model=min_points_in_model,
                           random_fraction=random_fraction)


@register("random")
class RandomProposer:
    """Uniform proposals in the same brackets: the baseline a model is compared against."""

    def __init__(self, **_: Any) -> None:
        pass

    def propose(self, budget: float, n: int) -> None:
        return None

    def observe(self, config: dict[str, Any], budget: float, loss: float | None, update_model: bool = True) -> None:
        pass


@register("bohb")
class KDEProposer:
    """hpbandster's BOHB config generator (its KDE model over the highest budget with enough results), driven
    with ask/tell as Ray Tune's TuneBOHB does. It draws from numpy's global generator, which the driver reseeds
    before every proposal."""

    def __init__(self, model_space: CS.ConfigurationSpace, min_points_in_model: int | None,
                 random_fraction: float, **_: Any) -> None:
        from hpbandster.optimizers.config_generators.bohb import BOHB as BOHBConfigGenerator

        logging.getLogger("hpbandster").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = BOHBConfigGenerator(configspace=model_space, min_points_in_model=min_points_in_model,
                                             random_fraction=random_fraction)

    def propose(self, budget: float, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config, info = self.model.get_config(budget)
        return dict(config), dict(info or {})

    def observe(self, config: dict[str, Any], budget: float, loss: float | None, update_model: bool = True) -> None:
        job = SimpleNamespace(id=None, kwargs={"budget": float(budget), "config": config},
                              result=None if loss is None else {"loss": loss}, exception=None, timestamps={})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.new_result(job, update_model=update_model)


@register("tpe")
class TPEProposer:
    """Optuna's TPE (multivariate), one study per budget: a proposal is modelled on the highest budget with at
    least `min_points` results (d + 1 by default, as BOHB), else uniform; a fraction `random_fraction` stays
    uniform, as in BOHB. A failure is told as the worst loss seen at its budget (at least 1.0, zero accuracy), so
    the model learns to avoid it. A fresh sampler seeded from (seed, n) makes each proposal depend only on the
    seed and the results (a resume proposes what an uninterrupted search would)."""

    def __init__(self, model_space: CS.ConfigurationSpace, seed: int, min_points_in_model: int | None,
                 random_fraction: float, **_: Any) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.seed, self.random_fraction = seed, random_fraction
        self.distributions = {hp.name: _distribution(optuna, hp) for hp in model_space.values()}
        # a conditional parameter (a KD loss's own) is active only while its parent takes one value
        self.conditions = {c.child.name: (c.parent.name, c.value) for c in model_space.conditions
                           if isinstance(c, CS.EqualsCondition)}
        self.min_points = max(min_points_in_model or 0, len(self.distributions) + 1)
        self.studies: dict[float, Any] = {}
        self.worst: dict[float, float] = {}

    def _study(self, budget: float) -> Any:
        if budget not in self.studies:
            self.studies[budget] = self.optuna.create_study(direction="minimize")
        return self.studies[budget]

    def propose(self, budget: float, n: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        import numpy as np

        rng = np.random.default_rng([self.seed, n])
        ready = [b for b, s in self.studies.items() if len(s.trials) >= self.min_points]
        if not ready or rng.random() < self.random_fraction:
            return None
        model_budget = max(ready)
        study = self.studies[model_budget]
        study.sampler = self.optuna.samplers.TPESampler(seed=int(rng.integers(2**31)), multivariate=True,
                                                        n_startup_trials=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask(self.distributions)
            params = {k: v for k, v in trial.params.items()
                      if k not in self.conditions or trial.params[self.conditions[k][0]] == self.conditions[k][1]}
            study.tell(trial, state=self.optuna.trial.TrialState.FAIL)  # a proposal, not a result: TPE ignores it
        return params, {"model_based_pick": True, "model_budget": model_budget}

    def observe(self, config: dict[str, Any], budget: float, loss: float | None, update_model: bool = True) -> None:
        budget = float(budget)
        if loss is not None:
            self.worst[budget] = max(self.worst.get(budget, 1.0), loss)
        value = loss if loss is not None else self.worst.get(budget, 1.0)
        params = {k: config[k] for k in self.distributions if k in config}  # inactive conditionals are absent
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._study(budget).add_trial(self.optuna.trial.create_trial(
                params=params, distributions={k: self.distributions[k] for k in params}, value=float(value)))


def _distribution(optuna: Any, hp: Any) -> Any:
    d = optuna.distributions
    if isinstance(hp, CS.UniformIntegerHyperparameter):
        return d.IntDistribution(int(hp.lower), int(hp.upper), log=bool(hp.log))
    if isinstance(hp, CS.UniformFloatHyperparameter):
        return d.FloatDistribution(float(hp.lower), float(hp.upper), log=bool(hp.log))
    if isinstance(hp, CS.CategoricalHyperparameter):
        return d.CategoricalDistribution(list(hp.choices))
    raise ValueError(f"the tpe optimizer cannot model {type(hp).__name__} {hp.name}")
