"""The optimizer seam (autokd/optim.py): a second optimizer, AdamW, end to end — flag, run.json, training, retrain."""

import json

import pytest
import torch

from autokd.cli import main
from autokd.optim import OPTIMIZERS, make_optimizer
from autokd.recipe import Recipe
from autokd.train import TrainConfig, parameter_groups
from tests.test_train import small_student


def test_each_registered_optimizer_is_built_with_the_recipes_groups_and_rate():
    model = small_student((1, 8, 8), 3)
    cfg = TrainConfig(epochs=1, lr=0.003, weight_decay=0.01, weight_decay_scope="weights")
    sgd = make_optimizer("sgd", parameter_groups(model, cfg), cfg)
    adamw = make_optimizer("adamw", parameter_groups(model, cfg), cfg)
    assert isinstance(sgd, torch.optim.SGD) and isinstance(adamw, torch.optim.AdamW)
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.01, 0.0] and adamw.param_groups[0]["lr"] == 0.003
    assert set(OPTIMIZERS) >= {"sgd", "adamw"}
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("lion", parameter_groups(model, cfg), cfg)
    assert Recipe().opt == "sgd"


def test_a_search_and_a_retrain_train_with_adamw_when_asked(tmp_path, monkeypatch):
    steps = []
    real_step = torch.optim.AdamW.step

    def counting(self, *a, **k):
        steps.append(1)
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting)
    run = tmp_path / "run"
    assert main(["search", "--dataset", "synthetic:1x8x8:3:200", "--no-kd", "--preset", "smoke", "--iterations", "1",
                 "--opt", "adamw", "--lr", "0.001", "--run-dir", str(run), "--quiet"]) == 0
    assert json.loads((run / "run.json").read_text())["settings"]["opt"] == "adamw"
    searched = len(steps)
    assert searched > 0  # every trial's steps went through AdamW
    assert json.loads((run / "best.json").read_text())["source"]["recipe"]["opt"] == "adamw"
    out = tmp_path / "retrain"
    assert main(["retrain", "--generator", str(run / "best.json"), "--samples", "1", "--epochs", "0.5", "--opt",
                 "adamw", "--lr", "0.001", "--no-int8", "--baselines", "none", "--out", str(out)]) == 0
    result = json.loads((out / "sample-00" / "result.json").read_text())
    assert result["identity"]["recipe"]["opt"] == "adamw" and len(steps) > searched
