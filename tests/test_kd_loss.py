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
