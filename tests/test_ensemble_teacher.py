"""Several teachers as one (`--teacher a.pt,b.pt`): the members' probabilities averaged, cached like one teacher
with one fingerprint, in search and retrain; members that do not fit the dataset are refused in one line."""

import json
from dataclasses import replace

import pytest
import torch

from autokd.cli import main
from autokd.data.dataset import load_dataset
from autokd.errors import TeacherError
from autokd.kd.teacher import resolve_teacher, save_checkpoint, train_teacher

DATASET = "synthetic:1x8x8:3:300"


@pytest.fixture(scope="module")
def two_teachers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ens")
    ds = load_dataset(DATASET)
    paths = []
    for i, arch in enumerate(("wrn-40-2", "resnet18")):
        torch.manual_seed(i)
        ckpt, _ = train_teacher(arch, ds, epochs=0.25, smoke=True)
        save_checkpoint(tmp / f"t{i}.pt", ckpt)
        paths.append(tmp / f"t{i}.pt")
    return paths


def test_the_ensemble_averages_its_members_probabilities(two_teachers):
    ds = load_dataset(DATASET)
    a, b = (resolve_teacher(str(p), ds) for p in two_teachers)
    ens = resolve_teacher(f"{two_teachers[0]},{two_teachers[1]}", ds, check=True)
    x = (ds.test.images[:16].float() / 255 - torch.tensor(ds.info.mean).view(1, -1, 1, 1)) / \
        torch.tensor(ds.info.std).view(1, -1, 1, 1)

    def probs(t):  # a member sees its own normalisation
        m, s = torch.tensor(t.meta["mean"]).view(1, -1, 1, 1), torch.tensor(t.meta["std"]).view(1, -1, 1, 1)
        xd = x * torch.tensor(ds.info.std).view(1, -1, 1, 1) + torch.tensor(ds.info.mean).view(1, -1, 1, 1)
        with torch.no_grad():
            return torch.softmax(t.module((xd - m) / s), 1)

    with torch.no_grad():
        out = torch.softmax(ens.module(x), 1)
    torch.testing.assert_close(out, (probs(a) + probs(b)) / 2, rtol=1e-4, atol=1e-5)
    assert ens.kind == "ensemble" and ens.fingerprint not in (a.fingerprint, b.fingerprint)
    swapped = resolve_teacher(f"{two_teachers[1]},{two_teachers[0]}", ds)
    assert swapped.fingerprint == ens.fingerprint  # order-free: one cache entry
    assert 0.0 <= ens.meta["test_acc"] <= 1.0 and ens.meta["arch"].startswith("ensemble(")


def test_a_search_and_its_retrain_distil_from_the_ensemble(two_teachers, tmp_path):
    spec = f"{two_teachers[0]},{two_teachers[1]}"
    run = tmp_path / "run"
    assert main(["search", "--dataset", DATASET, "--teacher", spec, "--preset", "smoke", "--iterations", "1",
                 "--run-dir", str(run), "--quiet"]) == 0
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["teacher"]["kind"] == "ensemble" and run_json["teacher_path"].count(",") == 1
    out = tmp_path / "retrain"
    assert main(["retrain", "--generator", str(run / "best.json"), "--samples", "1", "--epochs", "0.5",
                 "--baselines", "none", "--no-int8", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teacher"]["kind"] == "ensemble" and summary["per_sample"][0]["kd"] is not None


def test_a_member_that_does_not_fit_the_dataset_is_refused(two_teachers, tmp_path, capsys):
    other = load_dataset("synthetic:1x8x8:5:300")
    ckpt, _ = train_teacher("wrn-40-2", other, epochs=0.1, smoke=True)
    save_checkpoint(tmp_path / "five.pt", ckpt)
    with pytest.raises(TeacherError, match="predicts 5 classes"):
        resolve_teacher(f"{two_teachers[0]},{tmp_path / 'five.pt'}", load_dataset(DATASET))
    with pytest.raises(TeacherError, match="two or more"):
        resolve_teacher(f"{two_teachers[0]},", load_dataset(DATASET))
    assert main(["search", "--dataset", DATASET, "--teacher", f"{two_teachers[0]},{tmp_path / 'five.pt'}",
                 "--preset", "smoke", "--run-dir", str(tmp_path / "r")]) == 2
    assert "predicts 5 classes" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_shipped_ensemble_is_its_members_spelled_out(two_teachers, tmp_path, monkeypatch):
    """`--teacher NAME` of a shipped ensemble: its SHA-checked member files, averaged as the spelled-out list is (one
    fingerprint, one logit cache); a corrupt member is refused; unknown names list the shipped ones."""
    import shutil

    from autokd.kd import teacher as T

    ds = load_dataset(DATASET)
    name = ds.info.name
    shipped = {}
    for i, src in enumerate(two_teachers):
        dst = tmp_path / f"{name}-m{i}.pt"
        shutil.copy(src, dst)
        shipped[dst.name] = T.file_sha256(dst)
    monkeypatch.setattr(T, "SHIPPED_DIR", tmp_path)
    monkeypatch.setattr(T, "SHIPPED", shipped)
    monkeypatch.setattr(T, "SHIPPED_ENSEMBLES", {name: {"both": T.ShippedEnsemble(("m0", "m1")),
                                                        "both-mirrored": T.ShippedEnsemble(("m0", "m1"), True)}})
    ens = resolve_teacher("both", ds, check=True)
    spelled = resolve_teacher(f"{two_teachers[0]},{two_teachers[1]}", ds)
    assert ens.kind == "ensemble" and ens.fingerprint == spelled.fingerprint and ens.resolvable() == "both"
    mirrored = resolve_teacher("both-mirrored", ds, check=True)
    assert mirrored.fingerprint != ens.fingerprint and mirrored.meta["mirror"] and 0 <= mirrored.meta["test_acc"] <= 1
    x = torch.randn(5, *ds.input_shape)
    with torch.no_grad():  # each member on the image and its mirror: the mean of the plain ensemble's two views
        want = (torch.softmax(ens.module(x), 1) + torch.softmax(ens.module(x.flip(-1)), 1)) / 2
        torch.testing.assert_close(torch.softmax(mirrored.module(x), 1), want, rtol=1e-4, atol=1e-5)
    from autokd.data.augment import Augment
    from autokd.kd.cache import compute_logits

    aug = Augment(pad=1, flip=True)  # 18 views: the cache computes the 9 unflipped ones of a mirrored teacher
    images, stats = ds.train.subset(torch.arange(7)), (ds.info.mean, ds.info.std)
    calls = []
    hook = mirrored.module.register_forward_hook(lambda *_: calls.append(1))
    cached = compute_logits(mirrored, images, aug, *stats, torch.device("cpu"))
    hook.remove()
    assert len(calls) == 9  # one batch of 7 images × the 9 unflipped views: half the teacher's work
    full = compute_logits(replace(mirrored, meta={**mirrored.meta, "mirror": False}), images, aug, *stats,
                          torch.device("cpu"))  # the same module asked for every view
    torch.testing.assert_close(cached.float(), full.float(), rtol=0, atol=2e-3)
    assert not torch.equal(cached[:, 0], cached[:, 1])  # views do differ: the copy is the flip's, not any view's
    assert resolve_teacher("m1", ds).fingerprint == resolve_teacher(str(two_teachers[1]), ds).fingerprint
    with pytest.raises(TeacherError, match="m0, m1, both, both-mirrored"):
        resolve_teacher("nope", ds)
    (tmp_path / f"{name}-m1.pt").write_bytes(b"corrupt")
    with pytest.raises(TeacherError, match="corrupt"):
        resolve_teacher("both", ds)
