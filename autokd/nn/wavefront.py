"""A cell of a NAGO student run as few, large kernels: every group of conv ops that reads the same tensor becomes one
convolution with the ops' output channels concatenated, and one BatchNorm over the concatenation.

Why: a NAGO cell is a mid graph of bottom graphs of ReLU → Conv3×3 → BN ops at 5–20 channels. On a CPU each such
kernel runs far below the machine's rate, so a step is dominated by the number of kernels, not their FLOPs. Many ops
read the same tensor: every input node of a bottom graph reads the module's input, every input module of the mid
graph reads the cell's input (so all their input nodes read one tensor), and nodes with the same single predecessor
read its output. Computing them as one convolution of `k·width` output channels (and one ReLU of the input instead
of k) gives the same function with one kernel instead of k (measured: 1.5–1.8× for 2–4 ops of 5 channels, forward
and backward, one thread; docs/benchmarks.md). Ops that read *different* tensors of equal shape could run as one
grouped convolution, but oneDNN's grouped kernel at these widths measured slower than the separate convolutions, so
they stay separate. In evaluation (BatchNorm folded into each convolution) the grouped path measured 0.85–1.03× of
op-by-op, so the student uses it in training only.

The parameters and buffers remain those of the plain modules (`ConvOp.conv`, `ConvOp.bn`, `GatedSum.weight`), so the
state dict, checkpoints and architecture files are unchanged; `tests/test_wavefront.py` compares outputs, gradients
and running statistics with the reference modules in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from autokd.nn.fused import gated_sum, mean_of

# A tensor of the cell's computation, named by what produces it (the names never leave this module):
#   ("x",)            the cell's input
#   ("op", m, j)      the output of op j of module m (a BN output)
#   ("in", m, j)      a gated sum feeding op j of module m (only for ops with two or more predecessors)
#   ("min", m)        a gated sum feeding module m (only for modules with two or more predecessors)
#   ("mout", m)       the mean of module m's output ops (only for modules with two or more output ops)
Ref = tuple


@dataclass(frozen=True)
class ConvGroup:
    """Ops that read one tensor: run as one convolution whose output channels are the ops' outputs in order."""

    source: Ref
    ops: tuple[tuple[int, int], ...]  # (module, op) pairs


@dataclass(frozen=True)
class CellProgram:
    """The cell as data: which tensor each op reads (after aliases are resolved), the groups, and how every derived
    tensor is formed. Built once per cell from its DagBlock structure."""

    groups: tuple[ConvGroup, ...]
    sums: dict  # Ref → (gate module key, tuple of source Refs): a gated sum
    means: dict  # Ref → tuple of source Refs: a mean
    output: Ref
    group_of: dict  # (module, op) → its ConvGroup

    @property
    def convolutions(self) -> int:
        return len(self.groups)


def build_program(cell: nn.Module) -> CellProgram:
    """Resolve a cell's DagBlock (mid graph of module DagBlocks) into groups of ops that read the same tensor."""
    sums: dict = {}
    means: dict = {}
    reads: dict[tuple[int, int], Ref] = {}

    def module_output(m: int) -> Ref:
        block = cell.nodes[m]
        outs = [("op", m, o) for o in block.outputs]
        if len(outs) == 1:
            return outs[0]
        means[("mout", m)] = tuple(outs)
        return ("mout", m)

    module_in: dict[int, Ref] = {}
    for m, preds in enumerate(cell.preds):
        if not preds:
            module_in[m] = ("x",)
        elif len(preds) == 1:
            module_in[m] = module_output(preds[0])
        else:
            module_in[m] = ("min", m)
            sums[("min", m)] = (("mid", m), tuple(module_output(p) for p in preds))
        block = cell.nodes[m]
        for j, p in enumerate(block.preds):
            if not p:
                reads[(m, j)] = module_in[m]
            elif len(p) == 1:
                reads[(m, j)] = ("op", m, p[0])
            else:
                reads[(m, j)] = ("in", m, j)
                sums[("in", m, j)] = (("bottom", m, j), tuple(("op", m, q) for q in p))
    by_source: dict[Ref, list[tuple[int, int]]] = {}
    for op, src in reads.items():  # insertion order: module, then op id — deterministic
        by_source.setdefault(src, []).append(op)
    outs = [module_output(o) for o in cell.outputs]
    if len(outs) == 1:
        output = outs[0]
    else:
        output = ("cellout",)
        means[output] = tuple(outs)
    groups = tuple(ConvGroup(src, tuple(ops)) for src, ops in by_source.items())
    return CellProgram(groups, sums, means, output, {op: g for g in groups for op in g.ops})


def _gate(cell: nn.Module, key: tuple) -> torch.Tensor:
    if key[0] == "mid":
        return cell.merges[str(key[1])].weight
    return cell.nodes[key[1]].merges[str(key[2])].weight


def _batch_norm_group(y: torch.Tensor, bns: list[nn.BatchNorm2d]) -> torch.Tensor:
    """BatchNorm of each op over its channels of `y`, as one call; running statistics written back to each op's BN."""
    if len(bns) == 1:
        return bns[0](y)
    first = bns[0]
    weight = torch.cat([b.weight for b in bns]) if first.affine else None
    bias = torch.cat([b.bias for b in bns]) if first.affine else None
    use_batch_stats = first.training or not first.track_running_stats
    if first.track_running_stats and first.running_mean is not None:
        running_mean = torch.cat([b.running_mean for b in bns])
        running_var = torch.cat([b.running_var for b in bns])
    else:
        running_mean = running_var = None
    momentum = first.momentum
    if first.training and first.track_running_stats:
        for b in bns:
            b.num_batches_tracked.add_(1)
        if momentum is None:  # cumulative moving average, as nn.BatchNorm2d does
            momentum = 1.0 / float(first.num_batches_tracked)
    out = F.batch_norm(y, running_mean, running_var, weight, bias, use_batch_stats, momentum or 0.0, first.eps)
    if first.training and running_mean is not None:
        sizes = [b.num_features for b in bns]
        with torch.no_grad():
            for b, mean, var in zip(bns, running_mean.split(sizes), running_var.split(sizes)):
                b.running_mean.copy_(mean)
                b.running_var.copy_(var)
    return out


def run_program(cell: nn.Module, program: CellProgram, x: torch.Tensor) -> torch.Tensor:
    """The cell's function on x (B, C_in, H, W) → (B, width, H, W), computed group by group."""
    values: dict[Ref, torch.Tensor] = {("x",): x}
    group_of = program.group_of

    def value(ref: Ref) -> torch.Tensor:
        got = values.get(ref)
        if got is not None:
            return got
        if ref[0] == "op":
            run_group(group_of[(ref[1], ref[2])])
        elif ref in program.sums:
            key, sources = program.sums[ref]
            values[ref] = gated_sum([value(s) for s in sources], _gate(cell, key))
        else:
            values[ref] = mean_of([value(s) for s in program.means[ref]])
        return values[ref]

    def run_group(group: ConvGroup) -> None:
        ops = [cell.nodes[m].nodes[j] for m, j in group.ops]
        convs, bns = [o.conv for o in ops], [o.bn for o in ops]
        if len(ops) == 1:
            y = ops[0](value(group.source), True)  # the op's own fused path
        else:
            inp = F.relu(value(group.source))  # once for the group, not once per op
            weight = torch.cat([c.weight for c in convs])
            bias = torch.cat([c.bias for c in convs]) if convs[0].bias is not None else None
            y = _batch_norm_group(F.conv2d(inp, weight, bias, convs[0].stride, convs[0].padding), bns)
        start = 0
        for (m, j), conv in zip(group.ops, convs):
            values[("op", m, j)] = y[:, start:start + conv.out_channels].contiguous()
            start += conv.out_channels

    return value(program.output)
