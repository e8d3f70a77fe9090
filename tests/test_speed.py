"""autokd.speed: the probe that picks a step's layout and compilation changes how a student computes, never what."""

import pytest
import torch

from autokd.data.dataset import load_dataset, train_val_split
from autokd.speed import COMPILE_MIN_STEPS, PROBE_MIN_STEPS, plan_step
from autokd.train import TrainConfig, train_and_evaluate
from tests.test_train import small_student

CPU = torch.device("cpu")


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_auto_probe_leaves_weights_buffers_and_rng_as_they_were_and_picks_a_measured_layout():
    model = small_student((1, 16, 16), 4)
    before, rng = _state(model), torch.get_rng_state()
    run, plan = plan_step(model, (1, 16, 16), 32, 4, CPU, PROBE_MIN_STEPS, "auto")
    assert set(plan.probe_ms) == {"eager", "channels_last"} and not plan.compiled  # below COMPILE_MIN_STEPS
    assert plan.layout == min(plan.probe_ms, key=plan.probe_ms.get).replace("eager", "contiguous")
    assert torch.equal(rng, torch.get_rng_state())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm's running statistics included
    assert all(p.grad is None for p in model.parameters())


def test_short_runs_are_not_probed_and_eager_changes_nothing():
    model = small_student((1, 16, 16), 4)
    run, plan = plan_step(model, (1, 16, 16), 32, 4, CPU, PROBE_MIN_STEPS - 1, "auto")
    assert run is model and plan.probe_ms == {} and plan.layout == "contiguous"
    run, plan = plan_step(model, (1, 16, 16), 32, 4, CPU, 10**6, "eager")
    assert run is model and plan.probe_ms == {} and model.arithmetic == "auto"
    with pytest.raises(ValueError, match="speed must be one of"):
        plan_step(model, (1, 16, 16), 32, 4, CPU, 10, "fast")


def test_a_compiler_that_fails_falls_back_to_the_eager_step_and_says_why(monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", broken)
    model = small_student((1, 16, 16), 4)
    run, plan = plan_step(model, (1, 16, 16), 32, 4, CPU, COMPILE_MIN_STEPS, "auto")
    assert run is model and not plan.compiled and "no C++ compiler" in plan.note
    assert plan.layout == ("channels_last" if plan.probe_ms["channels_last"] < plan.probe_ms["eager"]
                           else "contiguous")


def test_every_speed_trains_the_same_first_step_and_records_its_plan():
    """The loss of a run's first step (forward with dropout, KD-free cross entropy) agrees to fp32 rounding in every
    plan: same arithmetic, and the compiled step draws dropout's mask from torch's generator as the eager one does.
    Later steps drift apart by rounding only (not compared: on random labels at lr 0.1 a few steps amplify it)."""
    ds = load_dataset("synthetic:1x16x16:4:512")
    train, val = train_val_split(ds.train, seed=0)
    results = {}
    for speed in ("eager", "channels_last", "compile"):
        model = small_student((1, 16, 16), 4)
        cfg = TrainConfig(epochs=0.1, batch_size=32, speed=speed, augment_pad=0)
        results[speed] = train_and_evaluate(model, train, val, ds.info.mean, ds.info.std, cfg)
    assert all(r.status == "ok" and r.steps == 1 for r in results.values())
    assert results["channels_last"].speed["layout"] == "channels_last"
    assert results["eager"].speed["layout"] == "contiguous"
    assert results["compile"].speed["compiled"] or results["compile"].speed["note"]
    for speed in ("channels_last", "compile"):
        assert abs(results[speed].train_loss - results["eager"].train_loss) < 1e-4, speed
