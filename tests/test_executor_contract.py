"""One contract, every executor (timm-style: the same tests parametrised over each registered kind): what the
search loop relies on, whichever executor runs its trials. Ray's own faults (lost nodes, a real two-node
cluster) are tests/test_ray_cluster.py's."""

from __future__ import annotations

import pytest

from autokd.hpo.executors import LocalExecutor, ProcessExecutor, RayExecutor
from autokd.hpo.trial import Status, TrialContext, TrialSpec
from autokd.recipe import Recipe
from tests.conftest import SMALL_THETA

CTX = TrialContext("synthetic:1x8x8:3:300", None, None, 60_000, None, 0.2, 0,
                   recipe=Recipe(batch_size=32, lr=0.05, weight_decay=1e-4), threads=1)
BAD_THETA = {**SMALL_THETA, "G1_nodes": 1}  # no top graph of one cell: the configuration's own failure


def _ray_executor():
    ray = pytest.importorskip("ray")
    # address="local": a private instance, so a `ray start` cluster on the machine is never joined (or required)
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    ex = RayExecutor(CTX, gpus_per_trial=0.0, cpus_per_trial=1)
    original = ex.shutdown

    def shutdown() -> None:
        original()
        ray.shutdown()
    ex.shutdown = shutdown
    return ex


EXECUTORS = {"local": lambda: LocalExecutor(ctx=CTX), "process": lambda: ProcessExecutor(CTX, workers=2),
             "ray": _ray_executor}


@pytest.fixture(scope="module", params=sorted(EXECUTORS))
def executor(request):  # one of each for the module: starting Ray and worker processes is the slow part
    ex = EXECUTORS[request.param]()
    yield ex
    ex.shutdown()


def _run(ex, specs: list, timeout: float = 180.0) -> list:
    """As the search loop does: at most `capacity` trials in flight, the next submitted as one comes back."""
    todo, results = list(specs), []
    while todo or ex.in_flight():
        while todo and ex.in_flight() < ex.capacity:
            ex.submit(todo.pop(0))
        got = ex.wait(timeout=timeout)
        assert got, f"{ex.name}: nothing came back within {timeout:.0f} s"
        results += got
    return results


def test_every_trial_comes_back_once_and_says_where_it_ran(executor):
    assert executor.capacity >= 1
    results = _run(executor, [TrialSpec(i, (0, 0, i), SMALL_THETA, 4.0, 0.0, 0.5, i) for i in range(3)])
    assert sorted(r.trial_id for r in results) == [0, 1, 2] and executor.in_flight() == 0
    for r in results:
        assert r.status == Status.OK, r.error
        assert 0.0 <= r.val_acc <= 1.0 and r.params > 0 and r.activation_mb > 0
        assert r.extra["threads"] >= 1


def test_a_configurations_failure_is_its_result_and_the_executor_goes_on(executor):
    by_id = {r.trial_id: r for r in _run(executor, [TrialSpec(0, (0, 0, 0), BAD_THETA, 4.0, 0.0, 0.5, 0),
                                                    TrialSpec(1, (0, 0, 1), SMALL_THETA, 4.0, 0.0, 0.5, 1)])}
    assert by_id[0].status == Status.FAILED and by_id[0].error
    assert by_id[1].status == Status.OK


def test_the_same_trial_gives_the_same_result_on_every_executor(executor):
    """Plain data in, plain data out: where a trial runs does not change what it computes (the same network, the
    same steps; the loss to float precision: a lone trial may borrow an idle worker's core, and another thread count
    sums in another order)."""
    spec = TrialSpec(0, (0, 0, 0), SMALL_THETA, 4.0, 0.0, 0.5, 5)
    reference = LocalExecutor(ctx=CTX)
    reference.submit(spec)
    (expected,) = reference.wait()
    (got,) = _run(executor, [spec])
    assert (got.arch_id, got.params, got.steps) == (expected.arch_id, expected.params, expected.steps)
    assert got.train_loss == pytest.approx(expected.train_loss, rel=0.05)
