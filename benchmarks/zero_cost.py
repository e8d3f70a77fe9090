"""Training-free scores of the ground-truth configurations (issue 35), computed at initialisation on one batch:

- naswot: Mellor et al. (ICML 2021), "Neural Architecture Search without Training": the binary activation codes
  of every ReLU for a batch of N images; K[i, j] = units where images i and j agree; score log|det K|.
  In the NAGO student each node op is ReLU → conv → BN (autokd.nn.ops.ConvOp), so the codes are the signs of every
  op's input (and the head's ReLUs).
- relation: the relation term of DisWOT (Dong et al., CVPR 2023, "DisWOT: Student Architecture Search for
  Distillation WithOut Training"), KD-aware: the batch × batch cosine-similarity matrices of the student's last
  feature map (pooled) at initialisation and of the teacher's, each row-normalised; score −‖G_s − G_t‖_F (higher =
  the untrained student already relates images as the teacher does). DisWOT's semantic (Grad-CAM) term is not built.
- params, macs: the zero-cost baselines any proxy must beat.

    python benchmarks/zero_cost.py --out docs/ground-truth/fidelity/zero-cost.json [--configs 60] [--batch 128]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "docs" / "study-cpu" / "scratch" / "rank" / "configs.json"


def naswot(model: torch.nn.Module, x: torch.Tensor) -> float:
    from autokd.nn.ops import ConvOp

    n = x.shape[0]
    k = torch.zeros(n, n, dtype=torch.float64)

    def add(t: torch.Tensor) -> None:
        c = (t.detach().flatten(1) > 0).double()
        k.add_(c @ c.T + (1 - c) @ (1 - c).T)

    hooks = [m.register_forward_pre_hook(lambda _m, inp: add(inp[0])) for m in model.modules()
             if isinstance(m, ConvOp)]
    hooks += [m.register_forward_hook(lambda _m, _i, out: add(out)) for m in model.modules()
              if isinstance(m, torch.nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(k)[1])


def _relation(features: torch.Tensor) -> torch.Tensor:
    f = F.normalize(features.flatten(1), dim=1)
    return F.normalize(f @ f.T, dim=1)


def last_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    from autokd.nn.features import feature_maps

    with torch.no_grad():
        _, maps = feature_maps(model, x)
    return F.adaptive_avg_pool2d(maps[-1], 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "docs" / "ground-truth" / "fidelity" / "zero-cost.json"))
    ap.add_argument("--configs", type=int, default=60)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    from autokd.data.dataset import load_dataset
    from autokd.kd.teacher import resolve_teacher
    from autokd.nn.student import build_student
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_macs

    torch.set_num_threads(1)
    ds = load_dataset("fashion-mnist")
    idx = torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(0))[:args.batch]
    mean = torch.tensor(ds.info.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.info.std).view(1, -1, 1, 1)
    x = (ds.train.images[idx].float() / 255 - mean) / std
    teacher = resolve_teacher("vgg7", ds, device="cpu", quiet=True).module.eval()
    g_teacher = _relation(last_features(teacher, x))
    rows: list[dict[str, Any]] = []
    for cfg in json.loads(CONFIGS.read_text())[:args.configs]:
        t0 = time.perf_counter()
        arch = sample_architecture(cfg["theta"], cfg["seed"], ds.input_shape, ds.num_classes, 100_000)
        torch.manual_seed(cfg["seed"])
        model = build_student(arch, "reference").train()  # BatchNorm on batch statistics, as at a first step
        score = naswot(model, x)
        rel = -float(torch.linalg.norm(_relation(last_features(model, x)) - g_teacher))
        rows.append({"config": cfg["index"], "naswot": score, "relation": rel,
                     "params": sum(p.numel() for p in model.parameters()), "macs": count_macs(arch),
                     "seconds": round(time.perf_counter() - t0, 3)})
        print(rows[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"batch": args.batch, "threads": 1, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
