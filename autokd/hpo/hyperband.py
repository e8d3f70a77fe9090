"""Hyperband brackets and successive halving (Hyperband, Li et al. 2017), as plain bookkeeping.

Bracket i has s = s_max − (i mod (s_max+1)); it starts n configurations at budget b_max·η^−s, and each rung keeps
the best ⌊n·η^−r⌋ (at least 1) by validation accuracy for the next budget. Two roundings of n:
- "hyperband" (default, Li et al.'s Hyperband): n = ⌈(s_max+1)/(s+1)·η^s⌉. For 30/60/120, η=2: 4@30 → 2@60 → 1@120;
  3@60 → 1@120; 3@120 (10 evaluations per cycle of 3 brackets).
- "hpbandster" (hpbandster's BOHB): n = ⌊(s_max+1)/(s+1)⌋·η^s: 4@30 → 2@60 → 1@120; 2@60 → 1@120; 3@120 (9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ConfigId = tuple[int, int, int]


@dataclass
class Bracket:
    index: int
    s: int
    budgets: list[float]  # budget of each rung, increasing
    sizes: list[int]  # planned number of configurations per rung
    rungs: list[list[ConfigId]] = field(default_factory=list)  # members; rung 0 filled by proposals
    promoted: list[bool] = field(default_factory=list)  # rung r's members were chosen (r ≥ 1)

    def __post_init__(self) -> None:
        if not self.rungs:
            self.rungs = [[] for _ in self.budgets]
            self.promoted = [True] + [False] * (len(self.budgets) - 1)


ROUNDINGS = ("hyperband", "hpbandster")


def first_rung_size(s_max: int, s: int, eta: int, rounding: str = "hyperband") -> int:
    if rounding == "hpbandster":
        return int(math.floor((s_max + 1) / (s + 1)) * eta ** s)
    if rounding == "hyperband":
        return math.ceil((s_max + 1) / (s + 1) * eta ** s)
    raise ValueError(f"bracket rounding must be one of {ROUNDINGS}, got {rounding!r}")


def plan_bracket(index: int, all_budgets: list[float], eta: int, rounding: str = "hyperband") -> Bracket:
    """The bracket at position `index` of the Hyperband cycle; all_budgets increasing, min → max."""
    s_max = len(all_budgets) - 1
    s = s_max - (index % (s_max + 1))
    n0 = first_rung_size(s_max, s, eta, rounding)
    sizes = [max(1, int(n0 * eta ** (-r))) for r in range(s + 1)]
    return Bracket(index, s, list(all_budgets[s_max - s:]), sizes)


def promote(candidates: list[tuple[ConfigId, float | None]], k: int) -> list[ConfigId]:
    """The best k by accuracy (failed ones, accuracy None, never promoted); ties broken by config id."""
    ok = [(cid, acc) for cid, acc in candidates if acc is not None]
    ok.sort(key=lambda t: (-t[1], t[0]))
    return [cid for cid, _ in ok[:k]]


def schedule_summary(all_budgets: list[float], eta: int, iterations: int,
                     rounding: str = "hyperband", trunk_share: float | None = None) -> dict[str, float]:
    """Evaluations and epochs that `iterations` brackets plan (failed slots refilled with new proposals keep the
    count; without refilling, failures end lines early). `trunk_share` (1 − the wsd decay fraction, with rung
    training `continue`): a promoted configuration trains only b_r − trunk_share·b_(r−1) epochs at rung r."""
    evals, epochs, configs = 0, 0.0, 0
    cycle = len(all_budgets)
    if iterations > 10 * cycle:  # whole cycles repeat: count one and multiply (plans can be long)
        one = schedule_summary(all_budgets, eta, cycle, rounding, trunk_share)
        rest = schedule_summary(all_budgets, eta, iterations % cycle, rounding, trunk_share)
        k = iterations // cycle
        return {"brackets": iterations, "evaluations": k * one["evaluations"] + rest["evaluations"],
                "configurations": k * one["configurations"] + rest["configurations"],
                "epochs": k * one["epochs"] + rest["epochs"]}
    for i in range(iterations):
        b = plan_bracket(i, all_budgets, eta, rounding)
        evals += sum(b.sizes)
        configs += b.sizes[0]
        epochs += sum(n * (bud - (trunk_share * b.budgets[r - 1] if trunk_share is not None and r > 0 else 0.0))
                      for r, (n, bud) in enumerate(zip(b.sizes, b.budgets)))
    return {"brackets": iterations, "evaluations": evals, "configurations": configs, "epochs": epochs}
