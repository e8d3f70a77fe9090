"""How a promoted configuration trains at its next rung (`--rung-training`): the one place the choices live.

- scratch: every budget trains from the start (the paper's protocol; any lr schedule);
- continue: a promoted configuration continues the constant-rate trunk its lower rung left (wsd schedule only), so
  a rung costs only its new steps and trains exactly the steps a from-scratch run of its budget would
  (docs/training.md).

Adding a way: one RungTraining here and its registration in RUNG_TRAININGS; the setting's choices, its check, the
driver's trial links, the search loop's trunk states and the plan's projection follow from its fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RungTraining:
    name: str
    continues: bool  # a rung starts from the trunk of the rung below (trunk states kept in RUN_DIR/states)
    needs_schedule: str | None = None  # the lr schedule it requires (a constant-rate trunk), if any

    def links(self, budgets: list[float], rung: int, ran_below: bool) -> tuple[float | None, bool]:
        """(the lower budget whose trunk this evaluation continues, whether it keeps its own for the rung above)
        for rung `rung` of a bracket's `budgets`; `ran_below`: the configuration finished the rung below."""
        if not self.continues:
            return None, False
        return (budgets[rung - 1] if rung > 0 and ran_below else None), rung < len(budgets) - 1

    def trunk_share(self, lr_decay_fraction: float) -> float | None:
        """The share of a budget the rung above continues (None: it trains from scratch)."""
        return 1.0 - lr_decay_fraction if self.continues else None

    def check(self, lr_schedule: str) -> str | None:
        """Why this way cannot train with `lr_schedule`, or None."""
        if self.needs_schedule and lr_schedule != self.needs_schedule:
            return (f"--rung-training {self.name} needs --lr-schedule {self.needs_schedule} (a constant-rate trunk a "
                    f"higher budget can continue), not {lr_schedule}")
        return None


RUNG_TRAININGS: dict[str, RungTraining] = {
    "scratch": RungTraining("scratch", continues=False),
    "continue": RungTraining("continue", continues=True, needs_schedule="wsd"),
}


def rungs_of(settings: Any) -> RungTraining:
    """The way a search's settings (or run.json's settings mapping) train rungs."""
    name = settings.get("rung_training", "scratch") if isinstance(settings, dict) else settings.rung_training
    return RUNG_TRAININGS[name]


def journal_fields(settings: Any) -> dict[str, str]:
    """What a journal's header records of the rung training (the journal's own key, as every release wrote it)."""
    return {"rung_training": rungs_of(settings).name}
