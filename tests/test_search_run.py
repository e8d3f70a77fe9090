"""Search runs: run directory, journal, resume after SIGKILL, bad input, end to end on real data."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autokd.recipe import Recipe

from autokd.cli import main
from autokd.config import apply_preset
from autokd.hpo.journal import read_journal
from autokd.hpo.run import run_search
from autokd.space.genfile import load_generator
from tests.conftest import FASHION_DIR, TEST_SEED

TINY = ["--dataset", "synthetic:1x8x8:3:400", "--no-kd", "--preset", "smoke", "--subset", "200",
        "--min-budget", "0.5", "--max-budget", "2", "--executor", "local"]


def results_of(run_dir):
    _, events, _ = read_journal(Path(run_dir) / "journal.jsonl")
    return events, [e for e in events if e["event"] in ("finished", "failed")]


def test_complete_tiny_search_writes_the_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["search", *TINY, "--run-dir", str(run_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished"] + summary["failed"] == 14
    assert {p.name for p in run_dir.iterdir()} >= {"run.json", "space.json", "journal.jsonl", "best.json"}
    run = json.loads((run_dir / "run.json").read_text())
    assert run["settings"]["no_kd"] and run["space"] == "nago-nokd" and "torch" in run["versions"]
    json.loads((run_dir / "space.json").read_text())
    gen = load_generator(run_dir / "best.json")  # a valid generator file
    events, results = results_of(run_dir)
    ok = [e for e in results if e["event"] == "finished"]
    top = max(ok, key=lambda e: (e["budget"], e["val_acc"]))
    assert gen.source["budget"] == 2.0 and gen.source["val_acc"] == top["val_acc"] and gen.kd["alpha"] == 0.0


def test_sigkill_then_resume_reruns_only_unfinished_trials(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "autokd.cli", "search", *TINY, "--run-dir", str(run_dir),
                             "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    journal = run_dir / "journal.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if journal.exists() and journal.read_text().count('"event": "finished"') >= 5:
            break
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(journal, "a") as fh:  # a torn last line, as a kill during a write leaves it
        fh.write('{"event": "finished", "trial_id": 9')
    _, before = results_of(run_dir)
    done_before = {(tuple(e["config_id"]), e["budget"]) for e in before}
    assert 5 <= len(done_before) < 14
    size_before = journal.stat().st_size

    outcome = run_search(None, run_dir, resume=True, quiet=True)
    assert outcome.replayed == len(before)
    events, after = results_of(run_dir)
    pairs = [(tuple(e["config_id"]), e["budget"]) for e in after]
    assert len(pairs) == len(set(pairs)) == 14  # every evaluation exactly once, none lost, none repeated
    new_started = [(tuple(e["config_id"]), e["budget"]) for e in events[len(events) - 2 * (14 - len(before)):]
                   if e["event"] == "started"]
    assert not set(new_started) & done_before
    assert journal.stat().st_size > size_before - 40  # only the torn fragment was cut
    load_generator(run_dir / "best.json")


def test_resume_of_a_finished_run_runs_nothing(tmp_path):
    run_dir = tmp_path / "run"
    assert main(["search", *TINY, "--run-dir", str(run_dir), "--quiet"]) == 0
    n = len(read_journal(run_dir / "journal.jsonl")[1])
    assert main(["search", "--run-dir", str(run_dir), "--resume", "--quiet"]) == 0
    assert len(read_journal(run_dir / "journal.jsonl")[1]) == n


@pytest.mark.parametrize("case", ["unknown_dataset", "unknown_teacher", "budget_order", "eta", "holds_run",
                                  "corrupt_journal", "resume_nothing", "unwritable", "missing_teacher_ckpt"])
def test_bad_input_is_one_line_exit_2_and_nothing_is_damaged(case, tmp_path, capsys):
    """In this process (the real-process path is tests/test_bad_inputs.py's): a process per case cost ≈ 4 s."""
    run_dir = tmp_path / "run"
    args = ["search", *TINY, "--run-dir", run_dir]
    protected = None
    if case == "unknown_dataset":
        args[2] = "imagenet-21k"
    elif case == "unknown_teacher":
        args = ["search", "--dataset", "synthetic", "--teacher", "gpt-5", "--run-dir", run_dir]
    elif case == "missing_teacher_ckpt":
        args = ["search", "--dataset", "synthetic", "--teacher", tmp_path / "none.pt", "--run-dir", run_dir]
    elif case == "budget_order":
        args += ["--min-budget", "9"]
    elif case == "eta":
        args += ["--eta", "1"]
    elif case == "holds_run":
        run_dir.mkdir()
        (run_dir / "run.json").write_text('{"format": "autokd.run/1"}')
        protected = run_dir / "run.json"
    elif case == "corrupt_journal":
        assert main(["search", *TINY, "--run-dir", str(run_dir), "--quiet", "--iterations", "1"]) == 0
        lines = (run_dir / "journal.jsonl").read_text().splitlines(keepends=True)
        lines[2] = "{garbage\n"
        (run_dir / "journal.jsonl").write_text("".join(lines))
        protected = run_dir / "journal.jsonl"
        args = ["search", "--run-dir", run_dir, "--resume"]
    elif case == "resume_nothing":
        args = ["search", "--run-dir", run_dir, "--resume"]
    elif case == "unwritable":
        if os.geteuid() == 0:
            args[args.index(run_dir)] = Path("/proc/autokd-run")  # even root cannot create this
        else:
            run_dir.mkdir(mode=0o500)
    before = protected.read_bytes() if protected else None
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own refusals
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    if protected:
        assert protected.read_bytes() == before


def test_failures_are_journaled_and_the_search_goes_on(tmp_path):
    from autokd.hpo.trial import TrialResult

    def flaky(spec, ctx=None):
        if spec.config_id[2] == 1:
            return TrialResult(spec.trial_id, spec.config_id, spec.budget, "failed", error="CUDA out of memory")
        return TrialResult(spec.trial_id, spec.config_id, spec.budget, "ok", 0.5 + spec.budget / 10,
                           0.5 - spec.budget / 10)

    settings = apply_preset("smoke", {"dataset": "synthetic:1x8x8:3:100", "no_kd": True, "teacher": None,
                                      "executor": "local"})
    outcome = run_search(settings, tmp_path / "run", quiet=True, trial_fn=flaky)
    _, results = results_of(tmp_path / "run")
    failed = [e for e in results if e["event"] == "failed"]
    assert failed and all(e["error"] == "CUDA out of memory" and e["config_id"][2] == 1 for e in failed)
    assert outcome.failed == len(failed) and outcome.finished == len(results) - len(failed)


def test_invalid_generator_is_a_failed_trial_not_a_crash():
    from autokd.hpo.trial import TrialContext, TrialSpec, run_trial
    theta = {"G1_nodes": 3, "G1_K": 2, "G1_P": 0.5, "G2_nodes": 3, "G2_P": 0.5, "G3_nodes": 3, "G3_K": 2,
             "G3_P": 0.5}
    ctx = TrialContext("synthetic:1x8x8:3:100", None, None, 2_000, 50, 0.2, 0,
                       recipe=Recipe(batch_size=16, lr=0.05, weight_decay=1e-4))
    r = run_trial(TrialSpec.of(0, (0, 0, 0), theta, 4.0, 0.0, 0.5, 0), ctx)
    assert r.status == "failed" and "InvalidGenerator" in r.error and "limit" in r.error


@pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="dataset-fashion-mnist")
def test_end_to_end_kd_search_on_real_fashion_mnist(tmp_path):
    from autokd.data.dataset import load_dataset
    from autokd.kd.teacher import save_checkpoint, train_teacher

    ds = load_dataset("fashion-mnist")
    ckpt, result = train_teacher("wrn-40-2", ds, epochs=0.3, smoke=True, seed=TEST_SEED)
    assert result.eval_acc > 0.3  # a real (if brief) teacher
    save_checkpoint(tmp_path / "teacher.pt", ckpt)
    run_dir = tmp_path / "run"
    assert main(["search", "--dataset", "fashion-mnist", "--teacher", str(tmp_path / "teacher.pt"), "--preset",
                 "smoke", "--subset", "300", "--min-budget", "0.5", "--max-budget", "1", "--iterations", "2",
                 "--param-limit", "60000", "--run-dir", str(run_dir), "--quiet"]) == 0
    gen = load_generator(run_dir / "best.json")
    _, results = results_of(run_dir)
    assert len(results) == 3 + 2  # budgets 0.5/1: bracket s=1 is 2@0.5 → 1@1, bracket s=0 is 2@1
    assert all(e["alpha"] > 0 and e["event"] == "finished" for e in results)
    top = max((e for e in results if e["budget"] == 1.0), key=lambda e: e["val_acc"])
    assert gen.source["dataset"] == "fashion-mnist" and gen.source["val_acc"] == top["val_acc"]
    assert gen.kd == {"temperature": top["temperature"], "alpha": top["alpha"]}


def test_continued_rungs_start_from_the_lower_trunk_and_leave_no_state_behind(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["search", *TINY, "--lr-schedule", "wsd", "--rung-training", "continue", "--promotion", "async",
                 "--run-dir", str(run_dir), "--quiet"]) == 0
    header, events, _ = read_journal(run_dir / "journal.jsonl")
    assert header["rung_training"] == "continue" and header["promotion"] == "async"
    done = [e for e in events if e["event"] == "finished"]
    started = {e["trial_id"]: e for e in events if e["event"] == "started"}
    promoted = [e for e in done if started[e["trial_id"]].get("continue_from") is not None]
    assert promoted and all(e["extra"].get("continued_from_step") for e in promoted)
    # it continued the trunk (80% of the lower budget's steps), it did not retrain them
    low = {(tuple(e["config_id"]), e["budget"]): e for e in done}
    for e in promoted:
        below = low[(tuple(e["config_id"]), started[e["trial_id"]]["continue_from"])]
        assert e["extra"]["continued_from_step"] == min(round(0.8 * below["steps"]), below["steps"] - 1)
    assert not list((run_dir / "states").glob("*.pt"))  # every bracket complete: its trunks deleted


def test_a_programming_error_in_a_trial_stops_the_search_with_exit_1_and_a_log(tmp_path, capsys, monkeypatch):
    """Told to the optimizer, a bug would read as a run of bad configurations; it stops the search instead, with
    the log's path, and the journal keeps what finished (a --resume after the fix continues)."""
    from autokd.cli import main
    from autokd.hpo import trial

    def broken(*_args, **_kwargs):  # a bug inside a trial (after the plan, which builds students too, has passed)
        raise TypeError("over_limits() got an unexpected keyword argument 'width'")

    monkeypatch.setattr(trial, "over_limits", broken)
    run = tmp_path / "run"
    rc = main(["search", "--dataset", "synthetic:1x8x8:3:200", "--no-kd", "--preset", "smoke", "--iterations", "1",
               "--run-dir", str(run), "--quiet"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the plan's lines: one line naming the log
    assert rc == 1 and "TypeError" in last and "internal error" in last and ".log" in last
    assert (run / "journal.jsonl").is_file()


def test_a_users_space_file_is_searched_recorded_and_not_needed_afterwards(tmp_path, capsys):
    """--search-space my.yaml: the run searches that file's space (a dimension the built-in one searches fixed
    here), run.json and best.json carry its definition, and resume, report and sample work after the file is gone."""
    from autokd.resources import resource_dir

    text = (resource_dir("search_spaces") / "nago-small.yaml").read_text()
    assert "head_channels: {type: int, lower: 64, upper: 512}" in text
    text = text.replace("name: nago-small", "name: my-narrow").replace(
        "head_channels: {type: int, lower: 64, upper: 512}", "head_channels: {type: constant, value: 96}")
    space_file = tmp_path / "my-space.yaml"
    space_file.write_text(text)
    run_dir = tmp_path / "run"
    assert main(["search", *TINY, "--search-space", str(space_file), "--run-dir", str(run_dir), "--quiet"]) == 0
    run = json.loads((run_dir / "run.json").read_text())
    assert run["space"] == "my-narrow-nokd" and run["space_definition"]["generator"]["head_channels"]["value"] == 96
    assert run["space_definition"]["kd"] == {"alpha": {"type": "constant", "value": 0.0}}  # --no-kd
    assert run["space_definition"]["name"] == run["space"]
    gen = load_generator(run_dir / "best.json")
    assert gen.generator["head_channels"] == 96 and gen.space == "my-narrow-nokd" and gen.space_definition
    space_file.unlink()
    n = len(read_journal(run_dir / "journal.jsonl")[1])
    assert main(["search", "--run-dir", str(run_dir), "--resume", "--quiet"]) == 0
    assert len(read_journal(run_dir / "journal.jsonl")[1]) == n
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    assert main(["sample", "--generator", str(run_dir / "best.json"), "--dataset", "synthetic:1x8x8:3:400",
                 "--out", str(tmp_path / "arch.json")]) == 0
    capsys.readouterr()
    assert main(["search", *TINY, "--search-space", str(space_file), "--run-dir", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "my-space.yaml" in err[0] and "Traceback" not in err[0]


def test_a_prescreened_search_journals_each_choice_and_resumes(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["search", *TINY, "--prescreen", "params", "--prescreen-pool", "3", "--run-dir", str(run_dir)]
    assert main(argv) == 0
    events, results = results_of(run_dir)
    started = [e for e in events if e["event"] == "started"]
    assert started and all(e["proposal"]["prescreen_pool"] == 3 for e in started)
    assert {e["proposal"]["prescreen_score"] for e in started} <= {r.get("params") for r in results}
    assert json.loads((run_dir / "run.json").read_text())["settings"]["prescreen"] == "params"
    said = capsys.readouterr()
    assert "the most parameters of 3 proposals" in said.out + said.err  # the plan's first line
    assert main(["report", str(run_dir)]) == 0
    assert "pre-screen: the most params of 3 proposals" in (run_dir / "report" / "report.md").read_text()
    capsys.readouterr()
    assert main(["search", "--resume", "--run-dir", str(run_dir)]) == 0  # a finished run: nothing runs again
    assert len(results_of(run_dir)[1]) == len(results)
