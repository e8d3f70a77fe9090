"""`autokd trials RUN`: every trial of a run, one row each, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from autokd.report.data import load_run_data
from autokd.space.configspace import OPTIONAL_THETA_KEYS, THETA_KEYS

COLUMNS = ("trial_id", "status", "bracket", "stage", "index", "budget", "val_acc", "val_loss", "train_loss", "steps",
           "params", "seconds", "temperature", "alpha", "seed", "arch_id", "model_based", *THETA_KEYS,
           *OPTIONAL_THETA_KEYS, "error")


def load_trials(run_dir: str | Path) -> list[dict[str, Any]]:
    run = load_run_data(run_dir)
    proposals = {tuple(e["config_id"]): (e.get("proposal") or {}).get("model_based_pick")
                 for e in run.events if e["event"] == "started"}
    rows = []
    for e in run.events:
        if e["event"] not in ("finished", "failed", "env_failed"):
            continue
        cid = tuple(e["config_id"])
        status = {"finished": "ok", "failed": "failed", "env_failed": "environment"}[e["event"]]
        row = {"trial_id": e["trial_id"], "status": status, "bracket": cid[0], "stage": cid[1], "index": cid[2],
               "budget": e["budget"], "model_based": proposals.get(cid),
               **{k: e.get(k) for k in ("val_acc", "val_loss", "train_loss", "steps", "params", "seconds",
                                        "temperature", "alpha", "seed", "arch_id", "error")},
               **{k: (e.get("theta") or {}).get(k) for k in THETA_KEYS + OPTIONAL_THETA_KEYS}}
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def format_trials(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    shown = ("trial_id", "status", "bracket", "stage", "index", "budget", "val_acc", "params", "seconds",
             "temperature", "alpha", "model_based", "error")
    table = [list(shown)] + [[_cell(r[c]) if c != "error" else (r[c] or "")[:50] for c in shown] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(shown))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n" for row in table)
