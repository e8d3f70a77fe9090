import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from autokd.cli import main
from autokd.data.dataset import load_dataset
from autokd.kd.teacher import save_checkpoint, train_teacher
from tests.conftest import SMALL_THETA

DATASET = "synthetic:1x8x8:3:300"


@pytest.fixture
def generator_with_source(tmp_path):
    ds = load_dataset(DATASET)
    ckpt, _ = train_teacher("wrn-40-2", ds, epochs=0.25, smoke=True)
    save_checkpoint(tmp_path / "teacher.pt", ckpt)
    gen = {"format": "autokd.generator/1", "space": "nago", "generator": SMALL_THETA,
           "kd": {"temperature": 3.0, "alpha": 0.7}, "param_limit": 40_000,
           "source": {"dataset": DATASET, "teacher": str(tmp_path / "teacher.pt")}}
    (tmp_path / "best.json").write_text(json.dumps(gen))
    return tmp_path / "best.json"


def test_retrain_end_to_end_and_resume(generator_with_source, tmp_path, capsys):
    out = tmp_path / "retrain"
    assert main(["retrain", "--generator", str(generator_with_source), "--samples", "2", "--epochs", "1",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 2 and summary["samples"] == 2
    accs = [r["test_acc"] for r in summary["per_sample"]]
    assert summary["test_acc_mean"] == pytest.approx(np.mean(accs))
    assert summary["test_acc_std"] == pytest.approx(np.std(accs, ddof=1))
    assert summary["teacher"]["arch"] == "wrn-40-2" and summary["teacher"]["params"] > 0
    ids = {r["arch_id"] for r in summary["per_sample"]}
    assert len(ids) == 2  # distinct seeds, distinct architectures
    for i in range(2):
        folder = out / f"sample-{i:02d}"
        assert {p.name for p in folder.iterdir()} >= {"arch.json", "student.pt", "student.onnx", "result.json"}
        r = json.loads((folder / "result.json").read_text())
        assert r["onnx_error"] is None and r["activation_mb_per_image"] > 0 and r["test_images"] == 60
    md = (out / "summary.md").read_text()
    assert "Top-1 test accuracy" in md and "wrn-40-2" in md

    before = (out / "sample-00" / "result.json").stat().st_mtime_ns
    assert main(["retrain", "--generator", str(generator_with_source), "--samples", "3", "--epochs", "1",
                 "--out", str(out)]) == 0
    assert (out / "sample-00" / "result.json").stat().st_mtime_ns == before  # not retrained
    assert json.loads((out / "summary.json").read_text())["samples"] == 3
    assert "already done" in capsys.readouterr().err


def test_onnx_export_matches_torch(generator_with_source, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from autokd.nn.student import build_student
    from autokd.space.spec import load_arch
    out = tmp_path / "r"
    assert main(["retrain", "--generator", str(generator_with_source), "--samples", "1", "--epochs", "0.5",
                 "--out", str(out)]) == 0
    ckpt = torch.load(out / "sample-00" / "student.pt", weights_only=True)
    model = build_student(load_arch(out / "sample-00" / "arch.json"))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    x = torch.rand(3, 1, 8, 8)  # images scaled to [0, 1]: the ONNX graph normalises them itself
    sess = ort.InferenceSession(str(out / "sample-00" / "student.onnx"))
    (got,) = sess.run(None, {"images": x.numpy()})
    mean, std = torch.tensor(ckpt["mean"]).view(1, -1, 1, 1), torch.tensor(ckpt["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        assert np.allclose(got, model((x - mean) / std).numpy(), atol=1e-4)
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["autokd.mean"]) == ckpt["mean"] and json.loads(meta["autokd.std"]) == ckpt["std"]

    # the int8 file beside it: the same network in 8 bits, so its outputs track the fp32 ones and mostly agree on
    # the class, and the record says what it cost (accuracy and latency of both, measured in ONNX Runtime)
    deploy = json.loads((out / "sample-00" / "result.json").read_text())["deploy"]
    # calibration: every training image here (300 < 512)
    assert deploy["int8_file"] == "student.int8.onnx" and deploy["calibration_images"] == 300
    q = ort.InferenceSession(str(out / "sample-00" / deploy["int8_file"]))
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(
        str(out / "sample-00" / deploy["int8_file"])).graph.node)
    x = torch.rand(64, 1, 8, 8).numpy()
    (fp,), (i8,) = sess.run(None, {"images": x}), q.run(None, {"images": x})
    assert np.corrcoef(fp.ravel(), i8.ravel())[0, 1] > 0.9
    assert 0 <= deploy["int8_test_acc"] <= 1 and abs(deploy["fp32_onnx_test_acc"] - ckpt["test_acc"]) < 0.02
    for name in ("fp32", "int8"):
        assert deploy["latency"][name]["batch1_ms"] > 0 and deploy["latency"][name]["batch64_ms"] > 0
    assert deploy["latency"]["runtime"].startswith("onnxruntime")
    md = (out / "summary.md").read_text()
    assert "| int8 − fp32 |" in md and f"{100 * deploy['int8_test_acc']:.2f}%" in md


@pytest.mark.parametrize("case", ["unknown_key", "out_of_range", "missing_dataset"])
def test_bad_generator_or_dataset_is_exit_2(case, generator_with_source, tmp_path):
    obj = json.loads(generator_with_source.read_text())
    if case == "unknown_key":
        obj["generator"]["G5"] = 1
    elif case == "out_of_range":
        obj["kd"]["alpha"] = 1.5
    else:
        obj["source"]["dataset"] = "cifar100"
        obj["source"]["data_dir"] = str(tmp_path / "nowhere")
    generator_with_source.write_text(json.dumps(obj))
    p = subprocess.run([sys.executable, "-m", "autokd.cli", "retrain", "--generator", str(generator_with_source),
                        "--samples", "1", "--epochs", "1", "--out", str(tmp_path / "o")], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()


def test_retrain_reuses_a_sample_only_when_generator_seed_and_recipe_match(generator_with_source, tmp_path, capsys):
    from autokd.nn.student import build_student
    from autokd.space.spec import arch_from_json

    out = tmp_path / "r"
    base = ["retrain", "--generator", str(generator_with_source), "--samples", "1", "--epochs", "0.5", "--out",
            str(out)]
    assert main(base) == 0
    first = json.loads((out / "sample-00" / "result.json").read_text())
    ckpt = torch.load(out / "sample-00" / "student.pt", weights_only=True)
    model = build_student(arch_from_json(ckpt["arch"]))  # the five-line recipe of docs/usage.md
    model.load_state_dict(ckpt["state_dict"])
    assert main(base + ["--lr", "0.02"]) == 0  # another recipe: retrained, not silently reused
    second = json.loads((out / "sample-00" / "result.json").read_text())
    assert second["identity"]["recipe"]["lr"] == 0.02 and first["identity"]["recipe"]["lr"] != 0.02
    assert "already done" not in capsys.readouterr().err
    assert main(base + ["--lr", "0.02"]) == 0  # the same again: reused
    assert "already done" in capsys.readouterr().err


def test_sample_zero_is_the_searchs_winner(generator_with_source, tmp_path):
    obj = json.loads(generator_with_source.read_text())
    obj["source"]["seed"] = 12345
    generator_with_source.write_text(json.dumps(obj))
    out = tmp_path / "w"
    assert main(["retrain", "--generator", str(generator_with_source), "--samples", "2", "--epochs", "0.25",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    seeds = [r["seed"] for r in summary["per_sample"]]
    assert seeds[0] == 12345 and seeds[1] != 12345 and summary["winner_included"]
    assert "winning architecture" in (out / "summary.md").read_text()


@pytest.mark.parametrize("name", ["resnet", "cnn"])
def test_hand_designed_students_fill_the_limit_and_retrain_with_kd(name, generator_with_source, tmp_path):
    """The baselines a searched family must beat: the widest of their shape under the limit, trained and scored
    by the same retrain path (KD from the same teacher)."""
    from autokd.nn.handmade import build_handmade

    model, width = build_handmade(name, (1, 28, 28), 10, 100_000)
    params = sum(p.numel() for p in model.parameters())
    wider, _ = build_handmade(name, (1, 28, 28), 10, 10**7)
    assert params <= 100_000 and width > 1 and sum(p.numel() for p in wider.parameters()) > 100_000
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)

    teacher = json.loads(generator_with_source.read_text())["source"]["teacher"]
    out = tmp_path / name
    assert main(["retrain", "--student", name, "--dataset", DATASET, "--param-limit", "40000", "--teacher", teacher,
                 "--alpha", "0.9", "--temperature", "4", "--samples", "2", "--epochs", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 2 and all(r["params"] <= 40_000 and r["kd"]["alpha"] == 0.9
                                      for r in summary["per_sample"])
    ckpt = torch.load(out / "sample-00" / "student.pt", weights_only=True)
    assert ckpt["arch"]["handmade"] == name


def test_retrain_trains_the_baselines_next_to_the_family_and_compares(generator_with_source, tmp_path, capsys):
    """--baselines: each hand-designed student under the same limit, teacher and recipe, with the standard KD
    setting, in its own folder; the summary states the difference with a CI and the verdict; resume reuses both."""
    out = tmp_path / "retrain"
    args = ["retrain", "--generator", str(generator_with_source), "--samples", "2", "--epochs", "0.5",
            "--baselines", "resnet,cnn", "--workers", "2", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 2 and set(summary["baselines"]) == {"resnet", "cnn"}
    for name in ("resnet", "cnn"):
        b = json.loads((out / f"baseline-{name}" / "summary.json").read_text())
        assert b["student"] == name and b["ok"] == 2
        for r in b["per_sample"]:
            assert r["kd"] == {"temperature": 4.0, "alpha": 0.9}  # standard KD, not the family's τ=3 α=0.7
            assert r["params"] <= 40_000 and r["epochs"] == 0.5
        assert summary["baselines"][name]["test_accs"] == [r["test_acc"] for r in b["per_sample"]]
    family_kd = {r["kd"]["temperature"] for r in summary["per_sample"]}
    assert family_kd == {3.0}
    comparison = summary["comparison"]
    best = max(summary["baselines"], key=lambda n: summary["baselines"][n]["test_acc_mean"])
    assert comparison["best_baseline"] == best
    d = comparison["differences"][best]
    assert d["diff"] == pytest.approx(100 * (summary["test_acc_mean"] - summary["baselines"][best]["test_acc_mean"]))
    assert comparison["verdict"].startswith("The searched family")
    printed = capsys.readouterr()
    assert comparison["verdict"] in printed.out
    assert "Against hand-designed students" in (out / "summary.md").read_text()

    before = (out / "baseline-cnn" / "sample-01" / "result.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "baseline-cnn" / "sample-01" / "result.json").stat().st_mtime_ns == before
    assert "cnn sample 1 already done" in capsys.readouterr().err


def test_ablate_kd_trains_every_architecture_again_without_kd_and_says_whether_it_paid(generator_with_source, tmp_path,
                                                                                       capsys):
    """--ablate-kd: the family and each baseline again with α = 0 (same architectures and seeds) in no-kd/; the
    summary pairs them (paired t), prints the verdict, and the report carries it; a rerun reuses every sample."""
    out = tmp_path / "retrain"
    args = ["retrain", "--generator", str(generator_with_source), "--samples", "2", "--epochs", "0.5",
            "--baselines", "cnn", "--ablate-kd", "--workers", "2", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    for folder, kd_folder in ((out / "no-kd", out), (out / "baseline-cnn" / "no-kd", out / "baseline-cnn")):
        nokd = json.loads((folder / "summary.json").read_text())
        kd = json.loads((kd_folder / "summary.json").read_text())
        assert nokd["ok"] == 2 and nokd["teacher"] is None
        assert [r["arch_id"] for r in nokd["per_sample"]] == [r["arch_id"] for r in kd["per_sample"]]
        assert [r["seed"] for r in nokd["per_sample"]] == [r["seed"] for r in kd["per_sample"]]
        assert all(r["kd"] is None for r in nokd["per_sample"]) and all(r["kd"] for r in kd["per_sample"])
    assert set(summary["baselines"]) == {"cnn"}  # the ablation groups are not baselines
    ablation = summary["kd_ablation"]
    assert set(ablation["groups"]) == {"family", "cnn"} and ablation["pooled"]["n"] == 4
    fam = ablation["groups"]["family"]
    nokd_accs = [r["test_acc"] for r in json.loads((out / "no-kd" / "summary.json").read_text())["per_sample"]]
    assert fam["diff"] == pytest.approx(100 * (summary["test_acc_mean"] - np.mean(nokd_accs)))
    assert ablation["verdict"].startswith("Distillation")
    printed = capsys.readouterr()
    assert ablation["verdict"] in printed.out and "2 without KD" not in printed.err
    assert "Does distillation pay?" in (out / "summary.md").read_text()
    assert main(args) == 0
    assert "sample 1 without KD already done" in capsys.readouterr().err


def test_an_unknown_baseline_is_refused_before_anything_is_written(generator_with_source, tmp_path, capsys):
    out = tmp_path / "retrain"
    assert main(["retrain", "--generator", str(generator_with_source), "--baselines", "resnet,vgg99",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "vgg99" in err and "choose from" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_the_start_line_projects_the_time_from_the_searchs_measured_speed(tmp_path):
    from autokd.config import RetrainSettings
    from autokd.progress import fmt_seconds
    from autokd.retraining import _projection
    from autokd.space.genfile import generator_from_json

    (tmp_path / "run.json").write_text(json.dumps({"plan": {"train_img_s": 1000.0}}))
    gen = generator_from_json({"generator": SMALL_THETA, "source": {"dataset": DATASET, "run_dir": str(tmp_path)}})
    s = RetrainSettings(dataset=DATASET, param_limit=40_000, epochs=2.0)
    # 3 samples, 2 side by side: 2 rounds of 2 epochs × 3,000 images at 1,000 images/s
    assert _projection(gen, s, 3000, todo=3, at_once=2) == f", about {fmt_seconds(12.0)} at the search's measured " \
                                                           "training speed"
    (tmp_path / "run.json").unlink()
    assert _projection(gen, s, 3000, todo=3, at_once=2) == ""  # no run.json: no guess


def test_a_sample_without_kd_has_one_identity_whatever_kd_settings_the_run_carries(tmp_path):
    """The no-KD arm of a `--kd-loss dkd` (or dist, other τ) ablation is the no-KD arm of a hinton one: the KD-only
    settings cannot change a sample trained without a teacher, so they are not part of what it is and its finished
    samples are reused; with KD the loss still tells samples apart."""
    from dataclasses import asdict

    from autokd.config import RetrainSettings
    from autokd.retraining import NO_KD, _groups, sample_identity

    def identities(**kd: object) -> dict[str, dict]:
        s = RetrainSettings(dataset=DATASET, param_limit=40_000, epochs=1.0, student="resnet", teacher="vgg7",
                            alpha=0.9, ablate_kd=True, samples=1, **{"temperature": 4.0, **kd})
        return {group: sample_identity(0, gj, asdict(gs), "fp" if gs.teacher else None)
                for group, gj, gs, _ in _groups(None, s, tmp_path)}

    hinton, dkd = identities(), identities(kd_loss="dkd", dkd_beta=2.0, temperature=2.0)
    no_kd = "family" + NO_KD
    assert set(hinton) == {"family", no_kd}
    assert dkd[no_kd] == hinton[no_kd] and hinton[no_kd]["teacher"] is None
    assert hinton[no_kd]["recipe"]["alpha"] == 0.0 and "kd_loss" not in hinton[no_kd]["recipe"]
    assert dkd["family"] != hinton["family"]


def test_an_experiment_files_preset_is_the_retrains_unless_a_flag_names_one(generator_with_source, tmp_path,
                                                                             monkeypatch):
    """`autokd retrain --experiment fashion-mnist-patient` on a generator with no search run beside it: the file
    was written for the cpu preset, so the retrain starts from the cpu retrain's values (not the paper's 600
    epochs of cutout), then the file's retrain: section; --preset still wins."""
    import autokd.retraining as R
    from autokd.config import RETRAIN_PRESETS

    seen = []
    monkeypatch.setattr(R, "run_retrain", lambda gen, st, folder, board: seen.append(st) or {})
    exp = tmp_path / "e.yaml"
    exp.write_text("preset: cpu\nretrain: {epochs: 2}\n")
    from autokd.api import retrain

    retrain(generator_with_source, experiment=str(exp), out=tmp_path / "r")
    retrain(generator_with_source, experiment=str(exp), out=tmp_path / "r", preset="smoke")
    cpu, smoke = seen
    assert (cpu.epochs, cpu.augment_pad, cpu.cutout, cpu.baselines) == (2.0, 0, 0, RETRAIN_PRESETS["cpu"]["baselines"])
    assert smoke.epochs == 2.0 and smoke.subset == RETRAIN_PRESETS["smoke"]["subset"]


def test_a_hand_designed_students_kd_ablation_is_named_after_it(generator_with_source, tmp_path):
    """`autokd retrain --student cnn --ablate-kd`: its one group is the cnn, and the verdict says so (not 'family')."""
    teacher = json.loads(generator_with_source.read_text())["source"]["teacher"]
    out = tmp_path / "cnn"
    assert main(["retrain", "--student", "cnn", "--dataset", DATASET, "--param-limit", "40000", "--teacher", teacher,
                 "--samples", "2", "--epochs", "0.25", "--ablate-kd", "--no-int8", "--out", str(out)]) == 0
    ablation = json.loads((out / "summary.json").read_text())["kd_ablation"]
    assert set(ablation["groups"]) == {"cnn"} and ablation["groups"]["cnn"]["n"] == 2
    assert "cnn" in ablation["verdict"] and "family" not in ablation["verdict"]
