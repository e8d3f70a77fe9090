"""Building blocks of NAGO students: the conv op, gated-sum merges, and DAG execution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autokd.nn.fused import conv_bn_eval, gated_sum, mean_of
from autokd.space.spec import GraphSpec


class ConvOp(nn.Module):
    """ReLU → Conv3×3 (stride 1, pad 1, bias) → BatchNorm: the node op of a bottom graph."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        if fused and not self.training:
            return conv_bn_eval(F.relu(x), self.conv, self.bn)  # BatchNorm folded into the conv
        return self.bn(self.conv(F.relu(x)))


class GatedSum(nn.Module):
    """Σ_e sigmoid(w_e)·x_e over n same-shaped inputs; one scalar per edge, w initialised to 1."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, xs: list[torch.Tensor], fused: bool = False) -> torch.Tensor:
        if fused:
            return gated_sum(xs, self.weight)
        gates = torch.sigmoid(self.weight).to(xs[0].dtype)
        out = xs[0] * gates[0]
        for i in range(1, len(xs)):
            out = out + xs[i] * gates[i]
        return out


class DagBlock(nn.Module):
    """Runs nodes of a DAG in id order: input nodes get x, others the gated sum of their predecessors; the output
    is the mean of the output nodes. Used for mid graphs (nodes = modules) and bottom graphs (nodes = ops).

    `fused=True` computes the same function with the cheaper arithmetic of `autokd.nn.fused` (the CPU path)."""

    def __init__(self, graph: GraphSpec, nodes: list[nn.Module]) -> None:
        super().__init__()
        self.preds = [graph.predecessors(i) for i in range(graph.nodes)]
        self.outputs = graph.output_nodes()
        self.nodes = nn.ModuleList(nodes)
        # ModuleDict keys must be strings: the node id of every merge of two or more inputs.
        self.merges = nn.ModuleDict({str(i): GatedSum(len(p)) for i, p in enumerate(self.preds) if len(p) > 1})

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for i, node in enumerate(self.nodes):
            p = self.preds[i]
            if not p:
                inp = x
            elif len(p) == 1:
                inp = outs[p[0]]
            else:
                inp = self.merges[str(i)]([outs[j] for j in p], fused)
            outs.append(node(inp, fused))
        if len(self.outputs) == 1:
            return outs[self.outputs[0]]
        if fused:
            return mean_of([outs[o] for o in self.outputs])
        return torch.stack([outs[o] for o in self.outputs]).mean(0)


def pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Adaptive average pooling to (H, W); a no-op when x already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.adaptive_avg_pool2d(x, size)
