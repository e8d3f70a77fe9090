"""What the search minimises: validation error alone (the paper), or error and one cost per image scalarised per
bracket as in ParEGO (Knowles 2006), so that successive brackets pull towards different trade-offs and the
evaluations spread along the accuracy/cost front that `autokd report` draws.

Bracket b weighs error by λ_b and the cost by 1 − λ_b, λ_b = frac(0.5 + b·0.618…) (a golden-ratio sequence: the
first brackets already cover the range, unlike random weights); the cost is log-scaled to [0, 1] between the least
and the most the space's architectures cost (probed at the start of the run, kept in run.json). The loss is the
augmented Chebyshev function max(λe, (1 − λ)u) + 0.05·(λe + (1 − λ)u). Promotion within a bracket and the model's
loss both use the bracket's own scalarisation (hpbandster's KDE is fitted on all brackets' losses at a budget: a
per-bracket ParEGO, not the original's refit of every result under each new weight)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

OBJECTIVES = ("accuracy", "accuracy+macs", "accuracy+memory", "accuracy+latency")
COST_KEYS = {"accuracy+macs": "macs", "accuracy+memory": "activation_mb",
             "accuracy+latency": "latency_ms"}  # TrialResult fields
AUGMENT = 0.05  # ParEGO's ρ: keeps weakly dominated points behind the ones that dominate them
GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class Objective:
    name: str = "accuracy"
    bounds: tuple[float, float] | None = None  # the cost's least and most over the space (per image)

    @property
    def cost_key(self) -> str | None:
        return COST_KEYS.get(self.name)

    def weight(self, bracket: int) -> float:
        """λ_b: the weight of the error in bracket b."""
        return (0.5 + bracket * GOLDEN) % 1.0

    def loss(self, result: Any, bracket: int) -> float | None:
        """What the model minimises and promotion ranks by, for a result of `bracket` (None: a failure)."""
        if result.loss is None or result.val_acc is None:
            return None
        key = self.cost_key
        if key is None:
            return float(result.loss)
        cost = getattr(result, key, None)
        if cost is None or not self.bounds:
            return float(result.loss)  # a result without the cost (an older journal): error alone
        lo, hi = (math.log(max(v, 1e-12)) for v in self.bounds)
        u = min(1.0, max(0.0, (math.log(max(cost, 1e-12)) - lo) / (hi - lo))) if hi > lo else 0.0
        w = self.weight(bracket)
        e = 1.0 - float(result.val_acc)
        return max(w * e, (1 - w) * u) + AUGMENT * (w * e + (1 - w) * u)

    def score(self, result: Any, bracket: int) -> float | None:
        """Higher is better (what successive halving promotes by); the accuracy itself for `accuracy`."""
        if self.cost_key is None:
            return result.val_acc
        loss = self.loss(result, bracket)
        return None if loss is None else -loss
