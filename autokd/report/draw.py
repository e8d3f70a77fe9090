"""Pictures of an architecture's three levels (top graph, one cell's mid graph, one module's bottom graph)."""

from __future__ import annotations

from pathlib import Path

from autokd.space.spec import ArchSpec, GraphSpec

STAGE_COLOURS = ("#4C72B0", "#DD8452", "#55A868")


def _layered_positions(graph: GraphSpec) -> dict[int, tuple[float, float]]:
    """x = longest path from an input node, y = order within that layer (ids are a topological order)."""
    depth = [0] * graph.nodes
    for u, v in graph.edges:  # edges are sorted by u, and u < v, so depth[u] is final when used
        depth[v] = max(depth[v], depth[u] + 1)
    layers: dict[int, list[int]] = {}
    for i, d in enumerate(depth):
        layers.setdefault(d, []).append(i)
    pos = {}
    for d, nodes in layers.items():
        for k, i in enumerate(nodes):
            pos[i] = (float(d), k - (len(nodes) - 1) / 2.0)
    return pos


def _draw_graph(ax, graph: GraphSpec, colours: list[str], title: str) -> None:
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(range(graph.nodes))
    g.add_edges_from(graph.edges)
    pos = _layered_positions(graph)
    nx.draw_networkx(g, pos=pos, ax=ax, node_color=colours, node_size=420, font_size=8, font_color="white",
                     arrows=True, arrowsize=10, edge_color="#555555", connectionstyle="arc3,rad=0.12")
    # explicit limits: autoscaling a panel whose nodes share one row (or are one node) leaves a zero data range,
    # and matplotlib then drew the row at the panel's top edge
    xs, ys = [x for x, _ in pos.values()], [y for _, y in pos.values()]
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.set_ylim(min(min(ys), -1.0) - 0.5, max(max(ys), 1.0) + 0.5)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()


def draw_architecture(spec: ArchSpec, path: str | Path, cell: int = 0, module: int = 0) -> None:
    """Write a PNG with the top graph (coloured by stage), cell `cell`'s mid graph and its module's bottom graph."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    _draw_graph(axes[0], spec.top, [STAGE_COLOURS[s] for s in spec.stages],
                f"top: {spec.top.nodes} cells, stages {list(spec.stages)}")
    c = spec.cells[cell]
    _draw_graph(axes[1], c.graph, ["#8172B3"] * c.graph.nodes, f"cell {cell}: {c.graph.nodes} modules")
    m = c.modules[module]
    _draw_graph(axes[2], m, ["#937860"] * m.nodes, f"cell {cell} module {module}: {m.nodes} ReLU-Conv3×3-BN ops")
    fig.suptitle(f"arch {spec.arch_id} · width {spec.width} (channels {list(spec.channels)}) · "
                 f"input {list(spec.input_shape)} · {spec.num_classes} classes", fontsize=11)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
