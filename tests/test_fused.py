"""The fused (CPU) arithmetic computes the same function as the plain modules: outputs, gradients, running
statistics and eval outputs agree on random architectures, and both paths share one state dict."""

import copy

import numpy as np
import pytest
import torch

from autokd.nn.fused import head_features
from autokd.nn.student import build_student
from autokd.space.configspace import load_space
from autokd.space.generator import sample_architecture
from tests.conftest import assert_same_gradients_and_buffers


def random_theta(rng: np.random.Generator, max_nodes: int) -> dict:
    space = load_space("nago").with_max_nodes(max_nodes)
    theta = {}
    for p in space.generator:
        theta[p.name] = int(rng.integers(p.lower, p.upper + 1)) if p.type == "int" else float(
            rng.uniform(max(p.lower, 0.5), p.upper))
    return theta


def _pair(spec):
    ref = build_student(spec, arithmetic="reference")
    fused = build_student(spec, arithmetic="fused")
    fused.load_state_dict(ref.state_dict())
    return ref, fused


@pytest.mark.parametrize("case", range(6))
def test_fused_student_matches_the_reference_modules(case):
    """In float64, so that a difference is a difference of the math, not of float32 rounding (BatchNorm's backward
    cancels large terms: in float32 both paths are several % off float64 on some gate gradients, equally)."""
    rng = np.random.default_rng(case)
    shape = [(1, 28, 28), (3, 32, 32), (3, 20, 24)][case % 3]
    spec = sample_architecture(random_theta(rng, 5), case, shape, 10, param_limit=60_000)
    torch.manual_seed(case)
    ref, fused = _pair(spec)
    ref.double(), fused.double()
    x = torch.randn(16, *shape, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    for model in (ref, fused):
        model.train()
        torch.manual_seed(1)  # same dropout mask
        torch.nn.functional.cross_entropy(model(x), y).backward()
    torch.manual_seed(1)
    out_ref = ref(x)
    torch.manual_seed(1)
    out_fused = fused(x)
    assert torch.allclose(out_ref, out_fused, rtol=1e-9, atol=1e-9)
    assert_same_gradients_and_buffers(ref, fused)
    ref.eval(), fused.eval()
    with torch.no_grad():
        assert torch.allclose(ref(x), fused(x), rtol=1e-9, atol=1e-9)
        # and in float32, the precision training runs at, the outputs agree to float32 rounding
        ref.float(), fused.float()
        assert torch.allclose(ref(x.float()), fused(x.float()), rtol=1e-4, atol=1e-4)
    assert list(ref.state_dict()) == list(fused.state_dict())


def test_auto_arithmetic_is_fused_on_cpu_and_reference_elsewhere():
    spec = sample_architecture(random_theta(np.random.default_rng(0), 3), 0, (1, 28, 28), 10, 40_000)
    model = build_student(spec)
    assert model.uses_fused(torch.zeros(1, device="cpu"))
    assert not model.uses_fused(torch.zeros(1, device="meta"))
    assert not build_student(spec, arithmetic="reference").uses_fused(torch.zeros(1))


def test_head_matches_with_momentum_none_and_without_affine():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 40, 1, bias=False)
    for bn in (torch.nn.BatchNorm2d(40, momentum=None), torch.nn.BatchNorm2d(40, affine=False)):
        plain_bn = copy.deepcopy(bn)
        plain = torch.nn.Sequential(torch.nn.ReLU(), conv, plain_bn, torch.nn.ReLU(),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        for _ in range(3):
            x = torch.randn(8, 6, 5, 7) + 0.3
            assert torch.allclose(plain(x), head_features(x, conv, bn), rtol=1e-4, atol=1e-5)
        assert torch.allclose(plain_bn.running_var, bn.running_var, rtol=1e-5)
        assert int(plain_bn.num_batches_tracked) == int(bn.num_batches_tracked) == 3


def test_autocast_keeps_the_classifier_in_fp32():
    spec = sample_architecture(random_theta(np.random.default_rng(1), 3), 1, (1, 28, 28), 10, 40_000)
    model = build_student(spec)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(4, 1, 28, 28))
    assert out.dtype == torch.float32
    out.sum().backward()  # the fused head's backward under autocast
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
