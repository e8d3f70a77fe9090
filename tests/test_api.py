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
