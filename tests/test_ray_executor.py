"""The ray executor on CPU with one logical GPU: k trials with num_gpus=1/k run at once on the same GPU."""

import pytest

from autokd.recipe import Recipe

ray = pytest.importorskip("ray")

from autokd.hpo.executors import trial_runner  # noqa: E402
from autokd.hpo.trial import TrialContext, TrialSpec  # noqa: E402

THETA = {"G1_nodes": 3, "G1_K": 2, "G1_P": 0.5, "G2_nodes": 3, "G2_P": 0.8, "G3_nodes": 3, "G3_K": 2, "G3_P": 0.3}


@pytest.fixture
def ray_cluster():
    # address="local": a private instance, so a `ray start` cluster on the machine is never joined (or required)
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def test_four_trials_share_one_gpu(ray_cluster):
    ctx = TrialContext("synthetic:1x16x16:3:1600", None, None, 60_000, None, 0.2, 0,
                       recipe=Recipe(batch_size=32, lr=0.05, weight_decay=1e-4))
    ex = trial_runner("ray", ctx, gpus_per_trial=0.25)
    assert ex.capacity == 4 and ex.executor.memory_fraction == 0.25
    for i in range(4):
        ex.submit(TrialSpec.of(i, (0, 0, i), THETA, 4.0, 0.0, 1.0, i))
    results = []
    while ex.in_flight():
        results += ex.wait(timeout=60)
    assert sorted(r.trial_id for r in results) == [0, 1, 2, 3]
    assert all(r.status == "ok" for r in results), [r.error for r in results]
    assert all(r.extra["gpu_ids"] == ["0"] for r in results)  # the same (logical) GPU
    assert len({r.extra["pid"] for r in results}) == 4  # four worker processes
    spans = [(r.extra["started"], r.extra["ended"]) for r in results]
    latest_start, earliest_end = max(s for s, _ in spans), min(e for _, e in spans)
    assert latest_start < earliest_end, "the four trials did not run at the same time"


def test_a_missing_dataset_is_the_environments_failure_not_the_configurations(ray_cluster):
    ctx = TrialContext("no-such-dataset", None, None, 60_000, None, 0.2, 0,
                       recipe=Recipe(batch_size=32, lr=0.05, weight_decay=1e-4))
    ex = trial_runner("ray", ctx, gpus_per_trial=1.0)
    ex.submit(TrialSpec.of(0, (0, 0, 0), THETA, 4.0, 0.0, 1.0, 0))
    (r,) = ex.wait(timeout=120)
    assert r.status == "environment" and "unknown dataset" in r.error
