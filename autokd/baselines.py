"""Reference points a student's accuracy is read against: chance and a linear softmax classifier on raw pixels."""

from __future__ import annotations

import torch

from autokd.data.readers import ImageSet

MAX_LINEAR_TRAIN = 20_000  # enough for a linear model's accuracy to settle; keeps it to seconds on a CPU


def linear_baseline(train: ImageSet, val: ImageSet, mean: tuple[float, ...], std: tuple[float, ...],
                    iterations: int = 100, l2: float = 1e-4) -> float:
    """Validation accuracy of a multinomial logistic regression on normalised pixels (L-BFGS, deterministic)."""
    c = train.images.shape[1]
    m = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)

    def features(images: torch.Tensor) -> torch.Tensor:
        return ((images.float() / 255.0 - m) / s).flatten(1)

    x, y = features(train.images[:MAX_LINEAR_TRAIN]), train.labels[:MAX_LINEAR_TRAIN]
    classes = int(max(int(train.labels.max()), int(val.labels.max())) + 1)
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (features(val.images) @ w + b).argmax(1)
    return float((pred == val.labels).float().mean())
