"""The public API: what `autokd.__all__` names resolves, bad input is a UserError (not an exit), and the example in
docs/usage.md ("As a library") runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import autokd

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves_and_nothing_else_is_promised():
    for name in autokd.__all__:
        assert getattr(autokd, name) is not None
    with pytest.raises(AttributeError):
        autokd.run_search  # internal: not part of the API


def test_unknown_or_bad_settings_raise_a_one_line_user_error(tmp_path):
    with pytest.raises(autokd.UserError, match="unknown setting"):
        autokd.search("synthetic:1x8x8:3:200", preset="smoke", learning_rate=0.1, run_dir=tmp_path / "r")
    with pytest.raises(autokd.UserError, match="lr must be"):
        autokd.search("synthetic:1x8x8:3:200", preset="smoke", lr=-1.0, run_dir=tmp_path / "r")
    with pytest.raises(autokd.UserError, match="holds no run"):
        autokd.load_run(tmp_path / "nothing")
    with pytest.raises(autokd.UserError, match="student.pt"):
        autokd.load_student(tmp_path / "missing.pt")
    assert not (tmp_path / "r").exists()


def test_the_usage_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "docs" / "usage.md").read_text()
    section = text[text.index("## As a library"):text.index("## Using the student elsewhere")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/usage.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"\d+ evaluations; best 0\.\d+ at 1 epochs", out) and "test accuracy 0." in out, out
    run = autokd.load_run(tmp_path / "runs" / "library-example")
    assert run.complete and run.best is not None and all(t.status == autokd.Status.OK for t in run.trials)


def _readme_commands() -> list[list[str]]:
    """Every `autokd ...` command in the README's and usage.md's bash blocks, as argv (comments and optional
    `[...]` parts dropped, `&&` chains split)."""
    import shlex

    commands = []
    for doc in (ROOT / "README.md", ROOT / "docs" / "usage.md"):
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in line.split("&&"):
                    part = re.sub(r"\[[^\]]*\]", "", part.split("#")[0]).strip()
                    if part.startswith("autokd "):
                        commands.append(shlex.split(part)[1:])
    return commands


def test_every_command_the_readme_and_usage_quote_parses_with_the_flags_it_names():
    """The quoted commands stay runnable: each parses with the CLI's own parser (a renamed or removed flag, or a
    choice that no longer exists, fails here), and the README's two headline commands are among them."""
    from autokd.cli import build_parser

    commands = _readme_commands()
    assert ["search", "--dataset", "fashion-mnist", "--preset", "cpu"] in commands
    assert any(c[:3] == ["retrain", "--generator", "runs/search/best.json"] for c in commands)
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse's exit on an unknown flag or a bad choice
            raise AssertionError(f"the docs quote `autokd {' '.join(argv)}`, which does not parse") from exc
