"""Random graphs of the NAGO generator (networkx) and their orientation into DAGs.

networkx stays inside this module: callers get GraphSpec DAGs with edges u → v, u < v.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from autokd.errors import InvalidGenerator
from autokd.space.spec import GraphSpec

# Bounded rejection sampling of connected graphs (NAGO (Ru et al. 2020): node types): sparse Erdős–Rényi graphs can be
# disconnected for most draws; after this many draws of one sub-graph the generator is declared invalid.
DEFAULT_MAX_REDRAWS = 100


def orient(graph: nx.Graph) -> GraphSpec:
    """Orient each undirected edge from the lower to the higher node id; sorted, so the result is canonical."""
    edges = sorted((min(int(u), int(v)), max(int(u), int(v))) for u, v in graph.edges() if u != v)
    return GraphSpec(nodes=graph.number_of_nodes(), edges=tuple(edges))


def clamp_k(nodes: int, k: int) -> int:
    """Watts–Strogatz K is clamped to nodes − 1 (networkx then uses K // 2 neighbours on each side). Two nodes take
    K = 2, networkx's complete graph (one edge): K = 1 would give no neighbours, a graph never connected."""
    if int(nodes) == 2:
        return 2
    return max(1, min(int(k), int(nodes) - 1))


def _draw_connected(draw, rng: np.random.Generator, what: str, max_redraws: int) -> GraphSpec:
    for _ in range(max_redraws):
        # A fresh networkx seed per draw, taken from the architecture's RNG: reproducible and independent per graph.
        graph = draw(int(rng.integers(0, 2**31 - 1)))
        if graph.number_of_nodes() == 1 or nx.is_connected(graph):
            return orient(graph)
    raise InvalidGenerator(f"{what} was disconnected in all {max_redraws} draws; raise its P or lower its node count")


def watts_strogatz(nodes: int, k: int, p: float, rng: np.random.Generator, what: str,
                   max_redraws: int = DEFAULT_MAX_REDRAWS) -> GraphSpec:
    """Connected Watts–Strogatz graph WS(nodes, K clamped, p) as a DAG."""
    k = clamp_k(nodes, k)
    return _draw_connected(lambda s: nx.watts_strogatz_graph(int(nodes), k, float(p), seed=s), rng,
                           f"{what} (Watts–Strogatz n={nodes}, K={k}, P={p:.3g})", max_redraws)


def erdos_renyi(nodes: int, p: float, rng: np.random.Generator, what: str,
                max_redraws: int = DEFAULT_MAX_REDRAWS) -> GraphSpec:
    """Connected Erdős–Rényi graph G(nodes, p) as a DAG."""
    return _draw_connected(lambda s: nx.gnp_random_graph(int(nodes), float(p), seed=s), rng,
                           f"{what} (Erdős–Rényi n={nodes}, P={p:.3g})", max_redraws)


def stage_of_nodes(nodes: int, stages: int = 3) -> list[int]:
    """Equal-thirds stage assignment of top-level nodes by cumulative ratio: node i is in stage ⌊stages·i / nodes⌋.

    NAGO (Ru et al. 2020): n=4 → [0,0,1,2], 6 → [0,0,1,1,2,2], 8 → [0,0,0,1,1,1,2,2], 10 → [0,0,0,0,1,1,1,2,2,2].
    """
    if nodes < stages:
        raise InvalidGenerator(f"the top graph needs at least {stages} nodes for {stages} stages, got {nodes}")
    return [(stages * i) // nodes for i in range(nodes)]
