"""A user's own teacher as `module:callable` (tests/test_user_teachers.py)."""

from torch import nn


def tiny(num_classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
