import ConfigSpace as CS
import pytest

from autokd.errors import UserError
from autokd.space.configspace import THETA_KEYS, config_to_plain, load_space
from autokd.space.genfile import generator_from_json, load_generator
from tests.conftest import DEFAULT_THETA


def test_nago_space_has_reference_ranges_and_kd():
    cs = load_space("nago").to_configspace(seed=0)
    hp = {h.name: h for h in cs.values()}
    assert set(hp) == set(THETA_KEYS) | {"temperature", "alpha"}
    assert (hp["G1_nodes"].lower, hp["G1_nodes"].upper) == (3, 10)
    assert (hp["G1_K"].lower, hp["G1_K"].upper) == (2, 5)
    assert (hp["G2_P"].lower, hp["G2_P"].upper) == (0.2, 1.0)
    assert (hp["G3_P"].lower, hp["G3_P"].upper) == (0.1, 1.0)
    assert (hp["temperature"].lower, hp["temperature"].upper) == (1.0, 10.0)
    assert (hp["alpha"].lower, hp["alpha"].upper) == (0.0, 1.0)


def test_nokd_space_fixes_alpha_at_zero_and_has_no_temperature():
    cs = load_space("nago-nokd").to_configspace(seed=0)
    names = {h.name for h in cs.values()}
    assert "temperature" not in names and isinstance(cs["alpha"], CS.Constant) and cs["alpha"].value == 0.0
    assert all(dict(c)["alpha"] == 0.0 for c in cs.sample_configuration(5))


def test_generator_file_defaults_kd_to_tau4_alpha09():
    g = generator_from_json({"generator": DEFAULT_THETA})
    assert g.kd == {"temperature": 4.0, "alpha": 0.9} and g.space == "nago"


@pytest.mark.parametrize("obj,msg", [
    ({"generator": {**DEFAULT_THETA, "G4_nodes": 3}}, "unknown key"),
    ({"generator": {**DEFAULT_THETA, "G1_nodes": 11}}, "outside"),
    ({"generator": {**DEFAULT_THETA, "G1_P": 0.0}}, "outside"),
    ({"generator": {**DEFAULT_THETA, "G2_nodes": 4.5}}, "integer"),
    ({"generator": {k: v for k, v in DEFAULT_THETA.items() if k != "G3_K"}}, "missing"),
    ({"generator": DEFAULT_THETA, "kd": {"temperature": 20}}, "outside"),
    ({"generator": DEFAULT_THETA, "kd": {"beta": 1}}, "unknown key"),
    ({"generator": DEFAULT_THETA, "colour": "red"}, "unknown key"),
    ({"generator": DEFAULT_THETA, "space": "nago-nokd", "kd": {"alpha": 0.5}}, "fixed at 0"),
    ({"kd": {"alpha": 0.5}}, "missing the required"),
    ([1, 2], "JSON object"),
])
def test_bad_generator_objects_are_rejected(obj, msg):
    with pytest.raises(UserError, match=msg):
        generator_from_json(obj)


def test_malformed_json_file(tmp_path):
    p = tmp_path / "g.json"
    p.write_text('{"generator": {')
    with pytest.raises(UserError, match="not valid JSON"):
        load_generator(p)


def test_unknown_space_name():
    with pytest.raises(UserError, match="unknown search space"):
        load_space("darts")


@pytest.mark.parametrize("name,max_nodes", [("nago", 4), ("nago", 3), ("nago-small", None), ("nago-small", 3)])
def test_a_dead_dimension_cannot_change_an_architecture_and_a_live_one_can(name, max_nodes):
    """Two θ that differ only in a dimension found dead draw the same architecture (same seed); changing a live
    one changes some (so the check can fail)."""
    import random

    from autokd.space.generator import sample_architecture

    space = load_space(name).with_max_nodes(max_nodes)
    dead = space.dead_dimensions()
    assert dead
    cs = space.to_configspace(seed=1)
    rng = random.Random(0)
    live_changed = False
    known = {p.name: p for p in space.generator}
    for i in range(12):
        theta = {k: v for k, v in dict(cs.sample_configuration()).items() if k in known}
        theta = {k: (v.item() if hasattr(v, "item") else v) for k, v in theta.items()}
        base = sample_architecture(theta, i, (1, 16, 16), 10, 100_000).arch_id
        for name_ in dead:
            p = known[name_]
            other = rng.randint(int(p.lower), int(p.upper)) if p.type == "int" else rng.uniform(p.lower, p.upper)
            assert sample_architecture({**theta, name_: other}, i, (1, 16, 16), 10, 100_000).arch_id == base
        live = "G2_P" if "G2_P" not in dead else "G1_nodes"
        p = known[live]
        other = p.upper if theta[live] != p.upper else p.lower
        live_changed |= sample_architecture({**theta, live: other}, i, (1, 16, 16), 10, 100_000).arch_id != base
    assert live_changed


def test_a_searched_kd_loss_is_a_categorical_whose_parameters_are_active_only_with_it(tmp_path):
    from autokd.space.configspace import kd_of

    space = load_space("nago-small-losses")
    cs = space.to_configspace(seed=0)
    seen = set()
    for _ in range(60):
        c = config_to_plain(cs.sample_configuration())
        seen.add(c["loss"])
        assert ("dkd_beta" in c) == (c["loss"] == "dkd") and ("dist_gamma" in c) == (c["loss"] == "dist")
        kd = kd_of(c)
        assert kd["kd_loss"] == c["loss"] and set(kd["kd_params"]) <= {"dkd_beta", "dist_gamma"}
    assert seen == {"hinton", "dkd", "dist"}
    assert space.check_kd({"temperature": 3, "alpha": 0.5, "loss": "dkd", "dkd_beta": 4}) == {
        "temperature": 3.0, "alpha": 0.5, "loss": "dkd", "dkd_beta": 4.0}
    for bad, says in (({"loss": "crd"}, "must be one of"), ({"loss": "dist", "dkd_beta": 4}, "belongs to the dkd"),
                      ({"loss": "dkd", "dkd_beta": 99}, "outside"), ({"gamma": 1}, "unknown key")):
        with pytest.raises(UserError, match=says):
            space.check_kd(bad)
    with pytest.raises(UserError, match="unknown key"):
        load_space("nago-small").check_kd({"loss": "dkd"})  # a space that does not search it takes no loss key
    text = (tmp_path / "ok.yaml")
    base = load_space("nago-small")
    gen = "\n".join(f"  {p.name}: {{type: int, lower: {p.lower:g}, upper: {p.upper:g}}}" if p.type == "int" else
                    f"  {p.name}: {{type: {p.type}, lower: {p.lower:g}, upper: {p.upper:g}}}" if p.type == "float"
                    else f"  {p.name}: {{type: constant, value: {p.value:g}}}" for p in base.generator)
    for kd, says in (("  loss: {type: categorical, choices: [hinton, crd]}", "only kd.loss may be categorical"),
                     ("  alpha: {type: categorical, choices: [hinton]}", "only kd.loss may be categorical"),
                     ("  loss: {type: categorical, choices: [hinton, dkd]}\n  dkd_beta: {type: float, lower: 1, "
                      "upper: 9}", "needs `when: dkd`"),
                     ("  loss: {type: categorical, choices: [hinton]}\n  dkd_beta: {type: float, lower: 1, "
                      "upper: 9, when: dkd}", "offers dkd")):
        text.write_text(f"name: x\ngenerator:\n{gen}\nkd:\n{kd}\n")
        with pytest.raises(UserError, match=says):
            load_space(str(text))
