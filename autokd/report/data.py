"""A run directory as data for reports: run.json, the journal's results, best.json, and what derives from them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autokd.errors import RunDirError, UserError
from autokd.fsutil import read_json
from autokd.hpo.journal import read_journal


@dataclass
class RunData:
    run_dir: Path
    run: dict[str, Any]
    events: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_note: str | None = None  # why the winner was rebuilt from the journal (best.json missing or unreadable)

    @property
    def name(self) -> str:
        return self.run_dir.resolve().name

    @property
    def settings(self) -> dict[str, Any]:
        return self.run.get("settings", {})

    @property
    def kd(self) -> bool:
        return not self.settings.get("no_kd", False)

    @property
    def label(self) -> str:
        """The run's name, and whether it distils (two KD runs compared are told apart by name)."""
        return f"{self.name} ({'KD' if self.kd else 'no KD'})"

    @property
    def results(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] in ("finished", "failed")]

    @property
    def finished(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "finished"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "failed"]

    @property
    def end(self) -> dict[str, Any] | None:
        ends = [e for e in self.events if e["event"] == "search_finished"]
        return ends[-1] if ends else None

    @property
    def val_images(self) -> int | None:
        n = self.run.get("val_images")
        if n:
            return int(n)
        found = [e.get("extra", {}).get("val_images") for e in self.finished if e.get("extra")]
        return int(found[0]) if found and found[0] else None

    @property
    def teacher_acc(self) -> float | None:
        teacher = self.run.get("teacher") or {}
        return teacher.get("test_acc")

    @property
    def linear_baseline(self) -> float | None:
        return (self.end or {}).get("linear_baseline")

    @property
    def chance(self) -> float | None:
        k = self.run.get("num_classes")
        return 1.0 / k if k else None

    def under_capacity_share(self) -> float | None:
        """Share of the search phase (first trial started → last ended, from the journal's times) in which fewer
        trials ran than the run has workers: time lost at rung barriers and at the end. None without results."""
        spans: dict[int, list[float]] = {}
        for e in self.events:
            if e["event"] == "started":
                spans[int(e["trial_id"])] = [float(e["time"]), float("nan")]
            elif e["event"] in ("finished", "failed", "env_failed") and int(e["trial_id"]) in spans:
                spans[int(e["trial_id"])][1] = float(e["time"])
        done = [(a, b) for a, b in spans.values() if b == b and b >= a]  # nan != nan: a trial that never ended
        if not done:
            return None
        workers = int(self.run.get("workers") or 1)
        edges = sorted({t for span in done for t in span})
        short = 0.0
        for lo, hi in zip(edges, edges[1:]):
            mid = (lo + hi) / 2
            if sum(a <= mid < b for a, b in done) < workers:
                short += hi - lo
        total = edges[-1] - edges[0]
        return short / total if total > 0 else 0.0

    def wall_seconds(self) -> float:
        times = [e["time"] for e in self.events]
        return max(times) - min(times) if times else 0.0

    def budgets(self) -> list[float]:
        return sorted({float(e["budget"]) for e in self.finished})

    def planned_budgets(self) -> list[float]:
        """The rungs of the run's settings (what it will evaluate, with or without results so far)."""
        from autokd.config import settings_from_dict

        try:
            return settings_from_dict(self.settings, "run.json").budgets()
        except Exception:  # an unreadable older settings block: the budgets that have results
            return self.budgets()

    def by_budget(self) -> dict[float, dict[tuple[int, ...], dict[str, Any]]]:
        """budget → {config_id: finished event} (the first result of an evaluation stands)."""
        out: dict[float, dict[tuple[int, ...], dict[str, Any]]] = {}
        for e in self.finished:
            out.setdefault(float(e["budget"]), {}).setdefault(tuple(e["config_id"]), e)
        return dict(sorted(out.items()))


def load_run_data(run_dir: str | Path) -> RunData:
    d = Path(run_dir)
    if not d.is_dir():
        raise RunDirError(f"{d} is not a folder; give the run directory of an autokd search")
    if not (d / "journal.jsonl").is_file():
        raise RunDirError(f"{d} has no journal.jsonl; give the run directory of an autokd search")
    _, events, _ = read_journal(d / "journal.jsonl")
    run: dict[str, Any] = {}
    if (d / "run.json").is_file():
        try:
            obj = read_json(d / "run.json", "run file")
            run = obj if isinstance(obj, dict) else {}
        except UserError:
            run = {}  # the journal alone still makes a report
    best, note = None, None
    if (d / "best.json").is_file():
        try:
            obj = read_json(d / "best.json", "best file")
            best = obj if isinstance(obj, dict) and isinstance(obj.get("generator"), dict) else None
            note = None if best is not None else "is not a generator file"
        except UserError as exc:
            note = f"is unreadable ({exc})"
        if best is None:
            best = winner_from_journal(events)
            note = (f"{d / 'best.json'} {note}; the winner below was rebuilt from the journal "
                    f"(delete it and run `autokd search --run-dir {d} --resume` to write it again)" if best else None)
    return RunData(d, run, events, best, note)


def started_record(events: list[dict[str, Any]], trial_id: Any) -> dict[str, Any] | None:
    """The journal's started record of a trial (θ, τ/α, searched KD loss, architecture seed)."""
    return next((e for e in events if e["event"] == "started" and e.get("trial_id") == trial_id), None)


def kd_of_started(started: dict[str, Any]) -> dict[str, Any]:
    """A trial's KD settings as a generator file's `kd`: τ/α, and the loss and its parameters where the space
    searched them (so a retrain distils with the loss the trial was scored with)."""
    kd = {"temperature": float(started["temperature"] if started.get("temperature") is not None else 4.0),
          "alpha": float(started.get("alpha") or 0.0)}
    if started.get("kd_loss"):
        kd.update({"loss": started["kd_loss"], **(started.get("kd_params") or {})})
    return kd


def winner_from_journal(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """best.json's content from the journal alone: the best finished evaluation at the highest budget (the
    search's incumbent rule), its θ, τ/α (and searched KD loss) and architecture seed from its started record."""
    done = [e for e in events if e["event"] == "finished" and e.get("status") == "ok" and e.get("val_acc") is not None]
    if not done:
        return None
    top = max(done, key=lambda e: (float(e["budget"]), float(e["val_acc"])))
    started = started_record(events, top.get("trial_id")) or top  # a finished record holds θ and τ/α too
    return {"generator": dict(started.get("theta") or top.get("theta") or {}), "kd": kd_of_started(started),
            "source": {"config_id": top.get("config_id"), "budget": top["budget"], "val_acc": top["val_acc"],
                       "params": top.get("params"), "arch_id": top.get("arch_id"), "trial_id": top.get("trial_id"),
                       "seed": started.get("seed"), "rebuilt_from_journal": True}}


def standard_error(acc: float, n: int | None) -> float | None:
    return math.sqrt(max(acc * (1 - acc), 0.0) / n) if n else None


def pct(acc: float | None, se: float | None = None, digits: int = 1) -> str:
    """An accuracy as a percentage with its standard error, to the precision the sample size supports."""
    if acc is None:
        return "–"
    text = f"{100 * acc:.{digits}f}%"
    return text + (f" ± {100 * se:.{digits}f}" if se is not None else "")
