import torch

from autokd.data.augment import Augment
from autokd.data.dataset import load_dataset, train_val_split
from autokd.data.loader import DeviceLoader
from autokd.kd.cache import CachedTeacher, load_or_build
from autokd.recipe import Recipe
from autokd.kd.teacher import OnTheFlyTeacher, resolve_teacher, save_checkpoint, train_teacher


def test_cached_logits_equal_on_the_fly_logits_for_the_same_views(tmp_path):
    ds = load_dataset("synthetic:1x8x8:3:120")
    ckpt, _ = train_teacher("wrn-40-2", ds, epochs=0.3, smoke=True)
    save_checkpoint(tmp_path / "t.pt", ckpt)
    teacher = resolve_teacher(str(tmp_path / "t.pt"), ds, device="cpu")
    train, _ = train_val_split(ds.train, seed=0)  # a subset: rows are found through the image ids
    aug = Augment(pad=2, flip=True)
    logits, path = load_or_build(teacher, train, aug, ds.info.mean, ds.info.std, torch.device("cpu"), quiet=True)
    assert logits.shape == (len(train), aug.views, 3) and logits.dtype == torch.float16 and path.is_file()
    cached = CachedTeacher(logits, train, train.image_ids(), torch.device("cpu"))
    live = OnTheFlyTeacher(teacher, ds.info.mean, ds.info.std)
    loader = DeviceLoader(train, 16, "cpu", ds.info.mean, ds.info.std, aug, shuffle=True, seed=3)
    checked = 0
    for batch in loader.epoch(1):
        want = live(batch).half().float()  # the cache stores fp16
        assert torch.allclose(cached(batch), want, atol=2e-3, rtol=1e-3)
        checked += len(batch.y)
    assert checked == len(train) and len(set(loader.epoch(1).__next__().view.tolist())) > 1


def test_cache_is_reused_and_invalidated_when_a_key_part_changes(tmp_path):
    ds = load_dataset("synthetic:1x8x8:3:60")
    ckpt, _ = train_teacher("wrn-40-2", ds, epochs=0.2, smoke=True)
    save_checkpoint(tmp_path / "t.pt", ckpt)
    teacher = resolve_teacher(str(tmp_path / "t.pt"), ds, device="cpu")
    cpu = torch.device("cpu")
    _, p1 = load_or_build(teacher, ds.train, Augment(pad=1), ds.info.mean, ds.info.std, cpu, quiet=True)
    mtime = p1.stat().st_mtime_ns
    _, p2 = load_or_build(teacher, ds.train, Augment(pad=1), ds.info.mean, ds.info.std, cpu, quiet=True)
    assert p2 == p1 and p1.stat().st_mtime_ns == mtime  # reused, not recomputed
    _, p3 = load_or_build(teacher, ds.train, Augment(pad=2), ds.info.mean, ds.info.std, cpu, quiet=True)
    assert p3 != p1  # augmentation is part of the key
    ckpt["test_acc"] = 0.0  # another checkpoint file
    save_checkpoint(tmp_path / "t.pt", ckpt)
    other = resolve_teacher(str(tmp_path / "t.pt"), ds, device="cpu")
    _, p4 = load_or_build(other, ds.train, Augment(pad=1), ds.info.mean, ds.info.std, cpu, quiet=True)
    assert p4 != p1
    p4.write_bytes(b"torn")  # a corrupt cache file is rebuilt, not trusted
    logits, p5 = load_or_build(other, ds.train, Augment(pad=1), ds.info.mean, ds.info.std, cpu, quiet=True)
    assert p5 == p4 and logits.shape[0] == len(ds.train)


def test_search_trial_trains_from_the_cache(tmp_path, monkeypatch):
    """Every step's teacher logits come from the cache: a teacher forward would fail the trial, and the cache
    answers once per training step."""
    from autokd.hpo.trial import TrialContext, TrialSpec, run_trial
    from autokd.kd import cache as cache_module
    from autokd.kd import teacher as teacher_module

    def no_forward(self, batch):
        raise AssertionError("a teacher forward during training: the cache was bypassed")

    calls = []
    served = cache_module.CachedTeacher.__call__

    def counting(self, batch):
        calls.append(batch.x.shape[0])
        return served(self, batch)

    monkeypatch.setattr(teacher_module.OnTheFlyTeacher, "__call__", no_forward)
    monkeypatch.setattr(cache_module.CachedTeacher, "__call__", counting)
    ds = load_dataset("synthetic:1x8x8:3:100")
    ckpt, _ = train_teacher("wrn-40-2", ds, epochs=0.2, smoke=True)
    save_checkpoint(tmp_path / "t.pt", ckpt)
    theta = {"G1_nodes": 3, "G1_K": 2, "G1_P": 0.5, "G2_nodes": 3, "G2_P": 0.8, "G3_nodes": 3, "G3_K": 2,
             "G3_P": 0.3}
    ctx = TrialContext("synthetic:1x8x8:3:100", None, str(tmp_path / "t.pt"), 40_000, None, 0.2, 0,
                       recipe=Recipe(batch_size=16, lr=0.05, weight_decay=1e-4), device="cpu", logit_cache=True)
    r = run_trial(TrialSpec.of(0, (0, 0, 0), theta, 4.0, 0.9, 0.5, 0), ctx)
    assert r.status == "ok", r.error
    assert len(calls) == r.steps > 0 and all(n == 16 for n in calls)
