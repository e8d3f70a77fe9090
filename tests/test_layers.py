"""The layer contract in pyproject.toml ([tool.importlinter]): every module imports only layers below its own (cli
at the top, errors at the bottom), checked on the real import graph by import-linter."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_layers_point_down(tmp_path, capsys, monkeypatch):
    cli = pytest.importorskip("importlinter.cli")
    monkeypatch.chdir(ROOT)
    code = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert code == 0, capsys.readouterr().out[-3000:]


def test_the_contract_fails_on_an_upward_import(tmp_path, capsys, monkeypatch):
    """The check can fail: a copy of the package where errors.py imports the CLI breaks it."""
    import shutil

    cli = pytest.importorskip("importlinter.cli")
    shutil.copytree(ROOT / "autokd", tmp_path / "autokd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "autokd" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _upward():\n    import autokd.cli  # noqa: F401\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in list(__import__("sys").modules) if m == "autokd" or m.startswith("autokd.")]:
        monkeypatch.delitem(__import__("sys").modules, name)
    assert cli.lint_imports(config_filename=str(tmp_path / "pyproject.toml"), no_cache=True) == 1
    assert "autokd.errors -> autokd.cli" in capsys.readouterr().out
