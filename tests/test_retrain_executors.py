"""Retrain on the search's executors: a sample whose worker dies runs again; Ray runs samples with progress."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import tempfile
import threading
import time

import pytest

from autokd.cli import main
from tests.test_retrain import generator_with_source  # noqa: F401 - the fixture


def _kill_one_worker_once_running(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first sample worker process seen (a second after it appears: its sample has been sent)."""
    while not stop.is_set():
        workers = [p for p in mp.active_children() if p.name.startswith("autokd-worker")]
        if workers:
            time.sleep(1.0)
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(workers[0].pid)
            return
        time.sleep(0.05)


def test_a_sample_whose_worker_dies_runs_again_and_the_retrain_finishes(generator_with_source, tmp_path,  # noqa: F811
                                                                       capsys):
    out = tmp_path / "retrain"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_worker_once_running, args=(killed, stop), daemon=True)
    killer.start()
    try:
        code = main(["retrain", "--generator", str(generator_with_source), "--samples", "2", "--epochs", "2",
                     "--workers", "2", "--no-int8", "--out", str(out)])
    finally:
        stop.set()
    err = capsys.readouterr().err
    assert killed, "no worker process was seen"
    assert code == 0, err
    assert "worker process died" in err and "running it again from its last saved state (retry 1 of" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 2 and [r["status"] for r in summary["per_sample"]] == ["ok", "ok"]


def test_retrain_runs_its_samples_as_ray_tasks_with_progress(generator_with_source, tmp_path, capsys,  # noqa: F811
                                                           monkeypatch):
    ray = pytest.importorskip("ray")
    # a private instance, never a cluster of the machine; a short folder: Ray's socket paths must fit 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", tempfile.mkdtemp(prefix="akd", dir="/tmp"))
    out = tmp_path / "retrain"
    try:
        code = main(["retrain", "--generator", str(generator_with_source), "--samples", "1", "--epochs", "0.5",
                     "--executor", "ray", "--no-int8", "--out", str(out)])
    finally:
        ray.shutdown()
    err = capsys.readouterr().err
    assert code == 0, err
    assert "as many at once as the Ray cluster fits" in err
    assert "retrain: sample 0 (winner)" in err or "retrain: sample 0:" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 1
    assert main(["retrain", "--generator", str(generator_with_source), "--samples", "1", "--epochs", "0.5",
                 "--executor", "ray", "--no-int8", "--out", str(out)]) == 0
    assert "sample 0 already done" in capsys.readouterr().err  # finished samples are never redone
