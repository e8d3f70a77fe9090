"""A real two-node Ray cluster on loopback (`ray start --head`, then `ray start --address`), started and stopped by
these tests: trials fitted to 1-CPU nodes, a node killed mid-trial (its trial rerun on the survivor: every
evaluation exactly once), the node of each trial in the journal; and the addresses that are not a cluster refused
in seconds before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("ray")

from autokd.hpo.hyperband import schedule_summary  # noqa: E402
from autokd.hpo.journal import read_journal  # noqa: E402

RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
# Token authentication (Ray's default for `ray start --head`) needs the token on every node and driver; a loopback
# test cluster turns it off for all of them.
# A dead node is noticed in ≈ 1.5 s, not Ray's default ≈ 15 s (5 missed health checks 3 s apart): the node-kill test
# waited that long for the lost trials.
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
       "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
       "RAY_health_check_timeout_ms": "1000"}
ENV.pop("RAY_ADDRESS", None)
# One bracket of budgets 1 and 2: two trials at once at the first rung (one a node), then one; a 1-epoch trial is long
# enough to be killed mid-way (≈ 4 s on one thread)
SEARCH = ["--dataset", "synthetic:1x16x16:3:2000", "--no-kd", "--preset", "smoke", "--subset", "1500",
          "--min-budget", "1", "--max-budget", "2", "--iterations", "1", "--executor", "ray"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackCluster:
    """A head and one worker node of one CPU each; the worker node can be killed (its raylet, SIGKILL)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.worker_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # its session files (and what `auto` finds) apart from any other cluster of the machine; short, because
        # Ray's socket paths under it must fit AF_UNIX's 107 bytes
        self.tmp = tempfile.mkdtemp(prefix="akray", dir="/tmp")
        self.env = {**ENV, "RAY_TMPDIR": self.tmp}
        self._ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}", "--num-cpus=1",
                  "--include-dashboard=false", "--disable-usage-stats")
        self._ray("start", f"--address={self.address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                  f"--node-manager-port={self.worker_port}", "--disable-usage-stats")

    def _ray(self, *args: str) -> None:
        p = subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]

    def raylet_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-f", f"raylet.*--node_manager_port={self.worker_port}"],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill_worker_node(self) -> None:
        pids = self.raylet_pids()
        assert pids, "the worker node's raylet is not running"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Kill this cluster's processes only (`ray stop` would stop every cluster of the machine)."""
        subprocess.run(["pkill", "-9", "-f", self.tmp], capture_output=True)
        subprocess.run(["pkill", "-9", "-f", f"--node_manager_port={self.worker_port}"], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    """One loopback cluster for this file's tests (starting one costs ≈ 6 s): the node-kill test leaves the head
    alone, which the later tests' searches run on."""
    if not (shutil.which("pgrep") and shutil.which("pkill") and Path(RAY).exists()):
        pytest.skip("needs the ray CLI and procps (pgrep, pkill) to start and kill a loopback cluster")
    c = LoopbackCluster()
    try:
        yield c
    finally:
        c.stop()


def running_ray_jobs() -> int:
    """Ray worker processes executing a job now (Ray titles them `ray::FUNCTION`: autokd.executors.ray_job)."""
    out = subprocess.run(["pgrep", "-f", "^ray::ray_job"], capture_output=True, text=True).stdout
    return len(out.split())


def events(run_dir: Path) -> list[dict]:
    return read_journal(run_dir / "journal.jsonl")[1]


def _a_cluster_runs_on_this_machine() -> bool:
    from ray._private import services

    return bool(services.find_gcs_addresses())  # what `auto` finds: the gcs_server processes of the machine


# before the tests of the loopback cluster (pytest keeps the file's order; the module's cluster lives to the end of
# the file): `auto` finds any cluster running on the machine
@pytest.mark.skipif(_a_cluster_runs_on_this_machine(), reason="`auto` would find the cluster running here")
def test_ray_address_auto_without_a_cluster_writes_nothing_and_can_be_rerun(tmp_path):
    run_dir = tmp_path / "run"
    env = {**ENV, "RAY_TMPDIR": str(tmp_path / "no-cluster")}  # `auto` looks for a cluster there: none
    for _ in range(2):  # the same command twice: the same refusal, not "already holds a run"
        p = subprocess.run([sys.executable, "-m", "autokd.cli", "search", *SEARCH, "--ray-address", "auto",
                            "--run-dir", str(run_dir)], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert "cannot join the Ray cluster at auto" in p.stderr
        assert not run_dir.exists()


def test_a_node_killed_mid_trial_is_the_environments_failure_and_every_evaluation_runs_once(cluster, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "autokd.cli", "search", *SEARCH, "--ray-address", cluster.address,
                             "--run-dir", str(run_dir)], env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        # wait until two trials are in flight (one a node: each has one CPU), then a little into their training
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            journal = run_dir / "journal.jsonl"
            if journal.exists():
                ev = events(run_dir)
                started = sum(e["event"] == "started" for e in ev)
                ended = sum(e["event"] in ("finished", "failed") for e in ev)
                if started - ended >= 2:
                    break
            time.sleep(0.1)
        # both trials are running, not only submitted: a task still queued when its node dies is rescheduled by Ray
        # (nothing is lost, and the test would see no loss); a running task's process is titled after its function
        while time.time() < deadline and proc.poll() is None and running_ray_jobs() < 2:
            time.sleep(0.1)
        assert running_ray_jobs() >= 2, "two trials never ran at once on the two nodes"
        time.sleep(1.0)  # a little into their training
        cluster.kill_worker_node()
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["threads_per_trial"] == 1 and run["workers"] == 2  # the preset's 2 threads fitted to 1-CPU nodes
    ev = events(run_dir)
    lost = [e for e in ev if e["event"] == "env_failed"]
    assert lost, out[-4000:]
    assert all(e["status"] == "lost" and e.get("retried_as") is not None for e in lost), lost
    counts = Counter((tuple(e["config_id"]), e["budget"]) for e in ev if e["event"] in ("finished", "failed"))
    assert set(counts.values()) == {1}, counts  # every (configuration, budget) exactly once
    plan = schedule_summary([1.0, 2.0], 2, 1, run["settings"]["bracket_rounding"])
    assert len(counts) == plan["evaluations"] and not any(e["event"] == "failed" for e in ev), out[-3000:]
    finished = [e for e in ev if e["event"] == "finished"]
    assert all(e["extra"]["node_id"] and e["extra"]["node_ip"] for e in finished)
    rerun = {e["retried_as"] for e in lost}
    assert rerun <= {e["trial_id"] for e in finished}  # each lost trial finished under its new id, on the survivor
    assert "was lost (NodeDiedError); running it again as trial" in out
    assert "state-dump" not in out and "Raylet is terminated" not in out  # Ray's dump went to the run's log


def test_sigterm_of_a_ray_search_stops_with_the_resume_hint(cluster, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "autokd.cli", "search", *SEARCH, "--ray-address", cluster.address,
                             "--run-dir", str(run_dir)], env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and not (run_dir / "journal.jsonl").exists():
        time.sleep(0.1)
    time.sleep(2.0)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert time.time() - t0 < 15, "SIGTERM took too long to act"
    assert proc.returncode == 130, out[-3000:]
    assert f"autokd search --run-dir {run_dir} --resume" in out and "Traceback" not in out, out[-3000:]


def _not_ray_server() -> int:
    """A TCP port that accepts connections and answers like a plain HTTP/1.1 server."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        while True:
            conn, _ = srv.accept()
            try:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


@pytest.mark.parametrize("command", ["search", "retrain"])
def test_an_open_port_that_is_not_ray_is_refused_in_seconds_before_anything_is_written(command, tmp_path,
                                                                                         generator_file):
    address = f"127.0.0.1:{_not_ray_server()}"
    out_dir = tmp_path / "out"
    args = ([*SEARCH, "--run-dir", str(out_dir)] if command == "search" else
            ["--generator", str(generator_file()), "--dataset", "synthetic:1x8x8:3:200", "--out", str(out_dir)])
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "autokd.cli", command, *args, "--ray-address", address],
                       env={**ENV, "RAY_TMPDIR": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "not as a Ray cluster" in p.stderr
    assert time.time() - t0 < 20
    assert not out_dir.exists()
