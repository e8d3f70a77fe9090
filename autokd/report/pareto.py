"""Accuracy against cost: the non-dominated evaluations (no other one at the same budget is at least as accurate
and cheaper), which budget to read them at, and a point picked on the front (best under a cost, the knee).

Costs are per image and known before training: MACs (autokd.space.plan.count_macs), activation memory in MB
(autokd.deploy.activation_mb; journaled by trials since this release) and parameters."""

from __future__ import annotations

import math
from typing import Any

from autokd.errors import UserError
from autokd.report.data import RunData

COSTS: dict[str, tuple[str, str]] = {  # name on the command line → (journal key, axis label)
    "macs": ("macs", "MACs per image"),
    "memory": ("activation_mb", "activation memory per image (MB)"),
    "params": ("params", "parameters"),
    "latency": ("latency_ms", "latency at batch 1 (ms)"),  # journaled when a latency limit or objective asks
}
MIN_FRONT_POOL = 3  # evaluations a budget needs before its front is worth reading


def costed(events: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    key = COSTS[cost][0]
    return [e for e in events if e.get(key) is not None and e.get("val_acc") is not None]


def pareto_front(events: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """The non-dominated evaluations, cheapest first (lower cost and higher accuracy are better; of two equal
    ones the earlier trial stands)."""
    key = COSTS[cost][0]
    front: list[dict[str, Any]] = []
    for e in sorted(costed(events, cost), key=lambda e: (e[key], -e["val_acc"], e.get("trial_id", 0))):
        if not front or e["val_acc"] > front[-1]["val_acc"]:
            front.append(e)
    return front


def front_budget(run: RunData) -> float | None:
    """The highest budget with at least MIN_FRONT_POOL results (successive halving leaves one or two at the top
    rung), else the top budget; None without results."""
    by = run.by_budget()
    if not by:
        return None
    pooled = [b for b, evs in by.items() if len(evs) >= MIN_FRONT_POOL]
    return max(pooled) if pooled else max(by)


def knee(front: list[dict[str, Any]], cost: str) -> dict[str, Any]:
    """The front's point farthest from the chord between its two ends, in (log cost, accuracy) scaled to [0, 1]:
    where buying more cost stops buying much accuracy."""
    key = COSTS[cost][0]
    if len(front) <= 2:
        return front[-1]
    xs = [math.log(max(e[key], 1e-12)) for e in front]
    ys = [e["val_acc"] for e in front]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    pts = [((x - xs[0]) / span_x, (y - ys[0]) / span_y) for x, y in zip(xs, ys)]
    (x1, y1) = pts[-1]
    norm = math.hypot(x1, y1) or 1.0
    dist = [abs(x1 * y - y1 * x) / norm for x, y in pts]
    return front[max(range(len(front)), key=dist.__getitem__)]


def parse_pick(text: str) -> tuple[str, str, float | None]:
    """`best`, `knee[:COST]`, `under:COST=VALUE` → (kind, cost, value). Bad text is the user's error."""
    kind, _, rest = text.partition(":")
    if kind == "best" and not rest:
        return "best", "macs", None
    if kind == "knee":
        cost = rest or "macs"
        if cost in COSTS:
            return "knee", cost, None
    if kind == "under" and "=" in rest:
        cost, _, value = rest.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if cost in COSTS and number > 0 and math.isfinite(number):
            return "under", cost, number
    raise UserError(f"--pick {text!r}: give best, knee, knee:COST or under:COST=VALUE, COST one of "
                    f"{', '.join(COSTS)} (e.g. under:macs=2e6, under:memory=0.5)")


def pick(run: RunData, text: str) -> dict[str, Any]:
    """The evaluation `text` names on the front at `front_budget(run)` (the finished event)."""
    kind, cost, value = parse_pick(text)
    budget = front_budget(run)
    if budget is None:
        raise UserError(f"{run.run_dir} has no finished evaluation to pick from; resume the search first")
    events = list(run.by_budget()[budget].values())
    front = pareto_front(events, cost)
    if not front:
        raise UserError(f"the evaluations of {run.run_dir} record no {cost} (written by an older autokd); "
                        f"--pick best exports the winner")
    if kind == "best":
        return max(events, key=lambda e: e["val_acc"])
    if kind == "knee":
        return knee(front, cost)
    under = [e for e in front if e[COSTS[cost][0]] <= value]
    if not under:
        least = front[0][COSTS[cost][0]]
        raise UserError(f"--pick {text}: no evaluation at {budget:g} epochs costs ≤ {value:g} ({cost}); the "
                        f"cheapest costs {least:g}")
    return under[-1]


def handmade_costs(run: RunData, names: tuple[str, ...] = ("resnet", "cnn")) -> dict[str, dict[str, float]]:
    """The hand-designed baselines' costs at the run's parameter limit (the widest of each shape under it, as
    `autokd retrain --baselines` trains them): name → cost name → value. Empty when the run lacks the shapes."""
    shape, classes, limit = run.run.get("input_shape"), run.run.get("num_classes"), run.run.get("param_limit")
    if not (shape and classes and limit):
        return {}
    from autokd.deploy import activation_mb
    from autokd.nn.handmade import build_handmade
    from autokd.train import count_macs_of

    import torch

    out = {}
    for name in names:
        try:
            module, width = build_handmade(name, tuple(shape), int(classes), int(limit))
        except UserError:
            continue
        out[f"{name} (width {width})"] = {"macs": count_macs_of(module, tuple(shape), torch.device("cpu")),
                                          "memory": activation_mb(module, tuple(shape)),
                                          "params": sum(p.numel() for p in module.parameters())}
    return out


def front_lines(run: RunData) -> list[str]:
    """The report's section: the fronts' sizes at the front budget (and the top one), and the front in MACs."""
    budget = front_budget(run)
    if budget is None:
        return []
    by = run.by_budget()
    top = max(by)
    lines = ["## Accuracy against cost", "",
             f"Non-dominated evaluations (no other at the same budget is both cheaper and at least as accurate), read "
             f"at {budget:g} epochs: the highest budget with ≥ {MIN_FRONT_POOL} results"
             + (f" (the top budget, {top:g} epochs, has {len(by[top])})" if budget != top else "") + ". "
             "Costs per image, known before training (latency: measured once per architecture before training, where "
             "the run asked for it); the teacher is drawn at its test accuracy, the hand-designed "
             "students at the run's parameter limit by their cost alone (they were not trained in the search).", "",
             "| cost | evaluations | on the front |", "|---|---|---|"]
    events = list(by[budget].values())
    for cost, (_, label) in COSTS.items():
        pool = costed(events, cost)
        if pool:
            lines.append(f"| {label} | {len(pool)} | {len(pareto_front(pool, cost))} |")
    front = pareto_front(events, "macs")
    if front:
        lines += ["", f"The front in MACs at {budget:g} epochs (`autokd export RUN --pick knee` or "
                  "`--pick under:macs=N` exports one of them):", "",
                  "| config | val. acc. | MACs | activations (MB) | params |", "|---|---|---|---|---|"]
        for e in front:
            mb = f"{e['activation_mb']:.3f}" if e.get("activation_mb") is not None else "–"
            lines.append(f"| {tuple(e['config_id'])} | {100 * e['val_acc']:.2f}% | {e['macs'] / 1e6:.2f}M | {mb} "
                         f"| {e.get('params') or 0:,} |")
    return lines + ["", "![accuracy against cost](pareto.png)", ""]
