"""Training optimizers by name (timm's `create_optimizer_v2` idea): the one place a new optimizer is added.

Adding one: a builder here and its entry in OPTIMIZERS; the `opt` recipe setting (autokd/recipe.py), its flag
(`--opt`), run.json and the retrain records follow from this registry's names. A builder takes the parameter
groups (weight decay per group: autokd.train.parameter_groups) and the recipe, and returns a torch optimizer.
torch is imported by the builders only, so the names can be read where flags parse.
"""

from __future__ import annotations

from typing import Any, Callable


def _sgd(groups: list[dict[str, Any]], recipe: Any) -> Any:
    """The NAGO reference's: SGD with momentum (optionally Nesterov), L2 weight decay per group."""
    import torch

    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)


def _adamw(groups: list[dict[str, Any]], recipe: Any) -> Any:
    """AdamW (Loshchilov & Hutter): decoupled weight decay per group, betas (0.9, 0.999); give it its own --lr
    (about 1e-3, not SGD's 0.1)."""
    import torch

    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.999))


OPTIMIZERS: dict[str, Callable[[list[dict[str, Any]], Any], Any]] = {"sgd": _sgd, "adamw": _adamw}


def make_optimizer(name: str, groups: list[dict[str, Any]], recipe: Any) -> Any:
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](groups, recipe)
