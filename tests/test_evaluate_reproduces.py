"""`autokd evaluate --generator best.json` reproduces the search's trial: its data, split, recipe, budget, teacher,
architecture seed and KD loss (issue 36), unless a flag overrides a part."""

import json

import pytest

from autokd.cli import main
from autokd.data.dataset import load_dataset
from autokd.kd.teacher import save_checkpoint, train_teacher

DATASET = "synthetic:1x8x8:3:300"


@pytest.fixture(scope="module")
def losses_search(tmp_path_factory):
    """A real smoke search of the space that searches the KD loss, with a tiny trained teacher."""
    tmp = tmp_path_factory.mktemp("losses")
    ckpt, _ = train_teacher("wrn-40-2", load_dataset(DATASET), epochs=0.25, smoke=True)
    save_checkpoint(tmp / "teacher.pt", ckpt)
    run = tmp / "run"
    assert main(["search", "--dataset", DATASET, "--teacher", str(tmp / "teacher.pt"), "--preset", "smoke",
                 "--search-space", "nago-small-losses", "--iterations", "1", "--run-dir", str(run), "--quiet"]) == 0
    return run


def test_evaluate_of_best_json_scores_what_the_trial_scored_with_its_kd_loss(losses_search, capsys):
    best = json.loads((losses_search / "best.json").read_text())
    assert "loss" in best["kd"]  # the searched loss is recorded
    capsys.readouterr()
    assert main(["evaluate", "--generator", str(losses_search / "best.json"), "--json"]) == 0  # no --dataset needed
    out = json.loads(capsys.readouterr().out)
    src = best["source"]
    assert out["status"] == "ok" and out["arch_id"] == src["arch_id"] and out["seed"] == src["seed"]
    assert out["kd_loss"] == best["kd"]["loss"] and out["epochs"] == src["budget"]
    assert out["val_images"] == src["val_images"] and out["recipe_from"] == "the search's best.json"
    # the same training run (same data order, weights and teacher); threads may differ, so rounding may too
    assert out["val_acc"] == pytest.approx(src["val_acc"], abs=0.05)


def test_a_flag_overrides_its_part_of_best_json(losses_search, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--generator", str(losses_search / "best.json"), "--epochs", "0.5", "--lr", "0.01",
                 "--alpha", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["epochs"] == 0.5 and out["kd"] is None and out["teacher"] is None


def test_export_of_a_front_point_keeps_the_kd_loss_it_was_scored_with(losses_search, tmp_path):
    out = tmp_path / "knee"
    assert main(["export", str(losses_search), "--out", str(out), "--pick", "knee"]) == 0
    gen = json.loads((out / "generator.json").read_text())
    trial = gen["source"]["trial_id"]
    started = next(json.loads(line) for line in (losses_search / "journal.jsonl").read_text().splitlines()
                   if '"started"' in line and json.loads(line).get("trial_id") == trial)
    assert gen["kd"]["loss"] == started["kd_loss"]
    assert all(gen["kd"][k] == v for k, v in started["kd_params"].items())
