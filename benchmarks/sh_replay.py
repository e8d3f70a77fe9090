"""Selection quality on the ground-truth table (issue 35): replay successive halving on measured scores.

For each of `--draws` random subsets of k configurations (without replacement, from those with a target and every
rung's score), run synchronous successive halving — all k at the lowest rung, the top ⌈n/η⌉ of each rung promoted
— and pick the best at the top rung. Reported: how often the pick is in the subset's top 3 by target, and the pick's
expected target, against a random pick (3/k and the subset's mean). Seconds, no training: every later change to
budgets or promotion is checked here before a CPU-hour is spent.

The cpu preset promotes asynchronously (ASHA: a configuration moves up once in the top 1/η of its rung so far);
the synchronous rule promotes the same number per rung from the complete rung, so it is the limit the async rule
approaches as the rung fills — a replay of the async rule needs arrival orders, which the table does not have.

    python benchmarks/sh_replay.py [--subset 27] [--draws 10000]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ground_truth_report import REPO, load_fidelities, load_table  # noqa: E402

# ladders: rung fidelities, lowest first (names from ground_truth_report.load_fidelities)
LADDERS = {
    "today's preset (0.2/0.6/1.8/5.4 ep, wsd continued, KD, η 3)": [
        f"preset-rungs {b} ep (kd-continue)" for b in ("0.2", "0.6", "1.8", "5.4")],
    "lowest rung raised out of chance (0.6/1.8/5.4 ep, wsd continued, KD)": [
        f"preset-rungs {b} ep (kd-continue)" for b in ("0.6", "1.8", "5.4")],
    "today's top two rungs (1.8/5.4 ep, wsd continued, KD)": [
        f"preset-rungs {b} ep (kd-continue)" for b in ("1.8", "5.4")],
    "today's rungs without KD (0.2/0.6/1.8/5.4 ep, wsd continued)": [
        f"preset-rungs-nokd {b} ep (nokd-continue)" for b in ("0.2", "0.6", "1.8", "5.4")],
    "data fraction (2,500 images, 0.8/2.4/7.2/21.6 ep, same steps, KD)": [
        f"data-fraction {b} ep (kd-continue)" for b in ("0.8", "2.4", "7.2", "21.6")],
    "scratch cosine 1.8/5.4 ep, KD": ["scratch cosine 1.8 ep, KD", "scratch cosine 5.4 ep, KD"],
    "scratch cosine 1.8/5.4 ep, no KD": ["scratch cosine 1.8 ep, no KD", "scratch cosine 5.4 ep, no KD"],
    "scratch cosine 5.4 ep, KD (one rung)": ["scratch cosine 5.4 ep, KD"],
    "zero-cost naswot → scratch 5.4 ep, KD": ["zero-cost: naswot", "scratch cosine 5.4 ep, KD"],
}


def replay(scores: np.ndarray, target: np.ndarray, k: int, eta: int, draws: int, seed: int = 0
           ) -> dict[str, float]:
    """scores: (configurations, rungs); target: (configurations,). Top-3 share and mean target of the pick, and of
    a random pick, over `draws` subsets of k."""
    rng = np.random.default_rng(seed)
    n, rungs = scores.shape
    hits, picked, rand_hits, rand_mean, costs = 0, [], 0.0, [], []
    for _ in range(draws):
        sub = rng.choice(n, size=k, replace=False)
        alive = sub
        for r in range(rungs):
            keep = 1 if r == rungs - 1 else max(1, math.ceil(len(alive) / eta))
            order = np.argsort(-scores[alive, r], kind="stable")
            alive = alive[order[:keep]]
        pick = alive[0]
        top3 = sub[np.argsort(-target[sub], kind="stable")[:3]]
        hits += int(pick in top3)
        picked.append(target[pick])
        rand_hits += 3 / k
        rand_mean.append(target[sub].mean())
    return {"top3": hits / draws, "mean_target": float(np.mean(picked)), "random_top3": rand_hits / draws,
            "random_mean_target": float(np.mean(rand_mean))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=str(REPO / "docs" / "ground-truth"))
    ap.add_argument("--subset", type=int, default=27, help="configurations per draw (the preset's first rung)")
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--draws", type=int, default=10_000)
    args = ap.parse_args()
    table = Path(args.table)
    rows = load_table(table)
    fids = load_fidelities(REPO, table)
    print(f"| ladder | n | k | pick in top 3 | random pick | pick's mean target | random's |")
    print("|---|---|---|---|---|---|---|")
    for name, ladder in LADDERS.items():
        if not all(f in fids for f in ladder):
            continue
        ids = sorted(set(rows).intersection(*(set(fids[f]) for f in ladder)))
        if len(ids) < 6:
            continue
        k = min(args.subset, max(3, (2 * len(ids)) // 3))  # a subset must leave draws to vary
        scores = np.array([[fids[f][i][0] for f in ladder] for i in ids])
        target = np.array([rows[i]["test_acc"] for i in ids])
        r = replay(scores, target, k, args.eta, args.draws)
        print(f"| {name} | {len(ids)} | {k} | {r['top3']:.1%} | {r['random_top3']:.1%} | "
              f"{100 * r['mean_target']:.2f}% | {100 * r['random_mean_target']:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
