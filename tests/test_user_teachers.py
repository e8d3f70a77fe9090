"""A user's own teacher: TorchScript, torch.export, or module:callable + weights, with a sidecar declaring its
classes and normalisation; checked by a forward pass, renormalised on the fly, cached by fingerprint."""

from __future__ import annotations

import json

import pytest
import torch

from autokd.cli import main
from autokd.data.augment import Augment
from autokd.data.dataset import load_dataset
from autokd.kd.cache import load_or_build
from autokd.kd.teacher import OnTheFlyTeacher, resolve_teacher
from autokd.hpo.journal import read_journal
from tests.teacher_zoo import tiny

SYN = "synthetic:1x8x8:3:200"


def sidecar(path, **extra):
    obj = {"num_classes": 3, "mean": [0.2], "std": [0.5], **extra}
    (path.parent / f"{path.name}.json").write_text(json.dumps(obj))


@pytest.fixture
def scripted(tmp_path):
    torch.manual_seed(0)
    net = tiny().eval()
    path = tmp_path / "teacher.ts"
    torch.jit.save(torch.jit.script(net), str(path))
    sidecar(path, test_acc=0.9)
    return path, net


def test_torchscript_teacher_gives_the_models_logits_on_its_own_normalisation(scripted):
    path, net = scripted
    ds = load_dataset(SYN)
    t = resolve_teacher(str(path), ds, device="cpu", check=True)
    assert t.kind == "torchscript" and t.meta["test_acc"] == 0.9
    x01 = torch.rand(4, 1, 8, 8)
    x_dataset = (x01 - ds.info.mean[0]) / ds.info.std[0]  # what the student batch holds
    with torch.no_grad():
        want = net((x01 - 0.2) / 0.5)  # what the teacher was trained on
    got = OnTheFlyTeacher(t, ds.info.mean, ds.info.std).logits(x_dataset)
    assert torch.allclose(got, want, atol=1e-5)


def test_export_program_and_callable_teachers(tmp_path):
    ds = load_dataset(SYN)
    torch.manual_seed(0)
    net = tiny().eval()
    program = torch.export.export(net, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(program, str(tmp_path / "t.pt2"))
    sidecar(tmp_path / "t.pt2")
    t = resolve_teacher(str(tmp_path / "t.pt2"), ds, device="cpu", check=True)
    assert t.kind == "export"
    torch.save(net.state_dict(), tmp_path / "w.pt")
    sidecar(tmp_path / "w.pt")
    c = resolve_teacher("tests.teacher_zoo:tiny", ds, device="cpu", weights=str(tmp_path / "w.pt"), check=True)
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(OnTheFlyTeacher(t, ds.info.mean, ds.info.std).logits(x),
                          OnTheFlyTeacher(c, ds.info.mean, ds.info.std).logits(x), atol=1e-5)


def test_logit_cache_keys_on_the_teachers_fingerprint(scripted, tmp_path):
    path, _ = scripted
    ds = load_dataset(SYN)
    a = resolve_teacher(str(path), ds, device="cpu")
    _, p1 = load_or_build(a, ds.train, Augment(pad=0, flip=True), ds.info.mean, ds.info.std, torch.device("cpu"),
                          quiet=True)
    other = tmp_path / "other.ts"
    torch.manual_seed(1)
    torch.jit.save(torch.jit.script(tiny().eval()), str(other))
    sidecar(other)
    b = resolve_teacher(str(other), ds, device="cpu")
    _, p2 = load_or_build(b, ds.train, Augment(pad=0, flip=True), ds.info.mean, ds.info.std, torch.device("cpu"),
                          quiet=True)
    assert p1 != p2 and a.fingerprint != b.fingerprint


def test_a_search_with_a_torchscript_teacher(scripted, tmp_path):
    path, _ = scripted
    run = tmp_path / "run"
    assert main(["search", "--dataset", SYN, "--teacher", str(path), "--preset", "smoke", "--subset", "100",
                 "--min-budget", "0.5", "--max-budget", "1", "--iterations", "1", "--run-dir", str(run),
                 "--quiet"]) == 0
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["teacher"]["kind"] == "torchscript" and run_json["teacher"]["test_acc"] == 0.9
    _, events, _ = read_journal(run / "journal.jsonl")
    assert all(e["event"] == "finished" for e in events if e["event"] in ("finished", "failed"))
    assert main(["report", str(run)]) == 0
    header = next(line for line in (run / "report" / "report.md").read_text().splitlines() if "| teacher |" in line)
    assert path.name in header  # the user's file, not only "torchscript"


def test_a_search_distils_with_the_kd_loss_named_on_the_command_line(scripted, tmp_path, monkeypatch):
    import functools

    from autokd.kd import loss

    calls = []
    real = loss.KD_LOSSES["dkd"]

    @functools.wraps(real)  # the same signature: its keyword parameters are what the trainer passes
    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setitem(loss.KD_LOSSES, "dkd", spy)
    path, _ = scripted
    run = tmp_path / "run"
    assert main(["search", "--dataset", SYN, "--teacher", str(path), "--preset", "smoke", "--subset", "100",
                 "--min-budget", "1", "--max-budget", "1", "--iterations", "1", "--kd-loss", "dkd", "--dkd-beta",
                 "2", "--run-dir", str(run), "--quiet"]) == 0
    assert calls and all(k == {"dkd_alpha": 1.0, "dkd_beta": 2.0} for k in calls)
    assert json.loads((run / "best.json").read_text())["source"]["recipe"]["kd_loss"] == "dkd"


def test_export_optuna_copies_the_run(tmp_path):
    optuna = pytest.importorskip("optuna")
    from tests.test_workflows import fake_run

    run = fake_run(tmp_path / "run")
    storage = f"sqlite:///{tmp_path / 'run.db'}"
    assert main(["export-optuna", str(run), "--storage", storage]) == 0
    study = optuna.load_study(study_name="autokd-run", storage=storage)
    assert len(study.trials) == 14 and study.best_value > 0.3
    assert {"budget_epochs", "config_id"} <= set(study.trials[0].user_attrs)
    assert main(["export-optuna", str(run), "--storage", storage]) == 2  # the study exists: a clear error


def test_attention_transfer_refuses_a_torchscript_teacher_in_one_line_before_anything_is_written(scripted, tmp_path,
                                                                                                  capsys):
    path, _ = scripted
    run = tmp_path / "run"
    assert main(["search", "--dataset", SYN, "--teacher", str(path), "--preset", "smoke", "--kd-loss", "at",
                 "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # before the plan (and its speed measurement)
    assert "--kd-loss at needs a teacher that exposes its feature maps" in err and "Traceback" not in err
    assert "choose --kd-loss hinton, dkd or dist" in err and not run.exists()
