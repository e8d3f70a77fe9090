"""Shared fixtures. Tests run on CPU; a GPU test marks itself with @pytest.mark.gpu and skips without CUDA."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

# Two threads unless the caller chose (OMP_NUM_THREADS=1 python -m pytest runs the whole suite single-threaded).
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# Seed of the tests that train on real data and assert an accuracy (AUTOKD_TEST_SEED=3 python -m pytest): their
# margins must hold for any seed, not one lucky trajectory.
TEST_SEED = int(os.environ.get("AUTOKD_TEST_SEED", "0"))

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

DEFAULT_THETA = {"G1_nodes": 6, "G1_K": 4, "G1_P": 0.5, "G2_nodes": 4, "G2_P": 0.6,
                 "G3_nodes": 5, "G3_K": 2, "G3_P": 0.3}
SMALL_THETA = {"G1_nodes": 3, "G1_K": 2, "G1_P": 0.5, "G2_nodes": 3, "G2_P": 0.8,
               "G3_nodes": 3, "G3_K": 2, "G3_P": 0.3}


def assert_same_gradients_and_buffers(ref: torch.nn.Module, other: torch.nn.Module) -> None:
    """Two modules of one state-dict layout after the same training step(s): gradients and buffers agree (float64).
    Conv biases before BatchNorm have zero gradient in exact math: they are compared on the global scale."""
    grad_scale = max(float(p.grad.abs().max()) for p in ref.parameters())
    for (name, p_ref), (_, p_other) in zip(ref.named_parameters(), other.named_parameters()):
        assert torch.allclose(p_ref.grad, p_other.grad, rtol=1e-7, atol=1e-10 * grad_scale), name
    for (name, b_ref), (_, b_other) in zip(ref.named_buffers(), other.named_buffers()):
        assert torch.allclose(b_ref.double(), b_other.double(), rtol=1e-9, atol=1e-12), name


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own autokd cache, so no test reads what another (or the user) wrote."""
    monkeypatch.setenv("AUTOKD_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("AUTOKD_DATA", raising=False)


@pytest.fixture
def generator_file(tmp_path):
    def write(theta=None, **extra):
        path = tmp_path / "gen.json"
        obj = {"format": "autokd.generator/1", "space": "nago", "generator": dict(theta or DEFAULT_THETA)}
        obj.update(extra)
        path.write_text(json.dumps(obj))
        return path
    return write


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
