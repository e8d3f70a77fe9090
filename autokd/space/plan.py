"""Channel and merge plan of an ArchSpec: the one place that decides every tensor's channels and every merge.

`build_student` builds modules from this plan, and `count_parameters` / `count_macs` count from it, so the
analytic counts and the real module cannot drift apart (tests compare them).

Merge rule (all levels): a node with one source takes it as is. With several sources it sums them, each scaled by
sigmoid(w_e) (one scalar per edge, w initialised to 1); only at the top level can sources differ in channels, and
then every source whose channels differ from a target width is projected by a 1×1 conv (with bias) instead of
gated, and the sum runs at that width. The target is the cell's own width (`merge="cell"`, autokd's default) or the
channels of the highest-id predecessor (`merge="predecessor"`, the NAGO reference's `compute_input_planes`).
Sources are average-pooled to the cell's stage size first.
"""

from __future__ import annotations

from dataclasses import dataclass

from autokd.space.spec import ArchSpec, GraphSpec

STEM = -1  # source id of the stem in a top-level merge


@dataclass(frozen=True)
class Source:
    node: int  # top node id, or STEM
    channels: int
    size: tuple[int, int]
    kind: str  # "identity" (single source), "gate" or "project"


@dataclass(frozen=True)
class TopNodePlan:
    node: int
    stage: int
    size: tuple[int, int]
    width: int  # the cell's channels
    in_channels: int  # channels of the merged input that the cell's input ops take
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class OutputPlan:
    size: tuple[int, int]  # smallest size among the output nodes
    channels: int  # the last output node's channels
    sources: tuple[Source, ...]  # kind "identity" or "project"


def top_plan(spec: ArchSpec) -> tuple[list[TopNodePlan], OutputPlan]:
    chans, sizes = spec.channels, spec.stage_sizes
    width = [chans[s] for s in spec.stages]
    plans: list[TopNodePlan] = []
    for i in range(spec.top.nodes):
        preds = spec.top.predecessors(i)
        raw = ([(STEM, spec.stem_channels, sizes[0])] if not preds
               else [(j, width[j], sizes[spec.stages[j]]) for j in preds])
        if len(raw) == 1:
            sources = (Source(raw[0][0], raw[0][1], raw[0][2], "identity"),)
            in_ch = raw[0][1]
        elif len({c for _, c, _ in raw}) == 1:
            sources = tuple(Source(n, c, s, "gate") for n, c, s in raw)
            in_ch = raw[0][1]
        else:
            target = width[i] if spec.merge == "cell" else max(raw, key=lambda r: r[0])[1]
            sources = tuple(Source(n, c, s, "gate" if c == target else "project") for n, c, s in raw)
            in_ch = target
        plans.append(TopNodePlan(i, spec.stages[i], sizes[spec.stages[i]], width[i], in_ch, sources))
    outs = spec.top.output_nodes()
    last = outs[-1]
    out_size = min((sizes[spec.stages[o]] for o in outs), key=lambda hw: hw[0] * hw[1])
    out_sources = tuple(Source(o, width[o], sizes[spec.stages[o]],
                               "identity" if width[o] == width[last] else "project") for o in outs)
    return plans, OutputPlan(out_size, width[last], out_sources)


def graph_input_channels(graph: GraphSpec, outer_in: int, width: int) -> list[int]:
    """Input channels of each node: input nodes take the graph's incoming channels, the others run at `width`."""
    inputs = set(graph.input_nodes())
    return [outer_in if i in inputs else width for i in range(graph.nodes)]


def gate_count(graph: GraphSpec) -> int:
    """Scalar merge weights: one per incoming edge of every node with two or more predecessors."""
    return sum(len(p) for p in (graph.predecessors(i) for i in range(graph.nodes)) if len(p) > 1)


def _conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def count_parameters(spec: ArchSpec) -> int:
    """Exact number of parameters of `build_student(spec)` (BatchNorm running stats are buffers, not counted)."""
    c_in, c0 = spec.input_shape[0], spec.stem_channels
    total = _conv(c_in, c0, 3, False) + 2 * c0 + _conv(c0, c0, 3, False) + 2 * c0
    plans, out = top_plan(spec)
    for plan, cell in zip(plans, spec.cells):
        total += sum(1 if s.kind == "gate" else _conv(s.channels, plan.in_channels, 1, True)
                     for s in plan.sources if s.kind in ("gate", "project"))
        total += gate_count(cell.graph)
        for m_in, module in zip(graph_input_channels(cell.graph, plan.in_channels, plan.width), cell.modules):
            total += gate_count(module)
            for op_in in graph_input_channels(module, m_in, plan.width):
                total += _conv(op_in, plan.width, 3, True) + 2 * plan.width
    total += sum(_conv(s.channels, out.channels, 1, True) for s in out.sources if s.kind == "project")
    head = spec.head_channels
    total += _conv(out.channels, head, 1, False) + 2 * head
    total += head * spec.num_classes + spec.num_classes
    return total


def count_macs(spec: ArchSpec) -> int:
    """Multiply–accumulates of one forward pass for one image (convolutions and the classifier)."""
    c_in, c0 = spec.input_shape[0], spec.stem_channels
    d = spec.stem_downsample
    h, w = spec.input_shape[1], spec.input_shape[2]
    if d == 1:
        macs = (c_in * c0 * 9 + c0 * c0 * 9) * h * w
    else:  # two stride-2 convs
        h1, w1 = -(-h // 2), -(-w // 2)
        h2, w2 = -(-h1 // 2), -(-w1 // 2)
        macs = c_in * c0 * 9 * h1 * w1 + c0 * c0 * 9 * h2 * w2
    plans, out = top_plan(spec)
    for plan, cell in zip(plans, spec.cells):
        area = plan.size[0] * plan.size[1]
        macs += sum(s.channels * plan.in_channels * area for s in plan.sources if s.kind == "project")
        for m_in, module in zip(graph_input_channels(cell.graph, plan.in_channels, plan.width), cell.modules):
            for op_in in graph_input_channels(module, m_in, plan.width):
                macs += op_in * plan.width * 9 * area
    out_area = out.size[0] * out.size[1]
    macs += sum(s.channels * out.channels * out_area for s in out.sources if s.kind == "project")
    macs += out.channels * spec.head_channels * out_area + spec.head_channels * spec.num_classes
    return macs
