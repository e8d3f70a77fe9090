"""The wavefront path (ops that read one tensor run as one convolution, one BatchNorm) computes the reference
modules' function: outputs, gradients, running statistics and eval outputs in float64, on random architectures of
every space's node limits (cpu and smoke: ≤ 4 nodes a level; paper: up to 10; autokd's small graphs: 1–2)."""

import numpy as np
import pytest
import torch

from autokd.nn.student import build_student
from autokd.space.generator import sample_architecture
from tests.conftest import assert_same_gradients_and_buffers

# (node range per level, input shape, parameter limit): the spaces' shapes, at limits small enough for float64
CASES = [((3, 4), (1, 10, 10), 100_000), ((3, 4), (3, 12, 12), 60_000), ((5, 6), (3, 4, 4), 100_000),
         ((1, 2), (1, 28, 28), 100_000), ((1, 3), (3, 12, 12), 30_000)]


def _theta(rng, lo, hi):
    return {"G1_nodes": int(rng.integers(3, max(3, hi) + 1)) if hi < 5 else 3, "G1_K": int(rng.integers(2, 6)),
            "G1_P": float(rng.uniform(0.1, 1)), "G2_nodes": int(rng.integers(lo, hi + 1)),
            "G2_P": float(rng.uniform(0.5, 1)), "G3_nodes": int(rng.integers(lo, hi + 1)),
            "G3_K": int(rng.integers(2, 6)), "G3_P": float(rng.uniform(0.1, 1))}


def _pair(spec):
    ref = build_student(spec, arithmetic="reference").double()
    wave = build_student(spec, arithmetic="fused").double()
    wave.load_state_dict(ref.state_dict())
    return ref, wave


@pytest.mark.parametrize("case", range(len(CASES) + 1))
def test_wavefront_matches_the_reference_modules(case):
    (lo, hi), shape, limit = CASES[case % len(CASES)]
    rng = np.random.default_rng(100 + case)
    spec = sample_architecture(_theta(rng, lo, hi), case, shape, 10, limit, head_channels=[1280, 64][case % 2])
    torch.manual_seed(case)
    ref, wave = _pair(spec)
    assert wave.wavefront
    x = torch.randn(6, *shape, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    outs = []
    for model in (ref, wave):
        model.train()
        for _ in range(2):  # two steps: running statistics after more than one update
            torch.manual_seed(1)  # same dropout mask
            model.zero_grad()
            out = model(x)
            torch.nn.functional.cross_entropy(out, y).backward()
        outs.append(out.detach())
    assert torch.allclose(outs[0], outs[1], rtol=1e-9, atol=1e-9)
    assert_same_gradients_and_buffers(ref, wave)
    ref.eval(), wave.eval()
    with torch.no_grad():
        assert torch.allclose(ref(x), wave(x), rtol=1e-9, atol=1e-9)


def test_ops_that_read_one_tensor_become_one_convolution():
    """A cell whose mid graph has two input modules: their input ops all read the cell's input, one convolution."""
    rng = np.random.default_rng(0)
    found = 0
    for seed in range(40):
        spec = sample_architecture(_theta(rng, 3, 4), seed, (1, 28, 28), 10, 100_000)
        model = build_student(spec, arithmetic="fused")
        ops = sum(len(g.ops) for p in model.programs for g in p.groups)
        assert ops == spec.op_count()  # every op in exactly one group
        found += ops - sum(p.convolutions for p in model.programs)
        for prog, cell in zip(model.programs, spec.cells):
            inputs = cell.graph.input_nodes()
            first = next(g for g in prog.groups if g.source == ("x",))
            assert {m for m, _ in first.ops} == set(inputs)  # every input module's input ops read the cell input
    assert found > 0


def test_state_dict_names_are_unchanged_by_the_wavefront_path():
    spec = sample_architecture(_theta(np.random.default_rng(3), 3, 4), 3, (1, 28, 28), 10, 100_000)
    assert list(build_student(spec, "fused").state_dict()) == list(build_student(spec, "reference").state_dict())
