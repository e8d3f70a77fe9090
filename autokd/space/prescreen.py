"""Training-free pre-screens: score a proposed configuration before anything trains, so the search driver
(autokd.hpo.brackets) can draw a pool of proposals and send the best-scored one to its lowest rung.

`params`: the parameter count of the architecture the configuration would train (its θ sampled with the trial's
architecture seed, widened to the limit) — milliseconds, no torch. Under a parameter limit the integer width
multiplier leaves students at 79–100% of the limit. On the ground-truth table's first 24 rows the count ranked the
7-epoch retrain target as well as the preset's best rung, but not on the 16 held out (ρ +0.08; all 40: +0.30
[−0.04, +0.58]; docs/ground-truth/holdout.md), so no preset turns it on. A configuration that cannot be sampled
scores −inf (the trial would fail: never preferred).

A pre-screen is a function of (configuration, architecture seed) → score, higher better; the driver records the
chosen one's score and the pool size in the proposal's info (the journal).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

PRESCREENS = ("none", "params")

Prescreen = Callable[[Mapping[str, Any], int], float]


def make_prescreen(kind: str, input_shape: tuple[int, ...] | list[int], num_classes: int, param_limit: int,
                   merge_width: str = "cell") -> Prescreen | None:
    """The pre-screen `kind` names (None for "none") for students of this input shape, class count and limit."""
    if kind == "none":
        return None
    if kind != "params":
        raise ValueError(f"prescreen must be one of {', '.join(PRESCREENS)}, got {kind!r}")
    from autokd.errors import InvalidGenerator
    from autokd.space.configspace import theta_of
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_parameters

    shape = tuple(int(x) for x in input_shape)

    def params(config: Mapping[str, Any], arch_seed: int) -> float:
        try:
            spec = sample_architecture(theta_of(config), arch_seed, shape, num_classes, param_limit,
                                       merge=merge_width)
        except InvalidGenerator:
            return -math.inf
        return float(count_parameters(spec))

    return params
