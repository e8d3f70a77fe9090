from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from autokd.kd.loss import kd_loss


def reference_kd(s, t, y, tau, alpha):
    """Independent float64 computation of (1-α)·CE + α·τ²·KL(p_t ‖ p_s), KL summed over classes, mean over batch."""
    s, t = s.double(), t.double()
    log_ps = s - s.logsumexp(1, keepdim=True)
    ce = -log_ps.gather(1, y[:, None]).mean()
    pt = torch.softmax(t / tau, 1)
    log_ps_tau = torch.log_softmax(s / tau, 1)
    kl = (pt * (pt.log() - log_ps_tau)).sum(1).mean()
    return (1 - alpha) * ce + alpha * tau * tau * kl


@pytest.mark.parametrize("tau,alpha", [(1.0, 0.5), (4.0, 0.9), (10.0, 1.0), (2.5, 0.3)])
def test_kd_loss_matches_float64_reference(tau, alpha):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 10, generator=g) * 3, torch.randn(16, 10, generator=g) * 3
    y = torch.randint(0, 10, (16,), generator=g)
    got = kd_loss(s, y, t, tau, alpha)
    assert got.item() == pytest.approx(reference_kd(s, t, y, tau, alpha).item(), rel=1e-5, abs=1e-6)


def test_alpha_zero_is_cross_entropy():
    s, t, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.equal(kd_loss(s, y, t, 4.0, 0.0), F.cross_entropy(s, y))


def test_identical_logits_leave_only_the_ce_term():
    s, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert kd_loss(s, y, s.clone(), 4.0, 0.9).item() == pytest.approx(0.1 * F.cross_entropy(s, y).item(), rel=1e-5)


def test_bf16_logits_are_computed_in_float32():
    s, t, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert kd_loss(s.bfloat16(), y, t.bfloat16(), 4.0, 0.9).dtype == torch.float32


# ---------------------------------------------------------------- named losses: DKD and DIST against their formulas
from autokd.kd.loss import KD_LOSSES, dist, dkd, hinton, loss_params  # noqa: E402


def _logits(b: int = 6, k: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=g) * 2, torch.randn(b, k, generator=g) * 2, torch.randint(0, k, (b,), generator=g)


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_dkd_is_hintons_kl_decoupled_image_by_image(tau):
    """DKD's Eq. (1): KL(p_t ‖ p_s) = TCKD + (1 − p_t[target])·NCKD for each image."""
    s, t, y = _logits()
    for i in range(len(y)):
        si, ti, yi = s[i:i + 1], t[i:i + 1], y[i:i + 1]
        weight = 1.0 - torch.softmax(ti / tau, 1)[0, yi].item()
        assert dkd(si, ti, yi, tau, dkd_alpha=1.0, dkd_beta=weight).item() == pytest.approx(
            hinton(si, ti, yi, tau).item(), rel=1e-4, abs=1e-6)


def test_dkd_matches_its_parts_computed_in_float64():
    s, t, y = _logits(seed=1)
    tau, a, b = 4.0, 1.0, 8.0
    ps, pt = torch.softmax(s.double() / tau, 1), torch.softmax(t.double() / tau, 1)
    tckd = nckd = 0.0
    for i, c in enumerate(y.tolist()):
        bs, bt = torch.tensor([ps[i, c], 1 - ps[i, c]]), torch.tensor([pt[i, c], 1 - pt[i, c]])
        tckd += float((bt * (bt / bs).log()).sum())
        keep = [j for j in range(s.shape[1]) if j != c]
        qs, qt = ps[i, keep] / ps[i, keep].sum(), pt[i, keep] / pt[i, keep].sum()
        nckd += float((qt * (qt / qs).log()).sum())
    want = tau * tau * (a * tckd + b * nckd) / len(y)
    assert dkd(s, t, y, tau, dkd_alpha=a, dkd_beta=b).item() == pytest.approx(want, rel=1e-4)


def test_dist_matches_pearson_correlations_in_float64():
    s, t, y = _logits(b=8, k=6, seed=2)
    tau, beta, gamma = 2.0, 1.0, 2.0
    ps, pt = torch.softmax(s.double() / tau, 1), torch.softmax(t.double() / tau, 1)
    inter = 1 - sum(float(torch.corrcoef(torch.stack([ps[i], pt[i]]))[0, 1]) for i in range(len(y))) / len(y)
    intra = 1 - sum(float(torch.corrcoef(torch.stack([ps[:, j], pt[:, j]]))[0, 1]) for j in range(6)) / 6
    want = tau * tau * (beta * inter + gamma * intra)
    assert dist(s, t, y, tau, dist_beta=beta, dist_gamma=gamma).item() == pytest.approx(want, rel=1e-4)
    assert dist(t, t, y, tau).item() == pytest.approx(0.0, abs=1e-5)  # identical outputs: no relation to learn


@pytest.mark.parametrize("name", ["dkd", "dist"])
def test_named_losses_mix_with_the_hard_term_by_alpha_and_have_gradients(name):
    s, t, y = _logits(seed=3)
    s.requires_grad_(True)
    params = {k: 1.5 for k in loss_params(name)}
    got = kd_loss(s, y, t, 4.0, 0.7, name=name, **params)
    want = 0.3 * F.cross_entropy(s, y) + 0.7 * KD_LOSSES[name](s, t, y, 4.0, **params)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    got.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_every_named_loss_has_its_parameters_declared_as_recipe_settings():
    from autokd.recipe import RECIPE_KEYS, Recipe

    assert set(KD_LOSSES) == set(Recipe.__dataclass_fields__["kd_loss"].metadata["check"].choices)
    for name in KD_LOSSES:
        assert set(loss_params(name)) <= set(RECIPE_KEYS)


def test_a_searched_loss_trains_the_trial_and_the_family_it_wins(monkeypatch):
    """A configuration's searched loss overrides the recipe's in its trial, and a best.json that records one makes
    the retrain use it (flags still override)."""
    import autokd.factory
    from autokd.hpo.trial import TrialContext, TrialSpec, run_trial
    from autokd.recipe import Recipe
    from autokd.retraining import settings_for
    from autokd.space.genfile import generator_from_json
    from tests.conftest import SMALL_THETA

    seen = {}

    def spy(model, train, val, mean, std, cfg, **kw):
        seen["cfg"] = cfg
        raise RuntimeError("stop after the recipe is known")

    monkeypatch.setattr(autokd.factory, "train_and_evaluate", spy)  # what every student trains through
    ctx = TrialContext("synthetic:1x16x16:3:400", None, None, 60_000, None, 0.2, 0, recipe=Recipe(kd_loss="dist"))
    run_trial(TrialSpec.of(0, (0, 0, 0), {**SMALL_THETA, "head_channels": 64}, 4.0, 0.5, 1.0, 7, kd_loss="dkd",
                        kd_params={"dkd_beta": 3.0}), ctx)
    assert seen["cfg"].kd_loss == "dkd" and seen["cfg"].dkd_beta == 3.0 and seen["cfg"].dkd_alpha == 1.0
    run_trial(TrialSpec.of(0, (0, 0, 0), {**SMALL_THETA, "head_channels": 64}, 4.0, 0.5, 1.0, 7), ctx)
    assert seen["cfg"].kd_loss == "dist", "without a searched loss the recipe's stands"

    gen = generator_from_json({"format": "autokd.generator/1", "space": "nago-small-losses",
                               "generator": {**SMALL_THETA, "head_channels": 64},
                               "kd": {"temperature": 3.0, "alpha": 0.7, "loss": "dkd", "dkd_beta": 5.0},
                               "source": {"dataset": "synthetic:1x16x16:3:400"}})
    s = settings_for(gen, {})
    assert (s.kd_loss, s.dkd_beta) == ("dkd", 5.0)
    assert settings_for(gen, {"kd_loss": "hinton"}).kd_loss == "hinton"


# ---------------------------------------------------------------------------------------- attention transfer
def _paper_at(student_maps, teacher_maps, beta):
    """Zagoruyko & Komodakis (ICLR 2017), eq. 2 as their code computes it, in float64: Q = Σ_c A_c² (p = 2) as a
    vector, each divided by its L2 norm; β/2 · Σ_j mean over the batch and positions of the squared difference."""
    total = 0.0
    for s, t in zip(student_maps, teacher_maps):
        qs, qt = s.double().pow(2).sum(1).flatten(1), t.double().pow(2).sum(1).flatten(1)
        qs, qt = qs / qs.norm(dim=1, keepdim=True), qt / qt.norm(dim=1, keepdim=True)
        total += ((qs - qt) ** 2).mean().item()
    return beta / 2 * total


def test_attention_transfer_matches_the_papers_formula_on_small_tensors():
    from autokd.kd.loss import attention_transfer

    g = torch.Generator().manual_seed(0)
    s = [torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 6, 4, 4, generator=g)]
    t = [torch.randn(3, 16, 8, 8, generator=g), torch.randn(3, 32, 4, 4, generator=g)]  # channels may differ
    assert attention_transfer(s, t, at_beta=1000.0).item() == pytest.approx(_paper_at(s, t, 1000.0), rel=1e-5)
    assert attention_transfer(s, t, at_beta=10.0).item() == pytest.approx(_paper_at(s, t, 10.0), rel=1e-5)
    same = [m * 2.0 for m in s]  # a scaled map has the same attention: nothing to learn
    assert attention_transfer(s, [torch.cat([m, m], 1) for m in same]).item() == pytest.approx(0.0, abs=1e-6)


def test_attention_transfer_pairs_from_the_deepest_map_and_pools_to_the_smaller_size():
    from autokd.kd.loss import attention_transfer

    g = torch.Generator().manual_seed(1)
    s = [torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 8, 8, generator=g)]  # the student's 2 groups
    t = [torch.randn(2, 8, 32, 32, generator=g), torch.randn(2, 8, 16, 16, generator=g),
         torch.randn(2, 8, 4, 4, generator=g)]  # the teacher's 3
    pooled = [F.avg_pool2d(s[0].pow(2).mean(1, keepdim=True), 1), F.adaptive_avg_pool2d(s[1].pow(2).mean(1, True), 4)]
    teacher = [t[1].pow(2).mean(1, keepdim=True), t[2].pow(2).mean(1, keepdim=True)]
    # the reference on attention maps already pooled: (16 ↔ 16) and (8 → 4 ↔ 4); sqrt so that Σ_c A² gives them back
    want = _paper_at([p.sqrt() for p in pooled], [q.sqrt() for q in teacher], 1000.0)
    assert attention_transfer(s, t).item() == pytest.approx(want, rel=1e-5)


def test_attention_transfer_mixes_with_the_hard_term_and_sends_gradients_to_the_student():
    from autokd.kd.loss import attention_transfer, feature_kd_loss, needs_features

    assert needs_features("at") and not needs_features("hinton")
    g = torch.Generator().manual_seed(2)
    s = [torch.randn(2, 4, 8, 8, generator=g, requires_grad=True)]
    t = [torch.randn(2, 8, 8, 8, generator=g)]
    hard = torch.tensor(1.5)
    got = feature_kd_loss(s, t, hard, 0.25, at_beta=100.0)
    assert got.item() == pytest.approx(0.75 * 1.5 + 0.25 * attention_transfer(s, t, at_beta=100.0).item(), rel=1e-6)
    got.backward()
    assert s[0].grad is not None and s[0].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="feature maps"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, 3), 4.0, 0.5, name="at")


@pytest.mark.parametrize("name,shape,sizes", [("vgg7", (1, 28, 28), [28, 14, 7]),
                                              ("wrn-40-2", (3, 32, 32), [32, 16, 8]),
                                              ("resnet18", (3, 32, 32), [32, 16, 8, 4]),
                                              ("darts", (3, 32, 32), [32, 16, 8])])
def test_every_built_in_teacher_exposes_one_feature_map_per_resolution(name, shape, sizes):
    from autokd.nn.features import feature_maps
    from autokd.nn.teachers import TEACHERS, build_teacher

    net = build_teacher(name, 10, shape[0], TEACHERS[name].smoke_args).eval()
    x = torch.randn(2, *shape)
    out, maps = feature_maps(net, x)
    assert [m.shape[-1] for m in maps] == sizes and all(m.shape[0] == 2 for m in maps)
    assert torch.equal(out, net(x)), "the usual output comes back too"
    assert not net._forward_hooks and all(not m._forward_hooks for m in net.modules()), "the hooks are removed"


def test_students_expose_their_feature_maps_and_their_forward_is_unchanged():
    from autokd.nn.features import feature_maps
    from autokd.nn.handmade import build_handmade
    from autokd.nn.student import build_student
    from autokd.space.generator import sample_architecture
    from tests.conftest import SMALL_THETA

    x = torch.randn(2, 1, 16, 16)
    student = build_student(sample_architecture(SMALL_THETA, 3, (1, 16, 16), 3, 60_000)).eval()
    out, maps = feature_maps(student, x)
    assert torch.equal(out, student(x)) and maps and all(m.dim() == 4 for m in maps)
    assert len({tuple(m.shape[-2:]) for m in maps}) == len(maps), "one map per resolution"
    for name in ("resnet", "cnn"):
        net, _ = build_handmade(name, (1, 16, 16), 3, 40_000)
        net.eval()
        out, maps = feature_maps(net, x)
        assert torch.equal(out, net(x)) and [m.shape[-1] for m in maps] in ([16, 8, 4], [16, 8, 4])


def test_a_trial_distils_by_attention_transfer_from_a_built_in_teacher(tmp_path):
    """The loss reaches training: the same seed with α > 0 trains differently under `at` than under `hinton`, and
    the logit cache is bypassed (the teacher runs beside every step)."""
    from autokd.data.dataset import load_dataset
    from autokd.hpo.trial import TrialContext, TrialSpec, run_trial
    from autokd.kd.teacher import save_checkpoint, train_teacher
    from autokd.recipe import Recipe
    from tests.conftest import SMALL_THETA

    ds = load_dataset("synthetic:1x16x16:3:300")
    ckpt, _ = train_teacher("vgg7", ds, epochs=0.25, smoke=True)
    save_checkpoint(tmp_path / "t.pt", ckpt)
    runs = {}
    for loss in ("hinton", "at"):
        ctx = TrialContext("synthetic:1x16x16:3:300", None, str(tmp_path / "t.pt"), 60_000, None, 0.2, 0,
                           logit_cache=True, recipe=Recipe(batch_size=32, lr=0.05, kd_loss=loss), threads=1)
        runs[loss] = run_trial(TrialSpec.of(0, (0, 0, 0), SMALL_THETA, 4.0, 0.5, 1.0, 7), ctx)
    assert runs["hinton"].status == runs["at"].status == "ok", runs["at"].error
    assert runs["hinton"].train_loss != runs["at"].train_loss and runs["hinton"].arch_id == runs["at"].arch_id


def test_a_space_file_searches_attention_transfer_with_its_beta_active_only_for_it(tmp_path):
    import ConfigSpace as CS

    from autokd.space.configspace import kd_of, load_space

    text = (Path(__file__).parents[1] / "search_spaces" / "nago-small-losses.yaml").read_text()
    text = text.replace("choices: [hinton, dkd, dist]", "choices: [hinton, dkd, dist, at]")
    text += "  at_beta: {type: float, lower: 100.0, upper: 3000.0, when: at}\n"
    (tmp_path / "s.yaml").write_text(text)
    space = load_space(str(tmp_path / "s.yaml"))
    assert space.loss_choices() == ("hinton", "dkd", "dist", "at")
    cs = space.to_configspace(seed=0)
    assert any(isinstance(c, CS.EqualsCondition) and c.child.name == "at_beta" and c.value == "at"
               for c in cs.conditions)
    assert kd_of({"loss": "at", "at_beta": 500.0, "temperature": 4.0}) == {"kd_loss": "at",
                                                                            "kd_params": {"at_beta": 500.0}}
