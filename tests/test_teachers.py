
import pytest
import torch

from autokd.cli import main
from autokd.data.dataset import load_dataset
from autokd.errors import TeacherError
from autokd.kd.teacher import (OnTheFlyTeacher, load_checkpoint, resolve_teacher, save_checkpoint,
                               teacher_cache_path, train_teacher)
from autokd.nn.darts import DartsNetwork
from autokd.nn.teachers import TEACHERS, build_teacher


def params_without_aux(model):
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("auxiliary"))


@pytest.mark.parametrize("classes,expected", [(10, 3.349e6), (100, 3.401e6)])
def test_darts_parameter_count_matches_the_paper(classes, expected):
    assert abs(params_without_aux(DartsNetwork(classes)) - expected) / expected < 0.01


def test_darts_has_20_cells_with_reductions_at_6_and_13_and_aux_in_training():
    net = DartsNetwork(10)
    assert len(net.cells) == 20
    reductions = [i for i, c in enumerate(net.cells) if isinstance(c.ops[0], torch.nn.MaxPool2d)]
    assert reductions == [6, 13]
    small = DartsNetwork(10, C=4, layers=5).train()
    out = small(torch.randn(2, 3, 32, 32))
    assert isinstance(out, tuple) and out[0].shape == out[1].shape == (2, 10)
    assert small.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", list(TEACHERS))
def test_every_teacher_runs_on_grey_and_colour_inputs(name):
    for shape in ((1, 28, 28), (3, 32, 32)):
        net = build_teacher(name, 7, shape[0], TEACHERS[name].smoke_args).eval()
        assert net(torch.randn(2, *shape)).shape == (2, 7)


def test_resnet18_and_wrn_sizes():
    assert 11.1e6 < sum(p.numel() for p in build_teacher("resnet18", 10, 3, {"width": 64}).parameters()) < 11.3e6
    assert 2.2e6 < sum(p.numel() for p in build_teacher("wrn-40-2", 100, 3, {"depth": 40, "widen": 2}).parameters()) < 2.3e6


def test_checkpoint_round_trip_and_refusal_of_a_mismatch(tmp_path):
    ds = load_dataset("synthetic:1x8x8:3:128")
    ckpt, result = train_teacher("wrn-40-2", ds, epochs=0.25, smoke=True)
    assert result.status == "ok" and 0.0 <= ckpt["test_acc"] <= 1.0
    path = tmp_path / "t.pt"
    save_checkpoint(path, ckpt)
    t = resolve_teacher(str(path), ds, device="cpu")
    assert t.meta["arch"] == "wrn-40-2" and t.meta["num_classes"] == 3
    logits = OnTheFlyTeacher(t, ds.info.mean, ds.info.std)(
        type("B", (), {"x": torch.zeros(4, 1, 8, 8)})())
    assert logits.shape == (4, 3) and logits.dtype == torch.float32
    other = load_dataset("synthetic:1x8x8:5:128")
    with pytest.raises(TeacherError, match="predicts 3 classes"):
        resolve_teacher(str(path), other, device="cpu")
    wrong_shape = load_dataset("synthetic:3x8x8:3:128")
    with pytest.raises(TeacherError, match="takes inputs"):
        resolve_teacher(str(path), wrong_shape, device="cpu")


def test_corrupt_or_foreign_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(TeacherError, match="cannot be read"):
        load_checkpoint(bad)
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(TeacherError, match="not an autokd teacher"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_named_teacher_is_trained_once_and_cached():
    ds = load_dataset("synthetic:1x8x8:3:64")
    path = teacher_cache_path(ds.info.name, "resnet18", smoke=True)
    assert not path.exists()
    t1 = resolve_teacher("resnet18", ds, smoke=True, device="cpu", quiet=True)
    assert path.exists()
    mtime = path.stat().st_mtime_ns
    t2 = resolve_teacher("resnet18", ds, smoke=True, device="cpu", quiet=True)
    assert path.stat().st_mtime_ns == mtime and t1.meta["created"] == t2.meta["created"]


def test_teacher_cli_train_and_list(tmp_path, capsys):
    out = tmp_path / "w.pt"
    assert main(["teacher", "train", "--arch", "wrn-40-2", "--dataset", "synthetic:1x8x8:3:64", "--epochs",
                 "0.5", "--preset", "smoke", "--out", str(out)]) == 0
    assert load_checkpoint(out)["epochs"] == 0.5
    assert main(["teacher", "list"]) == 0
    text = capsys.readouterr().out
    assert "darts" in text and "wrn-40-2" in text
    assert main(["teacher", "train", "--arch", "vgg", "--dataset", "synthetic"]) == 2


def test_teacher_training_resumes_after_a_kill_and_leaves_no_state_behind(tmp_path, monkeypatch, capsys):
    """A long teacher (issue 34's ≥ 95% one: hours on 2 cores) must survive a stop: the state saved at an epoch end
    is picked up by the same command, and removed once the checkpoint is written."""
    import autokd.train as train_mod
    from autokd.kd.teacher import state_path_of

    out = tmp_path / "t.pt"
    argv = ["teacher", "train", "--arch", "vgg7", "--dataset", "synthetic:1x8x8:3:64", "--epochs", "3",
            "--preset", "smoke", "--out", str(out)]
    real = train_mod._save_state

    def save_then_stop(path, key, model, opt, sched, epoch, *rest):
        real(path, key, model, opt, sched, epoch, *rest)
        if epoch == 2:
            raise KeyboardInterrupt  # killed right after the state of epoch 2 was written

    monkeypatch.setattr(train_mod, "_save_state", save_then_stop)
    monkeypatch.setattr("autokd.kd.teacher.STATE_EVERY_SECONDS", 0.0)
    assert main(argv) == 130
    assert state_path_of(out).is_file() and not out.exists()
    assert "resumes from" in capsys.readouterr().err
    monkeypatch.setattr(train_mod, "_save_state", real)
    assert main(argv) == 0
    assert "resumed at epoch 2" in capsys.readouterr().out
    assert load_checkpoint(out)["epochs"] == 3 and not state_path_of(out).exists()
    assert load_checkpoint(out)["precision"] == "auto"
    bf16 = tmp_path / "bf16.pt"
    assert main([*argv[:-1], str(bf16), "--precision", "bf16", "--epochs", "1"]) == 0
    assert load_checkpoint(bf16)["precision"] == "bf16" and load_checkpoint(bf16)["test_acc"] is not None
