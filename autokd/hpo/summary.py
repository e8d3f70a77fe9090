"""The line a finished search closes with: its best student next to the teacher, a linear classifier on the same
split, and chance."""

from __future__ import annotations

from typing import Any

from autokd.config import SearchSettings
from autokd.hpo.rundir import standard_error
from autokd.hpo.trial import TrialResult

def linear_baseline_on_split(settings: SearchSettings) -> float | None:
    """A linear softmax classifier on the search's own split: the floor a student must clear."""
    from autokd.baselines import linear_baseline
    from autokd.data.dataset import load_dataset, train_val_split

    ds = load_dataset(settings.dataset, settings.data_dir)
    train, val = train_val_split(ds.train, settings.val_fraction, settings.seed, settings.subset,
                                 settings.val_images)
    return linear_baseline(train, val, ds.info.mean, ds.info.std)


def closing_line(settings: SearchSettings, run: dict[str, Any], best: TrialResult | None
                 ) -> tuple[str, float | None]:
    """The best student next to the teacher, a linear classifier on the same split (its accuracy is returned too, for
    the journal), and chance."""
    try:
        linear = linear_baseline_on_split(settings)
    except Exception:  # the closing line must not fail a finished search
        linear = None
    n_val = int(run.get("val_images") or 0)
    parts = []
    if best is not None and best.val_acc is not None:
        se = standard_error(best.val_acc, n_val) if n_val else None
        parts.append(f"best student {100 * best.val_acc:.2f}%" + (f" ± {100 * se:.2f}" if se else "")
                     + f" validation accuracy ({best.params or 0:,} params, {best.budget:g} epochs)")
    teacher = run.get("teacher") or {}
    if teacher.get("test_acc") is not None:
        parts.append(f"teacher {teacher.get('arch')} {100 * teacher['test_acc']:.2f}% (test)")
    if linear is not None:
        parts.append(f"linear classifier {100 * linear:.2f}% (same split)")
    parts.append(f"chance {100 / int(run['num_classes']):.0f}%")
    return "; ".join(parts), linear
