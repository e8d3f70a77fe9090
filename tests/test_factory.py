"""autokd.factory: the one way a student is made and trained — by search trials, retrain samples and evaluate."""

import json
from dataclasses import asdict

import pytest
import torch

import autokd.factory
from autokd.data.dataset import load_dataset
from autokd.factory import Architecture, DataSplit, TeacherSource, fit, prepare
from autokd.kd.teacher import save_checkpoint, train_teacher
from autokd.memo import clear_all
from autokd.recipe import KDConfig, Recipe
from autokd.train import TrainConfig
from tests.conftest import SMALL_THETA

DATA = "synthetic:1x8x8:3:120"
THETA = {**SMALL_THETA, "head_channels": 64}


@pytest.fixture
def teacher_file(tmp_path):
    ckpt, _ = train_teacher("wrn-40-2", load_dataset(DATA), epochs=0.2, smoke=True)
    save_checkpoint(tmp_path / "t.pt", ckpt)
    return str(tmp_path / "t.pt")


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_student_depends_on_its_seed_alone_not_on_what_its_process_built_before(teacher_file):
    """The teacher is made before the student is seeded: a process that already holds the teacher (a search's
    second trial) starts, and draws its dropout masks, exactly as one that builds it."""
    clear_all()
    cfg = TrainConfig.of(Recipe(batch_size=16), 0.5, seed=3)
    args = (Architecture(7, generator=THETA, param_limit=60_000), DATA, DataSplit("validation", 0), cfg)
    kw = {"teacher": TeacherSource(teacher_file), "kd": KDConfig(4.0, 0.5), "device": "cpu"}
    first = prepare(*args, **kw)  # builds the teacher (which draws from torch's generator)
    w0 = _weights(first.model)
    r1 = fit(first)
    assert len(autokd.factory.TEACHERS) == 1
    torch.rand(17)  # whatever the process drew in between
    again = prepare(*args, **kw)  # the memo's teacher: nothing drawn before the seed
    assert all(torch.equal(w0[k], v) for k, v in _weights(again.model).items())
    r2 = fit(again)
    assert r1.status == r2.status == "ok" and r1.train_loss == r2.train_loss and r1.eval_acc == r2.eval_acc
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(),
                                                    again.model.state_dict().values()))


def test_trial_retrain_and_evaluate_make_the_same_student_through_the_factory(tmp_path, teacher_file, monkeypatch):
    """The same architecture and seed reach training with the same initial weights from all three callers, and each
    trains on its own images (validation split for trial and evaluate, the test set for retrain)."""
    from autokd.evaluate import evaluate_one
    from autokd.hpo.trial import TrialContext, TrialSpec, run_trial
    from autokd.progress import Board
    from autokd.retraining import retrain_sample, settings_for
    from autokd.space.genfile import generator_from_json

    seen = []

    def spy(model, train, scored, mean, std, cfg, **kw):
        seen.append({"weights": _weights(model), "scored": len(scored), "kd": kw.get("kd"), "seed": cfg.seed})
        raise RuntimeError("stop before training")

    monkeypatch.setattr(autokd.factory, "train_and_evaluate", spy)
    seed, kd = 11, {"temperature": 3.0, "alpha": 0.6}
    ctx = TrialContext(DATA, None, teacher_file, 60_000, None, 0.1, 0, device="cpu")  # evaluate's default split
    r = run_trial(TrialSpec.of(0, (0, 0, 0), THETA, kd["temperature"], kd["alpha"], 1.0, seed), ctx)
    assert r.status == "failed" and "stop before training" in r.error
    gen_obj = {"format": "autokd.generator/1", "space": "nago-small", "generator": THETA, "kd": kd,
               "param_limit": 60_000, "source": {"dataset": DATA, "seed": seed, "teacher": teacher_file}}
    (tmp_path / "best.json").write_text(json.dumps(gen_obj))
    s = settings_for(generator_from_json(gen_obj), {"epochs": 1.0, "device": "cpu"})
    with pytest.raises(RuntimeError, match="stop before training"):
        retrain_sample(0, gen_obj, asdict(s), str(tmp_path / "retrain"))
    with pytest.raises(RuntimeError, match="stop before training"):
        evaluate_one(None, Board(quiet=True), generator=str(tmp_path / "best.json"), device="cpu")
    assert len(seen) == 3
    trial, retrain, evaluate = seen
    for other in (retrain, evaluate):
        assert other["weights"].keys() == trial["weights"].keys()
        assert all(torch.equal(trial["weights"][k], v) for k, v in other["weights"].items())
        assert other["kd"] == KDConfig(**kd)
    ds = load_dataset(DATA)
    assert retrain["scored"] == len(ds.test) and trial["scored"] == evaluate["scored"] == round(0.1 * len(ds.train))
