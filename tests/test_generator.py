import json

import pytest
import torch

from autokd.errors import InvalidGenerator
from autokd.nn.student import build_student
from autokd.space.configspace import THETA_KEYS, load_space
from autokd.space.generator import sample_architecture, widest_width
from autokd.space.plan import count_macs, count_parameters
from autokd.space.spec import arch_from_json
from tests.conftest import DEFAULT_THETA, SMALL_THETA

CIFAR, FASHION = ((3, 32, 32), 100), ((1, 28, 28), 10)


def random_thetas(n, seed):
    cs = load_space("nago").to_configspace(seed=seed)
    return [{k: v.item() if hasattr(v, "item") else v for k, v in dict(c).items() if k in THETA_KEYS}
            for c in cs.sample_configuration(n)]


def real_param_count(spec):
    # on the CPU, not the meta device: under `torch.device("meta")` every op goes through a function mode, and a
    # 4M-parameter student took 2.5 s to build there against 0.14 s for real (16 MB)
    module = build_student(spec)
    return sum(p.numel() for p in module.parameters())


def test_same_theta_and_seed_give_byte_identical_json():
    a = sample_architecture(DEFAULT_THETA, 7, *CIFAR)
    b = sample_architecture(dict(reversed(list(DEFAULT_THETA.items()))), 7, *CIFAR)
    assert a.dumps() == b.dumps()


def test_different_seeds_give_different_architectures():
    ids = {sample_architecture(DEFAULT_THETA, s, *CIFAR).arch_id for s in range(5)}
    assert len(ids) == 5


def test_sub_graphs_are_drawn_independently():
    spec = sample_architecture(DEFAULT_THETA, 3, *CIFAR)
    cells = {json.dumps([c.graph.to_json()] + [m.to_json() for m in c.modules]) for c in spec.cells}
    assert len(cells) > 1  # upstream Vega reuses seeds, making every cell identical


@pytest.mark.parametrize("shape,classes", [CIFAR, FASHION])
def test_param_limit_holds_and_width_is_widest_for_200_random_thetas(shape, classes):
    limit = 4_000_000
    counts, invalid = [], 0
    for i, theta in enumerate(random_thetas(200, seed=11)):
        try:
            spec = sample_architecture(theta, i, shape, classes, limit)
        except InvalidGenerator as exc:
            invalid += 1
            assert "disconnected" in str(exc) or "limit" in str(exc)
            continue
        params = count_parameters(spec)
        assert params <= limit
        wider = type(spec)(spec.input_shape, spec.num_classes, spec.width + 1, spec.top, spec.stages, spec.cells)
        assert count_parameters(wider) > limit, "a wider network would still fit: width is not the widest"
        counts.append(params)
        if i % 10 == 0:  # the analytic count is the real module's count
            assert real_param_count(spec) == params
    assert len(counts) >= 150, f"too many invalid generators: {invalid}"
    assert min(counts) > 0.5 * limit  # the width search uses the budget


def test_small_limit_that_cannot_fit_is_a_typed_error():
    with pytest.raises(InvalidGenerator, match="even width 1"):
        sample_architecture(DEFAULT_THETA, 0, *CIFAR, param_limit=5_000)


def test_forward_backward_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    done = 0
    for i, theta in enumerate(random_thetas(40, seed=5)):
        try:
            spec = sample_architecture(theta, i, (3, 16, 16), 5, param_limit=60_000)
        except InvalidGenerator:
            continue
        model = build_student(spec)
        out = model(torch.randn(4, 3, 16, 16))
        assert out.shape == (4, 5) and torch.isfinite(out).all()
        out.logsumexp(1).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, f"no gradient for {missing[:5]}"
        done += 1
        if done == 20:
            break
    assert done == 20


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 224, 224), (3, 20, 36)])
def test_any_input_shape_and_class_count(shape):
    spec = sample_architecture(SMALL_THETA, 1, shape, 7, param_limit=200_000)
    model = build_student(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 7)


def test_large_images_downsample_in_the_stem():
    spec = sample_architecture(SMALL_THETA, 1, (3, 224, 224), 67, param_limit=6_000_000)
    assert spec.stage_sizes == ((56, 56), (28, 28), (14, 14))
    assert sample_architecture(SMALL_THETA, 1, *CIFAR).stage_sizes == ((32, 32), (16, 16), (8, 8))


def test_macs_match_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode
    spec = sample_architecture(DEFAULT_THETA, 2, *CIFAR, param_limit=300_000)
    model = build_student(spec, arithmetic="reference").eval()  # the plain ops the analytic count describes
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert fc.get_total_flops() == 2 * count_macs(spec)


def test_json_round_trip_rebuilds_the_same_module():
    spec = sample_architecture(DEFAULT_THETA, 4, *FASHION, param_limit=500_000)
    again = arch_from_json(json.loads(spec.dumps()))
    assert again == spec and again.arch_id == spec.arch_id and again.dumps() == spec.dumps()
    a, b = build_student(spec).state_dict(), build_student(again).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}


def test_edited_architecture_file_is_rejected():
    from autokd.errors import UserError
    obj = json.loads(sample_architecture(DEFAULT_THETA, 4, *FASHION).dumps())
    obj["width"] += 1
    with pytest.raises(UserError, match="arch_id"):
        arch_from_json(obj)


def test_widest_width_is_monotone_in_the_limit():
    spec = sample_architecture(DEFAULT_THETA, 0, *CIFAR)
    widths = [widest_width(spec, lim) for lim in (200_000, 1_000_000, 4_000_000, 16_000_000)]
    assert widths == sorted(widths) and widths[0] < widths[-1]


def test_the_small_space_samples_valid_wide_students_and_its_head_is_in_the_architecture():
    """nago-small (the cpu preset's): every draw builds under 100k parameters, 1- and 2-node graphs included; the
    head width travels in θ into the architecture file, and the paper space's ids are unchanged by the field."""
    from autokd.nn.student import build_student
    from autokd.space.configspace import config_to_plain, load_space, theta_of
    from autokd.space.spec import arch_from_json

    space = load_space("nago-small")
    cs = space.to_configspace(seed=5)
    widths = []
    for i, cfg in enumerate(cs.sample_configuration(30)):
        theta = space.check_theta(theta_of(config_to_plain(cfg)))
        spec = sample_architecture(theta, i, (1, 28, 28), 10, 100_000)
        assert spec.head_channels == theta["head_channels"]
        assert count_parameters(spec) <= 100_000
        widths.append(spec.width)
        again = arch_from_json(json.loads(spec.dumps()))
        assert again == spec and again.arch_id == spec.arch_id
    assert max(widths) >= 14  # members as wide as a hand-designed ResNet-8 at this limit exist
    spec = sample_architecture(theta, 0, (1, 28, 28), 10, 100_000)
    model = build_student(spec)
    assert model.head[1].out_channels == theta["head_channels"]
    assert sum(p.numel() for p in model.parameters()) == count_parameters(spec)
    paper = sample_architecture(DEFAULT_THETA, 0, (3, 32, 32), 10, 400_000)
    assert "head_channels" not in json.dumps(paper.structure_json())
    assert paper.structure_json()["head"] == {"channels": 1280, "dropout": 0.2}
