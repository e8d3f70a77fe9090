import numpy as np
import pytest

from autokd.errors import InvalidGenerator
from autokd.space.graphs import clamp_k, erdos_renyi, stage_of_nodes, watts_strogatz


@pytest.mark.parametrize("n,expected", [
    (3, [0, 1, 2]), (4, [0, 0, 1, 2]), (6, [0, 0, 1, 1, 2, 2]), (8, [0, 0, 0, 1, 1, 1, 2, 2]),
    (10, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]),
])
def test_stage_table_matches_reference(n, expected):
    assert stage_of_nodes(n) == expected


def test_stages_are_monotone_and_all_present_for_every_size():
    for n in range(3, 11):
        s = stage_of_nodes(n)
        assert s == sorted(s) and set(s) == {0, 1, 2}


def test_k_is_clamped_to_nodes_minus_one():
    assert clamp_k(3, 5) == 2 and clamp_k(10, 5) == 5


def test_graphs_are_connected_dags_oriented_low_to_high():
    import networkx as nx
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = watts_strogatz(int(rng.integers(3, 11)), int(rng.integers(2, 6)), float(rng.uniform(0.1, 1)), rng, "t")
        assert all(u < v for u, v in g.edges)
        und = nx.Graph(); und.add_nodes_from(range(g.nodes)); und.add_edges_from(g.edges)
        assert nx.is_connected(und)
        assert g.input_nodes()[0] == 0 and g.output_nodes()[-1] == g.nodes - 1


def test_disconnected_er_gives_typed_error_not_hang():
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidGenerator, match="disconnected in all 5 draws"):
        erdos_renyi(10, 0.01, rng, "mid graph", max_redraws=5)
