"""The NAGO hierarchical generator: θ + seed → ArchSpec (NAGO, Ru et al. 2020).

Top graph (Watts–Strogatz) of cells → each cell a mid graph (Erdős–Rényi) of modules → each module a bottom graph
(Watts–Strogatz) of ReLU-Conv3×3-BN ops. Every sub-graph is drawn independently from one RNG seeded by the
architecture seed, so the same (θ, seed) gives the same architecture, and different seeds give different ones.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from autokd.errors import InvalidGenerator
from autokd.space.configspace import THETA_KEYS, theta_of
from autokd.space.graphs import DEFAULT_MAX_REDRAWS, erdos_renyi, stage_of_nodes, watts_strogatz
from autokd.space.plan import count_parameters
from autokd.space.spec import HEAD_CHANNELS, ArchSpec, CellSpec

DEFAULT_PARAM_LIMIT = 4_000_000  # small images (AutoKD, Eyono et al. 2021); 6M for large images such as MIT67
MAX_WIDTH = 4096


def _with_width(spec: ArchSpec, width: int) -> ArchSpec:
    return ArchSpec(spec.input_shape, spec.num_classes, width, spec.top, spec.stages, spec.cells, spec.source,
                    spec.merge, spec.head_channels)


def widest_width(spec: ArchSpec, param_limit: int) -> int:
    """The largest width multiplier m whose real parameter count is ≤ param_limit (count is increasing in m)."""
    if count_parameters(_with_width(spec, 1)) > param_limit:
        raise InvalidGenerator(f"even width 1 has {count_parameters(_with_width(spec, 1)):,} parameters, over the "
                               f"limit {param_limit:,}; use fewer nodes or raise --param-limit")
    lo, hi = 1, MAX_WIDTH  # invariant: count(lo) ≤ limit
    if count_parameters(_with_width(spec, hi)) <= param_limit:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_parameters(_with_width(spec, mid)) <= param_limit:
            lo = mid
        else:
            hi = mid
    return lo


def sample_architecture(theta: Mapping[str, Any], seed: int, input_shape: tuple[int, int, int], num_classes: int,
                        param_limit: int = DEFAULT_PARAM_LIMIT,
                        max_redraws: int = DEFAULT_MAX_REDRAWS, merge: str = "cell",
                        head_channels: int | None = None) -> ArchSpec:
    """Draw one architecture from G(θ); raises InvalidGenerator with the reason when θ cannot produce one.

    θ must hold the 8 generator keys (validate user input with SearchSpace.check_theta first) and may hold
    `head_channels` (default 1280, NAGO's head); the `head_channels` argument overrides θ's.
    """
    missing = [k for k in THETA_KEYS if k not in theta]
    if missing:
        raise InvalidGenerator(f"generator is missing {', '.join(missing)}")
    t = theta_of(theta)
    head = int(head_channels if head_channels is not None else t.get("head_channels", HEAD_CHANNELS))
    rng = np.random.default_rng(int(seed))
    top = watts_strogatz(int(t["G1_nodes"]), int(t["G1_K"]), float(t["G1_P"]), rng, "top graph", max_redraws)
    stages = stage_of_nodes(top.nodes)
    cells = []
    for i in range(top.nodes):
        mid = erdos_renyi(int(t["G2_nodes"]), float(t["G2_P"]), rng, f"cell {i} mid graph", max_redraws)
        modules = tuple(watts_strogatz(int(t["G3_nodes"]), int(t["G3_K"]), float(t["G3_P"]), rng,
                                       f"cell {i} module {j} bottom graph", max_redraws) for j in range(mid.nodes))
        cells.append(CellSpec(mid, modules))
    source = {"generator": dict(t), "seed": int(seed), "param_limit": int(param_limit)}
    spec = ArchSpec(tuple(int(x) for x in input_shape), int(num_classes), 1, top, tuple(stages), tuple(cells),
                    source, merge, head)
    return _with_width(spec, widest_width(spec, int(param_limit)))
