"""Before a search: does its lowest rung learn anything? `--dry-run` trains a few configurations of the space at the
lowest budget, exactly as a trial would (the search's split, recipe and limit; without the teacher, whose loss only
lowers accuracy at short budgets), and warns when they score at chance: such a rung ranks noise, and successive
halving discards configurations at random on it (the README's run once had 18 of its 27 first-rung scores there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROBE_CONFIGS = 2  # configurations trained by the probe (each about one lowest-rung trial)


def chance_bar(chance: float) -> float:
    """The accuracy below which an evaluation has learnt next to nothing: 2 × chance, at most chance + (1 − chance)/9
    (the two agree at 10 classes: 20%; twice chance is out of reach, or near it, with few classes)."""
    return min(2.0 * chance, chance + (1.0 - chance) / 9.0)


@dataclass(frozen=True)
class RungProbe:
    budget: float
    accuracies: list[float]
    chance: float
    seconds: float

    @property
    def below_bar(self) -> int:
        return sum(a < chance_bar(self.chance) for a in self.accuracies)

    @property
    def at_chance(self) -> bool:
        """Half or more of the probe's configurations at chance: a rung where many scores rank noise."""
        return bool(self.accuracies) and 2 * self.below_bar >= len(self.accuracies)

    def scores(self) -> str:
        return ", ".join(f"{100 * a:.1f}%" for a in self.accuracies)

    def warning(self) -> str | None:
        if not self.at_chance:
            return None
        return (f"warning: the lowest rung ({self.budget:g} epochs) looks at chance: {self.below_bar} of "
                f"{len(self.accuracies)} probe configuration(s) below {100 * chance_bar(self.chance):.0f}% "
                f"({self.scores()}; chance {100 * self.chance:.0f}%); its scores would rank noise — raise --min-budget")


def probe_lowest_rung(settings: Any, param_limit: int, num_classes: int, threads: int | None = None,
                      configs: int = PROBE_CONFIGS) -> RungProbe:
    """Train `configs` configurations drawn from the space (seeded by the search's seed) at the lowest budget."""
    import time

    from autokd.hpo.trial import TrialContext, TrialSpec, run_trial
    from autokd.space.configspace import config_to_plain, theta_of

    t0 = time.perf_counter()
    ctx = TrialContext.from_settings(settings, None, param_limit, settings.device, False, threads)  # no trunks
    cs = settings.load_space().with_max_nodes(settings.max_nodes).to_configspace(seed=settings.seed + 4242)
    budget = settings.budgets()[0]
    accs: list[float] = []
    for i in range(configs * 3):  # an invalid draw (no architecture under the limit) is skipped, as a search would
        if len(accs) == configs:
            break
        theta = theta_of(config_to_plain(cs.sample_configuration()))
        r = run_trial(TrialSpec.of(i, (0, 0, i), theta, 1.0, 0.0, budget, settings.seed + i), ctx)
        if r.val_acc is not None:
            accs.append(r.val_acc)
    return RungProbe(budget, accs, 1.0 / num_classes, time.perf_counter() - t0)
