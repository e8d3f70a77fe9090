"""Does this search's budget ladder work? Measured from the run's own journal, for every run (a user's data, teacher
and limit have no ground truth): each rung's validation accuracy against chance, and whether a rung's ranking
predicted the next rung's on the configurations that reached both. The report and the search's closing lines say
what did not work and what to change.

A rung is "at chance" when its mean accuracy is below `chance_bar`: twice chance (a 10-class student below 20% has
learnt next to nothing: its rank among others is noise), capped at chance + (1 − chance)/9 for few classes (where
twice chance is a high bar, or 100%); an evaluation is counted at chance on the same bar. A rung "does not
predict" the next when the 95% bootstrap interval of Spearman's ρ between them reaches 0 or below, with at least
MIN_CONFIGS configurations in common; fewer leave it undecided.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from autokd.hpo.rung_probe import chance_bar
from autokd.report.correlation import accuracies_by_budget, pair_from

MIN_CONFIGS = 5  # configurations in common before a rung pair's agreement is judged


@dataclass(frozen=True)
class RungCheck:
    budget: float  # epochs
    n: int  # finished evaluations at this budget
    mean_acc: float
    at_chance: int  # evaluations below chance_bar(chance)
    chance: float

    @property
    def is_at_chance(self) -> bool:
        return self.mean_acc < chance_bar(self.chance)


@dataclass(frozen=True)
class AgreementCheck:
    low: float
    high: float
    n: int
    spearman: float | None
    ci: tuple[float, float] | None

    @property
    def verdict(self) -> str:
        """predicts, does not predict, or undecided (too few in common, or no interval)."""
        if self.n < MIN_CONFIGS or self.spearman is None or self.ci is None:
            return "undecided"
        return "predicts" if self.ci[0] > 0 else "does not predict"


@dataclass(frozen=True)
class BudgetDiagnosis:
    rungs: list[RungCheck]
    agreements: list[AgreementCheck]
    problems: list[str] = field(default_factory=list)  # one sentence each, with what to change

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"rungs": [asdict(r) for r in self.rungs], "agreements": [asdict(a) for a in self.agreements],
                "problems": self.problems}


def _ep(budget: float) -> str:
    return f"{budget:g} epoch{'' if budget == 1 else 's'}"


def diagnose(events: list[dict[str, Any]], num_classes: int, n_boot: int = 2000) -> BudgetDiagnosis:
    """The rungs and consecutive-rung agreements of a journal's finished evaluations, and the problems found."""
    chance = 1.0 / max(1, num_classes)
    by_budget = accuracies_by_budget(events)
    rungs = [RungCheck(b, len(accs), statistics.mean(accs.values()),
                       sum(a < chance_bar(chance) for a in accs.values()), chance)
             for b, accs in by_budget.items() if accs]
    budgets = [r.budget for r in rungs]
    agreements = []
    for lo, hi in zip(budgets, budgets[1:]):
        p = pair_from(by_budget[lo], by_budget[hi], lo, hi, n_boot)
        agreements.append(AgreementCheck(lo, hi, p.n, p.spearman, p.spearman_ci))
    problems = []
    chance_rungs = [r for r in rungs if r.is_at_chance]
    if chance_rungs:
        first_ok = next((r.budget for r in rungs if not r.is_at_chance), None)
        worst = chance_rungs[0]
        advice = (f"raise --min-budget to {first_ok:g} (the lowest rung that learnt)" if first_ok is not None
                  else "raise --min-budget and --max-budget: no rung learnt")
        problems.append(f"rung {_ep(worst.budget)}: {worst.at_chance} of {worst.n} evaluations at chance (mean "
                        f"{100 * worst.mean_acc:.1f}%, chance {100 * chance:.0f}%, bar {100 * chance_bar(chance):.0f}%): its scores rank noise; {advice}"
                        + (f" ({len(chance_rungs)} rungs at chance)" if len(chance_rungs) > 1 else ""))
    for a in agreements:
        if a.verdict == "does not predict":
            problems.append(f"rung {_ep(a.low)} does not predict rung {_ep(a.high)}: Spearman {a.spearman:+.2f} "
                            f"[{a.ci[0]:+.2f}, {a.ci[1]:+.2f}] over the {a.n} configurations that reached both; its "
                            f"promotions are close to random: raise --min-budget or lower --eta so rungs are closer")
    return BudgetDiagnosis(rungs, agreements, problems)


def diagnosis_markdown(d: BudgetDiagnosis) -> list[str]:
    lines = ["## Budget diagnosis: do the cheap evaluations predict?", ""]
    if d.ok:
        undecided = [a for a in d.agreements if a.verdict == "undecided"]
        lines.append("No rung at chance and no rung pair that fails to predict the next"
                     + (f" ({len(undecided)} pair(s) undecided: too few configurations reached both)" if undecided
                        else "") + ".")
    else:
        lines += [f"- **{p}**" for p in d.problems]
    bar = chance_bar(d.rungs[0].chance) if d.rungs else 0.0
    lines += ["", f"| rung | evaluations | mean validation accuracy | at chance (< {100 * bar:.0f}%) |", "|---|---|---|---|"]
    lines += [f"| {_ep(r.budget)} | {r.n} | {100 * r.mean_acc:.1f}% | {r.at_chance} |" for r in d.rungs]
    if d.agreements:
        lines += ["", "| rung → next | configurations in both | Spearman ρ [95% CI] | verdict |", "|---|---|---|---|"]
        for a in d.agreements:
            rho = (f"{a.spearman:+.2f}" + (f" [{a.ci[0]:+.2f}, {a.ci[1]:+.2f}]" if a.ci else "")
                   if a.spearman is not None else "–")
            lines.append(f"| {a.low:g} → {a.high:g} | {a.n} | {rho} | {a.verdict} |")
    return lines + ["", "At chance: below twice chance accuracy (at most chance + (1 − chance)/9 for few classes). A rung predicts the next when the 95% bootstrap "
                    f"interval of ρ lies above 0 (≥ {MIN_CONFIGS} configurations in common); successive halving "
                    "keeps only the top 1/η of a rung, so a rung that does not predict discards configurations at "
                    "random.", ""]


def closing_lines(d: BudgetDiagnosis) -> list[str]:
    """What a search prints after its closing line: one line per problem, or one line saying the ladder held."""
    if d.ok:
        judged = [a for a in d.agreements if a.verdict == "predicts"]
        return [f"budgets: no rung at chance; {len(judged)} of {len(d.agreements)} rung pairs shown to predict the "
                f"next (the others: too few configurations in common)" if len(judged) < len(d.agreements) else
                "budgets: no rung at chance; every rung predicted the next"]
    return [f"budgets: {p}" for p in d.problems]
