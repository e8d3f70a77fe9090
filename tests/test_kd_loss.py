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
    import autokd.train
    from autokd.hpo.trial import TrialContext, TrialSpec, run_trial
    from autokd.recipe import Recipe
    from autokd.retraining import settings_for
    from autokd.space.genfile import generator_from_json
    from tests.conftest import SMALL_THETA

    seen = {}

    def spy(model, train, val, mean, std, cfg, **kw):
        seen["cfg"] = cfg
        raise RuntimeError("stop after the recipe is known")

    monkeypatch.setattr(autokd.train, "train_and_evaluate", spy)
    ctx = TrialContext("synthetic:1x16x16:3:400", None, None, 60_000, None, 0.2, 0, recipe=Recipe(kd_loss="dist"))
    run_trial(TrialSpec(0, (0, 0, 0), {**SMALL_THETA, "head_channels": 64}, 4.0, 0.5, 1.0, 7, kd_loss="dkd",
                        kd_params={"dkd_beta": 3.0}), ctx)
    assert seen["cfg"].kd_loss == "dkd" and seen["cfg"].dkd_beta == 3.0 and seen["cfg"].dkd_alpha == 1.0
    run_trial(TrialSpec(0, (0, 0, 0), {**SMALL_THETA, "head_channels": 64}, 4.0, 0.5, 1.0, 7), ctx)
    assert seen["cfg"].kd_loss == "dist", "without a searched loss the recipe's stands"

    gen = generator_from_json({"format": "autokd.generator/1", "space": "nago-small-losses",
                               "generator": {**SMALL_THETA, "head_channels": 64},
                               "kd": {"temperature": 3.0, "alpha": 0.7, "loss": "dkd", "dkd_beta": 5.0},
                               "source": {"dataset": "synthetic:1x16x16:3:400"}})
    s = settings_for(gen, {})
    assert (s.kd_loss, s.dkd_beta) == ("dkd", 5.0)
    assert settings_for(gen, {"kd_loss": "hinton"}).kd_loss == "hinton"
