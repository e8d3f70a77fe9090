"""Selection quality on the ground-truth table (issue 35): replay successive halving on measured scores.

For each of `--draws` random subsets of k configurations (without replacement, from those with a target and every
rung's score), run synchronous successive halving — all k at the lowest rung, the top ⌈n/η⌉ of each rung promoted
— and pick the best at the top rung. Reported: how often the pick is in the subset's top 3 by target, and the pick's
expected target, against a random pick (3/k and the subset's mean). Seconds, no training: every later change to
budgets or promotion is checked here before a CPU-hour is spent.

Two additions, because a 40-row table is a small population: each figure carries a 95% interval over bootstrap
resamples of the table's configurations (how far it would move on another table of the same size; subsets of one
table alone understate that), and each ladder is replayed on a pool: k drawn, k/η of them trained — the best by a
training-free pre-screen (PRESCREENS), against k/η kept at random (the control) — judged against the same k drawn.
The cpu preset's first bracket trains 27 at 0.2 epochs; a lowest rung of 0.6 epochs trains 9 for less: a pre-screen
decides which 9 of 27 proposals.

The cpu preset promotes asynchronously (ASHA: a configuration moves up once in the top 1/η of its rung so far);
the synchronous rule promotes the same number per rung from the complete rung, so it is the limit the async rule
approaches as the rung fills — a replay of the async rule needs arrival orders, which the table does not have.

    python benchmarks/sh_replay.py [--subset 27] [--draws 10000] [--resamples 200]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

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


def replay(scores: np.ndarray, target: np.ndarray, k: int, eta: int, draws: int, seed: int = 0,
           prescreen: np.ndarray | None = None, pool: int | None = None) -> dict[str, float]:
    """scores: (configurations, rungs); target: (configurations,). Top-3 share and mean target of the pick, and of
    a random pick, over `draws` subsets of k.

    With `pool` > k: each draw takes `pool` configurations and keeps k of them before the lowest rung — the k best
    by `prescreen` (configurations,) when given (a training-free filter feeding the rungs a larger pool), else k at
    random (its control: the same training, no information); the random pick and the top 3 are then of the pool,
    so both are judged against the same configurations."""
    rng = np.random.default_rng(seed)
    n, rungs = scores.shape
    drawn = max(k, pool or k)
    hits, picked, rand_hits, rand_mean = 0, [], 0.0, []
    for _ in range(draws):
        sub = rng.choice(n, size=drawn, replace=False)
        alive = sub
        if drawn > k:  # sub is in random order: its first k are the control's random k
            alive = sub[np.argsort(-prescreen[sub], kind="stable")[:k]] if prescreen is not None else sub[:k]
        for r in range(rungs):
            keep = 1 if r == rungs - 1 else max(1, math.ceil(len(alive) / eta))
            order = np.argsort(-scores[alive, r], kind="stable")
            alive = alive[order[:keep]]
        pick = alive[0]
        top3 = sub[np.argsort(-target[sub], kind="stable")[:3]]
        hits += int(target[pick] >= target[top3[-1]])  # ties with the third count as in
        picked.append(target[pick])
        rand_hits += 3 / drawn
        rand_mean.append(target[sub].mean())
    return {"top3": hits / draws, "mean_target": float(np.mean(picked)), "random_top3": rand_hits / draws,
            "random_mean_target": float(np.mean(rand_mean))}


def _resampled(scores: np.ndarray, target: np.ndarray, k: int, eta: int, resamples: int, draws: int,
               prescreen: np.ndarray | None, pool: int | None, seed: int) -> list[dict[str, float]]:
    """The replay on each of `resamples` bootstrap resamples of the table's configurations (with replacement). The
    same seed gives every arm the same resamples and, for the same number drawn, the same subsets: arms pair."""
    rng = np.random.default_rng(seed + 1)
    n = len(target)
    out = []
    for b in range(resamples):
        rows = rng.choice(n, size=n, replace=True)
        out.append(replay(scores[rows], target[rows], k, eta, draws, seed=seed + 2 + b,
                          prescreen=None if prescreen is None else prescreen[rows], pool=pool))
    return out


def population_gains(scores: np.ndarray, target: np.ndarray, k: int, eta: int, resamples: int, draws: int,
                     prescreen: np.ndarray | None = None, pool: int | None = None, seed: int = 0) -> np.ndarray:
    """The pick's mean target on each bootstrap resample of the table (two arms' arrays pair element by element)."""
    return np.array([r["mean_target"] for r in _resampled(scores, target, k, eta, resamples, draws, prescreen,
                                                             pool, seed)])


def population_ci(scores: np.ndarray, target: np.ndarray, k: int, eta: int, resamples: int, draws: int,
                  prescreen: np.ndarray | None = None, pool: int | None = None, seed: int = 0
                  ) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of the top-3 share and of the pick's gain over a random pick (target points), over
    bootstrap resamples of the table: how much the replay's figures would move on another table of the same size,
    not just on other subsets of this one."""
    runs = _resampled(scores, target, k, eta, resamples, draws, prescreen, pool, seed)
    q = lambda v: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))  # noqa: E731
    return {"top3": q([r["top3"] for r in runs]), "gain": q([r["mean_target"] - r["random_mean_target"] for r in runs])}


# training-free pre-screens (a zero-cost fidelity's name) replayed in front of every ladder
PRESCREENS = {"params": "zero-cost: params"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=str(REPO / "docs" / "ground-truth"))
    ap.add_argument("--subset", type=int, default=27, help="configurations per draw (the preset's first rung)")
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--draws", type=int, default=10_000)
    ap.add_argument("--resamples", type=int, default=200,
                    help="bootstrap resamples of the table for the intervals (each with --draws / 20 subsets)")
    args = ap.parse_args()
    table = Path(args.table)
    rows = load_table(table)
    fids = load_fidelities(REPO, table)
    print(f"Successive halving (η {args.eta}) replayed on the table's measured scores: {args.draws:,} subsets per "
          f"row; intervals from {args.resamples} bootstrap resamples of the table's configurations.\n")
    print("| ladder | n | trained | drawn | pick in the drawn top 3 [95% CI] | random pick | pick's target | "
          "pick − the drawn mean, points [95% CI] |")
    print("|---|---|---|---|---|---|---|---|")
    for name, ladder in LADDERS.items():
        if not all(f in fids for f in ladder):
            continue
        ids = sorted(set(rows).intersection(*(set(fids[f]) for f in ladder)))
        if len(ids) < 8:
            continue
        scores = np.array([[fids[f][i][0] for f in ladder] for i in ids])
        target = np.array([rows[i]["test_acc"] for i in ids])
        k = min(args.subset, max(3, (2 * len(ids)) // 3))  # a subset must leave draws to vary
        arms = [(name, k, None, None)]
        # the same training on a larger pool: k drawn, k/η trained — at random (the control), or the best by each
        # pre-screen; all three judged against the same k drawn
        small = max(3, k // args.eta)
        arms.append((f"  the same, {small} of the {k} drawn at random", small, None, k))
        for screen, screen_fid in PRESCREENS.items():
            if screen_fid in fids and all(i in fids[screen_fid] for i in ids):
                pre = np.array([fids[screen_fid][i][0] for i in ids])
                arms.append((f"  the same, the {small} of the {k} with the most {screen}", small, pre, k))
        for label, kk, pre, pool in arms:
            r = replay(scores, target, kk, args.eta, args.draws, prescreen=pre, pool=pool)
            ci = population_ci(scores, target, kk, args.eta, args.resamples, max(20, args.draws // 20), pre, pool)
            gain = 100 * (r["mean_target"] - r["random_mean_target"])
            print(f"| {label} | {len(ids)} | {kk} | {pool or kk} | {r['top3']:.1%} [{ci['top3'][0]:.0%}, "
                  f"{ci['top3'][1]:.0%}] | {r['random_top3']:.1%} | {100 * r['mean_target']:.2f}% | {gain:+.2f} "
                  f"[{100 * ci['gain'][0]:+.2f}, {100 * ci['gain'][1]:+.2f}] |")
    print(decision(rows, fids, args))
    return 0


# the rebuilt presets a CPU-hour would be spent on, each against today's preset at no more training: today's first
# bracket trains 26 at 0.2 epochs (16.2 epoch-units of 10,000 images); a lowest rung of 0.6 epochs trains a third of
# them (12.6) — at random, or the third with the most parameters
TODAY = "today's preset (0.2/0.6/1.8/5.4 ep, wsd continued, KD, η 3)"
RAISED = "lowest rung raised out of chance (0.6/1.8/5.4 ep, wsd continued, KD)"


def decision(rows: dict[int, Any], fids: dict[str, Any], args: argparse.Namespace) -> str:
    """Paired differences in the pick's expected target, rebuilt − today's, over the same bootstrap resamples."""
    ids = sorted(set(rows).intersection(*(set(fids[f]) for f in LADDERS[TODAY] + LADDERS[RAISED]
                                          + ["zero-cost: params"] if f in fids)))
    if any(f not in fids for f in LADDERS[TODAY] + LADDERS[RAISED]) or len(ids) < 8:
        return ""
    target = np.array([rows[i]["test_acc"] for i in ids])
    ladder = {name: np.array([[fids[f][i][0] for f in LADDERS[name]] for i in ids]) for name in (TODAY, RAISED)}
    k = min(args.subset, max(3, (2 * len(ids)) // 3))
    small = max(3, k // args.eta)
    draws, resamples = max(20, args.draws // 20), args.resamples
    base = population_gains(ladder[TODAY], target, k, args.eta, resamples, draws)
    arms = {f"raised, {small} of {k} at random": population_gains(ladder[RAISED], target, small, args.eta,
                                                                 resamples, draws, pool=k)}
    if "zero-cost: params" in fids:
        pre = np.array([fids["zero-cost: params"][i][0] for i in ids])
        arms[f"raised, the {small} of {k} with the most params"] = population_gains(
            ladder[RAISED], target, small, args.eta, resamples, draws, prescreen=pre, pool=k)
    lines = ["", f"Rebuilt against today's preset at no more training ({k} proposals each; the pick's expected "
             f"target, paired over the same {resamples} bootstrap resamples of the table):", "",
             "| rebuilt preset | − today's preset, points | 95% CI | share of resamples where it is higher |",
             "|---|---|---|---|"]
    for name, gains in arms.items():
        d = 100 * (gains - base)
        lo, hi = np.percentile(d, [2.5, 97.5])
        lines.append(f"| {name} | {d.mean():+.2f} | [{lo:+.2f}, {hi:+.2f}] | {np.mean(d > 0):.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
