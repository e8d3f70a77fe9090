"""ArchSpec → nn.Module: the NAGO student (NAGO, Ru et al. 2020). Channels and merges come from `autokd.space.plan`."""

from __future__ import annotations

import torch
from torch import nn

from autokd.nn.fused import gated_sum, head_features
from autokd.nn.ops import ConvOp, DagBlock, GatedSum, pool_to
from autokd.nn.wavefront import build_program, run_program
from autokd.space.plan import STEM, Source, graph_input_channels, top_plan
from autokd.space.spec import HEAD_DROPOUT, ArchSpec, CellSpec


def _cell(cell: CellSpec, in_channels: int, width: int) -> DagBlock:
    modules = []
    for m_in, module in zip(graph_input_channels(cell.graph, in_channels, width), cell.modules):
        ops = [ConvOp(op_in, width) for op_in in graph_input_channels(module, m_in, width)]
        modules.append(DagBlock(module, ops))
    return DagBlock(cell.graph, modules)


class TopMerge(nn.Module):
    """Pools each source to `size`, gates or 1×1-projects it (per the plan), and sums."""

    def __init__(self, sources: tuple[Source, ...], size: tuple[int, int], channels: int) -> None:
        super().__init__()
        self.size = size
        self.source_ids = [s.node for s in sources]
        self.kinds = [s.kind for s in sources]
        gated = [i for i, s in enumerate(sources) if s.kind == "gate"]
        self.gate_index = {i: k for k, i in enumerate(gated)}
        self.gate = GatedSum(len(gated)) if gated else None
        self.proj = nn.ModuleDict({str(i): nn.Conv2d(s.channels, channels, 1, bias=True)
                                   for i, s in enumerate(sources) if s.kind == "project"})

    def forward(self, xs: list[torch.Tensor], fused: bool = False) -> torch.Tensor:
        if len(xs) == 1 and self.kinds[0] == "identity":
            return pool_to(xs[0], self.size)
        if fused and self.gate is not None and not self.proj:
            return gated_sum([pool_to(x, self.size) for x in xs], self.gate.weight)
        total = None
        for i, x in enumerate(xs):
            x = pool_to(x, self.size)
            if self.kinds[i] == "project":
                y = self.proj[str(i)](x)
            else:
                y = x * torch.sigmoid(self.gate.weight[self.gate_index[i]]).to(x.dtype)
            total = y if total is None else total + y
        return total


ARITHMETIC = ("auto", "fused", "reference")


class Student(nn.Module):
    """The NAGO student. `arithmetic` picks how it computes (never what): "reference" runs the plain modules (the
    CUDA path), "fused" the cheaper arithmetic of `autokd.nn.fused` (the CPU path), "auto" picks by device."""

    def __init__(self, spec: ArchSpec, arithmetic: str = "auto") -> None:
        super().__init__()
        c_in, c0 = spec.input_shape[0], spec.stem_channels
        stride = 2 if spec.stem_downsample == 4 else 1
        self.stem = nn.Sequential(
            nn.Conv2d(c_in, c0, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True),
            nn.Conv2d(c0, c0, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c0))
        plans, out = top_plan(spec)
        self.merges = nn.ModuleList(TopMerge(p.sources, p.size, p.in_channels) for p in plans)
        self.cells = nn.ModuleList(_cell(c, p.in_channels, p.width) for c, p in zip(spec.cells, plans))
        self.sources = [[s.node for s in p.sources] for p in plans]
        self.output_merge = TopMerge(out.sources, out.size, out.channels)
        head = spec.head_channels
        self.head = nn.Sequential(
            nn.ReLU(inplace=False), nn.Conv2d(out.channels, head, 1, bias=False),
            nn.BatchNorm2d(head), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Dropout(HEAD_DROPOUT), nn.Linear(head, spec.num_classes))
        self.n_outputs = len(out.sources)
        # The fused path runs each cell as groups of ops that read one tensor (autokd.nn.wavefront): plain data
        # derived from the structure, no parameters of its own.
        self.programs = [build_program(c) for c in self.cells]
        # Training only: in eval (BN folded into each conv) the grouped path measured 0.85–1.03× of op-by-op, in
        # training 1.01–1.13× (docs/benchmarks.md). False: the fused path runs cells op by op (benchmarks/levers.py).
        self.wavefront = True
        if arithmetic not in ARITHMETIC:
            raise ValueError(f"arithmetic must be one of {ARITHMETIC}, got {arithmetic!r}")
        self.arithmetic = arithmetic
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def uses_fused(self, x: torch.Tensor) -> bool:
        return self.arithmetic == "fused" or (self.arithmetic == "auto" and x.device.type == "cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)[0]

    def feature_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits, every top-level cell's output): attention transfer's maps (autokd.nn.features keeps the last
        at each spatial size)."""
        return self._run(x)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fused = self.uses_fused(x)
        stem = self.stem(x)
        outs: list[torch.Tensor] = []
        for merge, cell, srcs, program in zip(self.merges, self.cells, self.sources, self.programs):
            inputs = [stem if s == STEM else outs[s] for s in srcs]
            merged = merge(inputs, fused)
            wave = fused and self.wavefront and self.training
            outs.append(run_program(cell, program, merged) if wave else cell(merged, fused))
        om = self.output_merge
        pooled = [pool_to(outs[s], om.size) for s in om.source_ids]
        feats = [om.proj[str(i)](p) if om.kinds[i] == "project" else p for i, p in enumerate(pooled)]
        y = feats[0] if len(feats) == 1 else torch.stack(feats).mean(0)
        # head: ReLU, conv1×1, BN, ReLU, pool, flatten (0-5), dropout (6), classifier (7)
        pooled_features = head_features(y, self.head[1], self.head[2]) if fused else self.head[:6](y)
        features = self.head[6](pooled_features)
        # The classifier runs in fp32 even under autocast, so KD's soft targets are not quantised to bf16.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.head[7](features.to(self.head[7].weight.dtype)), outs


def build_student(spec: ArchSpec, arithmetic: str = "auto") -> Student:
    """Build the module for an architecture; the same spec always gives the same parameter names and shapes."""
    return Student(spec, arithmetic)
