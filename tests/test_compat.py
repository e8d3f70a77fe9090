"""Run directories written by the previous release (tests/data/previous-release: made by commit 628ad07's CLI, before
settings were declared once and search/run.py was split) still load, report and resume with this one."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import autokd
from autokd.cli import main

DATA = Path(__file__).resolve().parent / "data" / "previous-release"


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA / name, tmp_path / name))


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()[1:] if line.strip()]


def test_a_finished_run_loads_with_the_new_settings_at_their_defaults(tmp_path):
    run = autokd.load_run(_copy("complete", tmp_path))
    assert run.complete and run.trials and run.best is not None
    assert run.settings.label_smoothing == 0.0 and run.settings.preset == "smoke"
    assert run.incumbent.val_acc is not None


def test_a_finished_run_reports_and_lists_its_trials(tmp_path, capsys):
    run_dir = _copy("complete", tmp_path)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.md").stat().st_size > 0
    capsys.readouterr()
    assert main(["trials", str(run_dir), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(autokd.load_run(run_dir).trials)


def test_an_interrupted_run_resumes_to_the_end_without_rerunning_a_result(tmp_path):
    run_dir = _copy("interrupted", tmp_path)
    before = [(tuple(e["config_id"]), e["budget"]) for e in _events(run_dir) if e["event"] == "finished"]
    assert main(["search", "--run-dir", str(run_dir), "--resume", "--quiet"]) == 0
    events = _events(run_dir)
    finished = [(tuple(e["config_id"]), e["budget"]) for e in events if e["event"] == "finished"]
    assert finished[:len(before)] == before and len(finished) > len(before)
    assert max(Counter(finished).values()) == 1  # no (configuration, budget) trained twice
    assert events[-1]["event"] == "search_finished" and autokd.load_run(run_dir).complete
