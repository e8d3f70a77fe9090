"""Crashes, resumes and collisions: repeated SIGKILLs never rerun a finished evaluation, a run directory has one
owner, environment failures are retried instead of counted, results are written with normal file modes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from autokd.cli import main
from autokd.config import apply_preset
from autokd.hpo.journal import read_journal
from autokd.hpo.run import run_search
from autokd.hpo.trial import TrialResult

TINY = ["--dataset", "synthetic:1x8x8:3:400", "--no-kd", "--preset", "smoke", "--subset", "200",
        "--min-budget", "0.5", "--max-budget", "2", "--executor", "local"]


def finished_per_evaluation(run_dir: Path) -> Counter:
    _, events, _ = read_journal(run_dir / "journal.jsonl")
    return Counter((tuple(e["config_id"]), e["budget"]) for e in events if e["event"] in ("finished", "failed"))


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "autokd.cli", "search", "--run-dir", str(run_dir), "--quiet", *extra]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_for_results(run_dir: Path, proc: subprocess.Popen, at_least: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    journal = run_dir / "journal.jsonl"
    while time.time() < deadline:
        if journal.exists() and journal.read_text().count('"event": "finished"') >= at_least:
            return
        if proc.poll() is not None:
            return
        time.sleep(0.05)


def test_repeated_kills_and_resumes_never_rerun_a_finished_evaluation(tmp_path, capsys):
    run_dir = tmp_path / "run"
    proc = start(run_dir, *TINY, "--iterations", "3")
    for k in range(4):  # kill, resume, kill again ... a finished evaluation must never run twice
        wait_for_results(run_dir, proc, at_least=3 + 3 * k)
        if proc.poll() is not None:
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = start(run_dir, "--resume")
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    counts = finished_per_evaluation(run_dir)
    assert len(counts) == 14 and set(counts.values()) == {1}, counts
    # resuming a completed run does nothing and says so
    size = (run_dir / "journal.jsonl").stat().st_size
    capsys.readouterr()
    assert main(["search", "--run-dir", str(run_dir), "--resume"]) == 0
    assert "already complete" in capsys.readouterr().err
    assert (run_dir / "journal.jsonl").stat().st_size == size


def test_a_second_process_on_a_live_run_directory_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = start(run_dir, *TINY)
    wait_for_results(run_dir, first, at_least=1)
    assert first.poll() is None
    before = (run_dir / "run.json").read_bytes()
    for args in (["--resume"], TINY):  # a second resume, and a second fresh start on the same directory
        # the second process is this one (the search runs in `first`): no interpreter to start, ≈ 4 s each
        capsys.readouterr()
        rc = main(["search", "--run-dir", str(run_dir), *args])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "in use by another autokd process" in err or "already holds a run" in err
    assert (run_dir / "run.json").read_bytes() == before
    assert first.wait(timeout=300) == 0
    counts = finished_per_evaluation(run_dir)
    assert set(counts.values()) == {1} and len(counts) == 14


def test_environment_failures_are_retried_on_resume_not_counted(tmp_path):
    """The teacher file vanishes mid-search: the trial is journaled env_failed, the search stops with exit 2 and
    the resume hint, nothing is told to the model; with the file back, a resume runs those evaluations."""
    calls = {"n": 0}

    def flaky(spec):
        calls["n"] += 1
        if calls["n"] == 4:
            return TrialResult(spec.trial_id, spec.config_id, spec.budget, "environment",
                               error="TeacherError: teacher checkpoint /x/t.pt not found")
        acc = 0.3 + spec.budget / 10
        return TrialResult(spec.trial_id, spec.config_id, spec.budget, "ok", acc, 1 - acc, seconds=0.1)

    settings = apply_preset("smoke", {"dataset": "synthetic:1x8x8:3:100", "no_kd": True, "teacher": None})
    run_dir = tmp_path / "run"
    import pytest

    from autokd.errors import UserError

    with pytest.raises(UserError, match="not the configuration's fault"):
        run_search(settings, run_dir, quiet=True, trial_fn=flaky)
    _, events, _ = read_journal(run_dir / "journal.jsonl")
    lost = [e for e in events if e["event"] == "env_failed"]
    assert len(lost) == 1 and not any(e["event"] == "failed" for e in events)
    key = (tuple(lost[0]["config_id"]), lost[0]["budget"])
    outcome = run_search(None, run_dir, resume=True, quiet=True, trial_fn=flaky)
    counts = finished_per_evaluation(run_dir)
    assert counts[key] == 1 and len(counts) == 14 and set(counts.values()) == {1}
    assert outcome.best is not None


def test_results_are_written_atomically_with_the_umask_mode(tmp_path):
    from autokd.fsutil import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.json", "{}")
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
        os.umask(0o002)
        write_atomic(tmp_path / "b.json", b"{}")
        assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o664
    finally:
        os.umask(old)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left behind


def test_run_files_are_group_readable_and_record_the_command_and_versions(tmp_path):
    run_dir = tmp_path / "run"
    settings = apply_preset("smoke", {"dataset": "synthetic:1x8x8:3:100", "no_kd": True, "teacher": None})

    def ok(spec):
        return TrialResult(spec.trial_id, spec.config_id, spec.budget, "ok", 0.5, 0.5, seconds=0.1)

    old = os.umask(0o022)
    try:
        run_search(settings, run_dir, quiet=True, trial_fn=ok)
    finally:
        os.umask(old)
    for name in ("run.json", "best.json", "space.json"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o644, name
    run = json.loads((run_dir / "run.json").read_text())
    assert run["versions"]["hpbandster"] not in ("unavailable", "not installed")
    assert run["versions"]["ConfigSpace"].count(".") >= 1 and isinstance(run["command"], list)
    _, events, _ = read_journal(run_dir / "journal.jsonl")
    assert events[-1]["event"] == "search_finished" and events[-1]["finished"] == 14


def test_quiet_search_still_prints_the_resume_hint_on_interrupt(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir, *TINY, "--iterations", "60")  # long enough that it cannot end before the interrupt
    wait_for_results(run_dir, proc, at_least=1)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # never leave a search running after the test (it would load the rest of the suite)
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and b"--resume" in err


def test_a_resume_may_move_the_search_to_another_ray_cluster_and_records_it(tmp_path, monkeypatch):
    """Where trials run does not change what they compute: --ray-address on a resume is taken (probed first, so an
    unreachable cluster fails before run.json changes: the bad-input catalogue), and run.json says when it moved."""
    from autokd import ray_cluster
    from autokd.hpo.start import resume_search
    from autokd.progress import Board
    from autokd.runlock import RunLock

    def fake(spec):
        return TrialResult(spec.trial_id, spec.config_id, spec.budget, "ok", 0.5, 0.5, params=1000, seconds=0.1)

    settings = apply_preset("smoke", {"dataset": "synthetic:1x8x8:3:200", "no_kd": True, "teacher": None,
                                      "iterations": 1})
    run_search(settings, tmp_path / "run", quiet=True, trial_fn=fake)
    probed = []
    monkeypatch.setattr(ray_cluster, "probe_address", probed.append)
    lock = RunLock(tmp_path / "run")
    try:
        prep = resume_search(tmp_path / "run", {"ray_address": "10.0.0.7:6379", "iterations": 2}, Board(quiet=True),
                             lock)
    finally:
        lock.release()
    assert probed == ["10.0.0.7:6379"]
    assert prep.settings.ray_address == "10.0.0.7:6379" and prep.settings.iterations == 2
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["settings"]["ray_address"] == "10.0.0.7:6379" and run["settings"]["iterations"] == 2
    assert run["moved"][0]["ray_address"] == "10.0.0.7:6379" and run["extended"][0]["iterations"] == 2
