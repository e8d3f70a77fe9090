"""ArchSpec: one sampled student architecture as plain data, and its `autokd.arch/1` JSON file format.

The spec holds everything `build_student` needs; `arch_id` hashes the canonical JSON of the structure (not the
provenance in `source`), so equal structures share an id whatever generator produced them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autokd.errors import UserError

ARCH_FORMAT = "autokd.arch/1"
STAGE_RATIOS = (1, 2, 4)
HEAD_CHANNELS = 1280
HEAD_DROPOUT = 0.2
MERGE_RULES = ("cell", "predecessor")
MAX_GRAPH_NODES = 64  # far above the search space's 10: a file with more is not one autokd wrote
# Inputs whose smaller side exceeds this get a stem that downsamples 4× (two stride-2 convs) before stage 0.
LARGE_IMAGE_SIDE = 64

Edge = tuple[int, int]


@dataclass(frozen=True)
class GraphSpec:
    """A DAG on nodes 0..nodes-1 with edges u → v, u < v."""

    nodes: int
    edges: tuple[Edge, ...]

    def predecessors(self, node: int) -> list[int]:
        return [u for u, v in self.edges if v == node]

    def input_nodes(self) -> list[int]:
        has_pred = {v for _, v in self.edges}
        return [i for i in range(self.nodes) if i not in has_pred]

    def output_nodes(self) -> list[int]:
        has_succ = {u for u, _ in self.edges}
        return [i for i in range(self.nodes) if i not in has_succ]

    def to_json(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "edges": [list(e) for e in self.edges]}


@dataclass(frozen=True)
class CellSpec:
    """A top-level node: a mid graph whose nodes are modules, each module a bottom graph of conv ops."""

    graph: GraphSpec
    modules: tuple[GraphSpec, ...]


@dataclass(frozen=True)
class ArchSpec:
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    width: int  # width multiplier m: stage s runs at STAGE_RATIOS[s] · m channels
    top: GraphSpec
    stages: tuple[int, ...]  # stage (0, 1, 2) of each top node
    cells: tuple[CellSpec, ...]
    source: dict[str, Any] = field(default_factory=dict, compare=False)  # provenance: θ, seed, param_limit
    merge: str = "cell"  # top-level merge width where inputs differ: "cell" (autokd) or "predecessor" (reference)
    head_channels: int = HEAD_CHANNELS  # the head's 1×1 conv width: 1280 (NAGO) or autokd's smaller head

    @property
    def stem_downsample(self) -> int:
        return 4 if min(self.input_shape[1:]) > LARGE_IMAGE_SIDE else 1

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(r * self.width for r in STAGE_RATIOS)

    @property
    def stem_channels(self) -> int:
        return self.channels[0]

    @property
    def stage_sizes(self) -> tuple[tuple[int, int], ...]:
        """Spatial size (H, W) of each stage: the stem's output halved per stage (ceil), e.g. 32/16/8, 28/14/7."""
        h = -(-self.input_shape[1] // self.stem_downsample)
        w = -(-self.input_shape[2] // self.stem_downsample)
        sizes = []
        for _ in STAGE_RATIOS:
            sizes.append((h, w))
            h, w = -(-h // 2), -(-w // 2)
        return tuple(sizes)

    def structure_json(self) -> dict[str, Any]:
        """The canonical structural content (what arch_id hashes)."""
        return {
            "format": ARCH_FORMAT,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "width": self.width,
            "channels": list(self.channels),
            "stage_sizes": [list(s) for s in self.stage_sizes],
            "stem": {"channels": self.stem_channels, "downsample": self.stem_downsample},
            "head": {"channels": self.head_channels, "dropout": HEAD_DROPOUT},
            "top": {**self.top.to_json(), "stages": list(self.stages)},
            "cells": [{**c.graph.to_json(), "modules": [m.to_json() for m in c.modules]} for c in self.cells],
            # only when not the default, so the ids of architectures written before the switch stay the same
            **({"merge": self.merge} if self.merge != "cell" else {}),
        }

    @property
    def arch_id(self) -> str:
        canonical = json.dumps(self.structure_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {**self.structure_json(), "arch_id": self.arch_id, "source": self.source}

    def dumps(self) -> str:
        """Canonical text of the architecture file: same spec ⇒ byte-identical text."""
        return json.dumps(self.to_json(), sort_keys=True, indent=1) + "\n"

    def op_count(self) -> int:
        return sum(m.nodes for c in self.cells for m in c.modules)


def _graph_from(obj: Any, where: str) -> GraphSpec:
    if not isinstance(obj, dict) or not isinstance(obj.get("nodes"), int) or not isinstance(obj.get("edges"), list):
        raise UserError(f"architecture file: {where} needs integer 'nodes' and a list 'edges'")
    n = obj["nodes"]
    if isinstance(n, bool) or not 1 <= n <= MAX_GRAPH_NODES:
        raise UserError(f"architecture file: {where} has {n} nodes; between 1 and {MAX_GRAPH_NODES} are allowed")
    edges = []
    for e in obj["edges"]:
        if (not isinstance(e, list) or len(e) != 2 or not all(isinstance(x, int) for x in e)
                or not 0 <= e[0] < e[1] < n):
            raise UserError(f"architecture file: {where} has edge {e!r}; edges are [u, v] with 0 <= u < v < nodes")
        edges.append((e[0], e[1]))
    return GraphSpec(nodes=n, edges=tuple(sorted(set(edges))))


def arch_from_json(obj: Any) -> ArchSpec:
    """Parse and validate an `autokd.arch/1` object; raises UserError naming the first problem."""
    if not isinstance(obj, dict) or obj.get("format") != ARCH_FORMAT:
        raise UserError(f"not an architecture file: expected \"format\": \"{ARCH_FORMAT}\"")
    try:
        top_obj = obj["top"]
        cells_obj = obj["cells"]
        raw_shape, num_classes, width = obj["input_shape"], obj["num_classes"], obj["width"]
    except KeyError as exc:
        raise UserError(f"architecture file: missing field {exc}") from None
    ints = (isinstance(raw_shape, list) and len(raw_shape) == 3
            and all(isinstance(x, int) and not isinstance(x, bool) for x in raw_shape))
    if (not ints or not all(1 <= x <= 8192 for x in raw_shape) or isinstance(num_classes, bool)
            or not isinstance(num_classes, int) or not 2 <= num_classes <= 100_000 or isinstance(width, bool)
            or not isinstance(width, int) or not 1 <= width <= 4096):
        raise UserError("architecture file: input_shape must be 3 integers in [1, 8192], num_classes an integer in "
                        "[2, 100000], width an integer in [1, 4096]")
    shape = tuple(raw_shape)
    top = _graph_from(top_obj, "top")
    stages = top_obj.get("stages")
    if not isinstance(stages, list) or len(stages) != top.nodes or any(s not in (0, 1, 2) for s in stages):
        raise UserError("architecture file: top.stages must give a stage 0, 1 or 2 for every top node")
    if not isinstance(cells_obj, list) or len(cells_obj) != top.nodes:
        raise UserError("architecture file: 'cells' must hold one cell per top node")
    cells = []
    for i, c in enumerate(cells_obj):
        graph = _graph_from(c, f"cell {i}")
        mods = c.get("modules") if isinstance(c, dict) else None
        if not isinstance(mods, list) or len(mods) != graph.nodes:
            raise UserError(f"architecture file: cell {i} must hold one module per mid-graph node")
        cells.append(CellSpec(graph, tuple(_graph_from(m, f"cell {i} module {j}") for j, m in enumerate(mods))))
    merge = obj.get("merge", "cell")
    if merge not in MERGE_RULES:
        raise UserError(f"architecture file: merge must be one of {', '.join(MERGE_RULES)}, got {merge!r}")
    head = obj.get("head", {}) if isinstance(obj.get("head", {}), dict) else None
    head_channels = head.get("channels", HEAD_CHANNELS) if head is not None else None
    if isinstance(head_channels, bool) or not isinstance(head_channels, int) or not 1 <= head_channels <= 65_536:
        raise UserError("architecture file: head.channels must be an integer in [1, 65536]")
    spec = ArchSpec(shape, num_classes, width, top, tuple(stages), tuple(cells), dict(obj.get("source") or {}),
                    merge, head_channels)
    if "arch_id" in obj and obj["arch_id"] != spec.arch_id:
        raise UserError(f"architecture file: arch_id {obj['arch_id']} does not match its content "
                        f"({spec.arch_id}); the file was edited or is corrupt")
    return spec


def load_arch(path: str | Path) -> ArchSpec:
    from autokd.fsutil import read_json
    from autokd.validate import check_depth

    obj = read_json(path, "architecture file")
    check_depth(obj, f"architecture file {path}")
    return arch_from_json(obj)
