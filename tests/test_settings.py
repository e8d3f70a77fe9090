"""Each setting is declared once (autokd.recipe, autokd.config): the flags, the checks, presets, experiment files,
run.json and training all follow from that declaration. Label smoothing, added through the declaration alone, is
followed from the command line to the loss."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch.nn.functional as F

from autokd import train as train_module
from autokd.cli import build_parser, main
from autokd.config import PRESETS, RETRAIN_FIELDS, RETRAIN_PRESETS, SETTING_FIELDS, RetrainSettings, SearchSettings
from autokd.recipe import RECIPE_KEYS, Recipe
from autokd.validate import identity

SYN = "synthetic:1x8x8:3:200"


@pytest.fixture
def smoothing_seen(monkeypatch):
    """The label_smoothing of every training-loss cross entropy (validation's is plain, reduction="sum")."""
    seen: list[float] = []
    real = F.cross_entropy

    def spy(*args, **kwargs):
        if kwargs.get("reduction", "mean") == "mean":
            seen.append(kwargs.get("label_smoothing", 0.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module.F, "cross_entropy", spy)
    return seen


def test_search_and_retrain_share_the_recipe_declarations():
    for key in RECIPE_KEYS:
        assert SETTING_FIELDS[key] is RETRAIN_FIELDS[key]  # one Field object: one declaration
    assert set(RECIPE_KEYS) <= {f.name for f in fields(SearchSettings)} & {f.name for f in fields(RetrainSettings)}


def test_every_flag_is_a_declared_setting_and_presets_only_hold_settings():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for command, table in (("search", SETTING_FIELDS), ("retrain", RETRAIN_FIELDS)):
        names = commands[command].get_default("setting_names")
        assert names and set(names) <= set(table)
        assert "label_smoothing" in names
    for preset in PRESETS.values():
        assert set(preset) <= set(SETTING_FIELDS)
    for preset in RETRAIN_PRESETS.values():
        assert set(preset) <= set(RETRAIN_FIELDS)


def test_every_command_prints_its_help():
    """`--help` formats each help string with %: a declared setting's help such as "95% CI" must not break it."""
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        assert p.format_help()
        for action in p._actions:
            if isinstance(getattr(action, "choices", None), dict):
                stack.extend(action.choices.values())
    with pytest.raises(SystemExit) as done:
        main(["retrain", "--help"])
    assert done.value.code == 0


def _numeric_flags(command: str) -> list[tuple[str, str]]:
    """(flag, a value just outside its declared range) for every numeric setting flag of a command."""
    table = SETTING_FIELDS if command == "search" else RETRAIN_FIELDS
    names = build_parser()._subparsers._group_actions[0].choices[command].get_default("setting_names")
    out = []
    for name in names:
        f = table[name]
        if f.kind not in ("int", "float"):
            continue
        bad = f.max * 2 + 1 if f.max is not None else (f.above if f.above is not None else f.min - 1)
        out.append((f"--{name.replace('_', '-')}", str(int(bad) if f.kind == "int" else bad)))
    return out


@pytest.mark.parametrize("command,flag,value", [("search", *fv) for fv in _numeric_flags("search")]
                         + [("retrain", *fv) for fv in _numeric_flags("retrain")])
def test_a_value_outside_a_declared_range_is_exit_2_and_one_line(command, flag, value, capsys, tmp_path):
    """Every numeric setting flag, present and future, joins the bad-input catalogue through its declaration."""
    target = ["--dataset", SYN, "--run-dir", str(tmp_path / "r")] if command == "search" else \
        ["--student", "cnn", "--dataset", SYN, "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exc:
        main([command, *target, flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and flag in err[0], err
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()


def test_label_smoothing_from_the_command_line_to_run_json_best_json_and_the_loss(tmp_path, smoothing_seen):
    run = tmp_path / "run"
    rc = main(["search", "--dataset", SYN, "--preset", "smoke", "--no-kd", "--min-budget", "1", "--max-budget", "1",
               "--iterations", "1", "--label-smoothing", "0.25", "--run-dir", str(run), "--quiet"])
    assert rc == 0
    assert json.loads((run / "run.json").read_text())["settings"]["label_smoothing"] == 0.25
    assert json.loads((run / "best.json").read_text())["source"]["recipe"]["label_smoothing"] == 0.25
    assert smoothing_seen.count(0.25) >= 2  # the training steps' loss (the closing linear baseline's CE is plain)


def test_label_smoothing_reaches_retrain_and_its_records(tmp_path, smoothing_seen):
    out = tmp_path / "o"
    rc = main(["retrain", "--student", "cnn", "--dataset", SYN, "--param-limit", "5000", "--preset", "smoke",
               "--samples", "1", "--subset", "60", "--epochs", "1", "--no-kd", "--label-smoothing", "0.1",
               "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "sample-00" / "result.json").read_text())
    assert result["identity"]["recipe"]["label_smoothing"] == 0.1
    assert 0.1 in smoothing_seen


def test_a_setting_at_its_neutral_value_is_left_out_of_identities():
    """So that a retrain sample recorded before label smoothing existed still matches (and is not trained again)."""
    assert "label_smoothing" not in identity(Recipe())
    assert identity(Recipe(label_smoothing=0.1))["label_smoothing"] == 0.1


def test_override_order_is_preset_then_experiment_then_flags(tmp_path):
    from autokd.cli import given_settings
    from autokd.config import search_settings

    exp = tmp_path / "e.yaml"
    exp.write_text("preset: cpu\nsearch: {dataset: fashion-mnist, lr: 0.2, label_smoothing: 0.05}\n")
    args = build_parser().parse_args(["search", "--experiment", str(exp), "--lr", "0.3"])
    s = search_settings(given_settings(args, args.setting_names), args.preset, args.experiment)
    assert (s.lr, s.label_smoothing, s.subset, s.preset) == (0.3, 0.05, PRESETS["cpu"]["subset"], "cpu")


def test_every_shipped_experiment_file_loads_with_a_valid_retrain_section():
    """`autokd retrain --experiment NAME` reads a shipped file's retrain: section; a key or value the retrain does not
    know would only fail when a user runs it."""
    from autokd.config import load_experiment, shipped_experiments
    from autokd.validate import check_object

    names = shipped_experiments()
    assert "fashion-mnist" in names
    for name in names:
        check_object(load_experiment(name).get("retrain") or {}, RETRAIN_FIELDS, f"{name}: retrain")


def test_every_choice_list_names_exactly_its_registry():
    """A setting's choices are declared in autokd.config / autokd.recipe (below the registries in the layers), so
    each list is held to the registry it names: adding a proposer, objective, space, loss, optimizer or rung
    training without its choice (or the reverse) fails here."""
    from autokd.config import SETTING_FIELDS
    from autokd.hpo.brackets import PROMOTIONS
    from autokd.hpo.objective import OBJECTIVES
    from autokd.hpo.proposers import PROPOSERS
    from autokd.kd.loss import KD_LOSSES
    from autokd.optim import OPTIMIZERS
    from autokd.resources import resource_dir
    from autokd.rungs import RUNG_TRAININGS
    from autokd.speed import SPEEDS

    shipped = {p.stem for p in resource_dir("search_spaces").glob("*.yaml") if not p.stem.endswith("-nokd")}
    expected = {"optimizer": set(PROPOSERS), "objective": set(OBJECTIVES), "promotion": set(PROMOTIONS),
                "search_space": shipped, "kd_loss": set(KD_LOSSES), "opt": set(OPTIMIZERS),
                "rung_training": set(RUNG_TRAININGS), "speed": set(SPEEDS)}
    for name, registry in expected.items():
        assert set(SETTING_FIELDS[name].choices) == registry, name
