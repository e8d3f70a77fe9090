"""One contract, every executor (timm-style: the same tests parametrised over each registered kind): what the
search loop and retrain rely on, whichever executor runs their jobs. Ray's own faults (lost nodes, a real two-node
cluster) are tests/test_ray_cluster.py's."""

from __future__ import annotations

import os
import time

import pytest

from autokd.errors import UserError
from autokd.executors import CRASHED, DONE, ERROR, EXECUTORS, Job, make_executor
from autokd.hpo.executors import trial_runner
from autokd.hpo.trial import Status, TrialContext, TrialSpec
from autokd.progress import Board
from autokd.recipe import Recipe
from tests.conftest import SMALL_THETA

CTX = TrialContext("synthetic:1x8x8:3:300", None, None, 60_000, None, 0.2, 0,
                   recipe=Recipe(batch_size=32, lr=0.05, weight_decay=1e-4), threads=1)
BAD_THETA = {**SMALL_THETA, "G1_nodes": 1}  # no top graph of one cell: the configuration's own failure


def probe_job(payload: dict, context: dict, progress) -> dict:
    """A job for the contract: reports progress, echoes, raises or dies as its payload says."""
    if progress is not None:
        progress({"epoch": 1.0, "epochs": 2, "step": 1, "steps": 2, "seconds": 0.0, "eta_seconds": 0.0})
    if payload.get("sleep"):
        time.sleep(payload["sleep"])
    if payload.get("raise"):
        raise ValueError("the job's own failure\nsecond line")
    if payload.get("die"):
        os._exit(3)
    if payload.get("user_error"):
        raise UserError("--thing: no such file; pass an existing one")
    return {"x": payload["x"], "context": context["name"], "pid": os.getpid()}


class RecordingBoard(Board):
    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.events: list[dict] = []

    def update(self, event: dict) -> None:
        self.events.append(event)


def _start_ray() -> None:
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    import tests.test_executor_contract as me

    cloudpickle.register_pickle_by_value(me)  # Ray's workers need not import the tests package
    # address="local": a private instance, so a `ray start` cluster on the machine is never joined (or required)
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             configure_logging=False)


def _stop_ray() -> None:
    import ray

    ray.shutdown()


@pytest.fixture(scope="module", params=sorted(EXECUTORS))
def kind(request):
    """Each registered executor kind; Ray's private instance lives for the module (starting it is the slow part)."""
    if request.param == "ray":
        _start_ray()
    yield request.param
    if request.param == "ray":
        _stop_ray()


@pytest.fixture(scope="module")
def jobs(kind):
    """One executor of each kind for the module's job tests (starting workers is slow), with a recording board:
    each test leaves it with nothing in flight, as it found it."""
    board = RecordingBoard()
    ex = make_executor(kind, probe_job, {"name": "ctx"}, workers=2 if kind != "local" else 1, threads=1,
                       board=board, gpus_per_job=0.0)
    yield ex, board
    ex.shutdown()


def _drain(ex, jobs: list[Job], timeout: float = 120.0) -> list:
    """As the search loop and retrain do: at most `capacity` jobs in flight, the next submitted as one comes back."""
    todo, out = list(jobs), []
    while todo or ex.in_flight():
        while todo and ex.in_flight() < ex.capacity:
            ex.submit(todo.pop(0))
        got = ex.wait(timeout=timeout)
        assert got, f"{ex.name}: nothing came back within {timeout:.0f} s"
        out += got
    return out


def test_every_job_comes_back_once_with_its_value_and_where_it_ran(jobs):
    ex, _ = jobs
    assert ex.capacity >= 1
    outcomes = _drain(ex, [Job(f"job {i}", f"job {i}", {"x": i}) for i in range(3)])
    assert sorted(o.key for o in outcomes) == ["job 0", "job 1", "job 2"] and ex.in_flight() == 0
    for o in outcomes:
        assert o.status == DONE and o.value["x"] == int(o.key.split()[1]) and o.value["context"] == "ctx"
        assert o.where["pid"] == o.value["pid"] and o.where["host"] and o.where["threads"] >= 1
        assert o.where["ended"] >= o.where["started"]


def test_a_job_that_raises_is_its_outcome_in_one_line_and_the_executor_goes_on(jobs):
    ex, _ = jobs
    by_key = {o.key: o for o in _drain(ex, [Job("bad", "bad", {"x": 0, "raise": True}),
                                             Job("good", "good", {"x": 1})])}
    again = _drain(ex, [Job("after", "after", {"x": 2})])
    assert by_key["bad"].status == ERROR and by_key["bad"].error == "ValueError: the job's own failure"
    assert "probe_job" in by_key["bad"].trace and not by_key["bad"].bad_input  # where it failed, for a log
    assert by_key["good"].status == DONE and again[0].status == DONE


def test_a_job_that_raises_a_user_error_says_so_in_the_users_words(jobs):
    ex, _ = jobs
    (o,) = _drain(ex, [Job("bad input", "bad input", {"x": 0, "user_error": True})])
    assert o.status == ERROR and o.bad_input and o.error == "--thing: no such file; pass an existing one"


def test_progress_reaches_the_board_with_the_jobs_label(jobs):
    ex, board = jobs
    _drain(ex, [Job("reporting", "the label", {"x": 0, "sleep": 0.5})])
    assert any(e["task"] == "reporting" and e["label"] == "the label" and e["epoch"] == 1.0 for e in board.events)


def test_waiting_with_a_timeout_returns_nothing_then_the_job(jobs, kind):
    if kind == "local":
        pytest.skip("the local executor runs the job inside wait(): there is nothing to wait for")
    ex, _ = jobs
    ex.submit(Job("slow", "slow", {"x": 0, "sleep": 3.0}))
    t0 = time.monotonic()
    assert ex.wait(timeout=0.3) == [] and time.monotonic() - t0 < 2.5 and ex.in_flight() == 1
    (o,) = ex.wait(timeout=60)
    assert o.status == DONE and ex.in_flight() == 0


def test_a_worker_that_dies_is_a_crashed_outcome_and_the_executor_goes_on(jobs, kind):
    if kind == "local":
        pytest.skip("the local executor's worker is this process")
    ex, _ = jobs
    (dead,) = _drain(ex, [Job("dies", "dies", {"x": 0, "die": True})])
    after = _drain(ex, [Job(f"after {i}", "after", {"x": i}) for i in range(2)])
    assert dead.status == CRASHED and dead.error
    assert [o.status for o in after] == [DONE, DONE]


# ------------------------------------------------------------------------------------------- trials on it
@pytest.fixture(scope="module")
def trials(kind):
    ex = trial_runner(kind, CTX, workers=2 if kind != "local" else 1, gpus_per_trial=0.0)
    yield ex
    ex.shutdown()


def test_every_trial_comes_back_once_and_says_where_it_ran(trials):
    results = _drain(trials, [TrialSpec.of(i, (0, 0, i), SMALL_THETA, 4.0, 0.0, 0.5, i) for i in range(3)], 180.0)
    assert sorted(r.trial_id for r in results) == [0, 1, 2] and trials.in_flight() == 0
    for r in results:
        assert r.status == Status.OK, r.error
        assert 0.0 <= r.val_acc <= 1.0 and r.params > 0 and r.activation_mb > 0
        assert r.extra["threads"] >= 1 and r.extra["pid"]


def test_a_configurations_failure_is_its_result_and_the_executor_goes_on(trials):
    by_id = {r.trial_id: r for r in _drain(trials, [TrialSpec.of(0, (0, 0, 0), BAD_THETA, 4.0, 0.0, 0.5, 0),
                                                    TrialSpec.of(1, (0, 0, 1), SMALL_THETA, 4.0, 0.0, 0.5, 1)], 180.0)}
    assert by_id[0].status == Status.FAILED and by_id[0].error
    assert by_id[1].status == Status.OK


def test_the_same_trial_gives_the_same_result_on_every_executor(trials):
    """Plain data in, plain data out: where a trial runs does not change what it computes (the same network, the
    same steps; the loss to float precision: a lone trial may borrow an idle worker's core, and another thread count
    sums in another order)."""
    spec = TrialSpec.of(0, (0, 0, 0), SMALL_THETA, 4.0, 0.0, 0.5, 5)
    reference = trial_runner("local", CTX)
    reference.submit(spec)
    (expected,) = reference.wait()
    (got,) = _drain(trials, [spec], 180.0)
    assert (got.arch_id, got.params, got.steps) == (expected.arch_id, expected.params, expected.steps)
    assert got.train_loss == pytest.approx(expected.train_loss, rel=0.05)
