"""What a user does after (and around) a search: the winner in best.json and everything that follows it, extending
a search, listing trials, exporting, repeated-run reports, worker processes, the plan."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from autokd.recipe import Recipe
import torch

from autokd.cli import main
from autokd.config import apply_preset
from autokd.hpo.journal import read_journal
from autokd.hpo.run import run_search
from autokd.hpo.trial import TrialContext, TrialResult, TrialSpec
from tests.conftest import SMALL_THETA

SYN = "synthetic:1x8x8:3:400"
TINY = ["--dataset", SYN, "--no-kd", "--preset", "smoke", "--subset", "200", "--min-budget", "0.5",
        "--max-budget", "2", "--executor", "local"]


def fake(spec):
    acc = min(0.95, 0.3 + 0.07 * (spec.config_id[2] % 5) + spec.budget / 10 + 0.01 * spec.config_id[0])
    return TrialResult(spec.trial_id, spec.config_id, spec.budget, "ok", acc, 1 - acc, params=5000 + spec.trial_id,
                       seconds=0.1, extra={"val_images": 100})


def fake_run(run_dir: Path, seed: int = 0, no_kd: bool = True, iterations: int = 3) -> Path:
    settings = apply_preset("smoke", {"dataset": SYN, "no_kd": no_kd, "teacher": None, "seed": seed,
                                      "iterations": iterations, "executor": "local"})
    run_search(settings, run_dir, quiet=True, trial_fn=fake)
    return run_dir


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real (tiny) search with real training, in one process."""
    run_dir = tmp_path_factory.mktemp("real") / "run"
    assert main(["search", *TINY, "--run-dir", str(run_dir), "--quiet"]) == 0
    return run_dir


def test_best_json_names_the_winner_and_sample_evaluate_report_rebuild_it(real_run, capsys, tmp_path):
    best = json.loads((real_run / "best.json").read_text())
    src = best["source"]
    _, events, _ = read_journal(real_run / "journal.jsonl")
    winner = next(e for e in events if e["event"] == "finished" and e["trial_id"] == src["trial_id"])
    assert src["seed"] == winner["seed"] and src["arch_id"] == winner["arch_id"]
    assert src["recipe"]["batch_size"] == 64 and src["recipe"]["budget_epochs"] == src["budget"]
    assert main(["sample", "--generator", str(real_run / "best.json"), "--dataset", SYN, "--json"]) == 0
    sampled = json.loads(capsys.readouterr().out)
    assert sampled["arch_id"] == src["arch_id"] and sampled["seed_from"] == "the search's winner"
    assert main(["export", str(real_run), "--out", str(tmp_path / "x")]) == 0
    exported = json.loads((tmp_path / "x" / "arch.json").read_text())
    assert exported["arch_id"] == src["arch_id"] and "build_student" in (tmp_path / "x" / "README.md").read_text()
    assert main(["report", str(real_run)]) == 0
    text = (real_run / "report" / "report.md").read_text()
    assert f"arch_id {src['arch_id']}" in text and "Which family won" in text and "±" in text


def test_report_states_whether_the_retrained_family_beats_the_baselines(real_run, tmp_path):
    """retrain into RUN/retrain with a baseline, then the report carries the family's test accuracy and the verdict
    sentence of its summary (a no-KD search: the baseline trains without KD too)."""
    assert main(["retrain", "--generator", str(real_run / "best.json"), "--epochs", "0.25", "--samples", "2",
                 "--baselines", "cnn"]) == 0
    summary = json.loads((real_run / "retrain" / "summary.json").read_text())
    assert all(r["kd"] is None for r in summary["per_sample"])
    baseline = json.loads((real_run / "retrain" / "baseline-cnn" / "summary.json").read_text())
    assert all(r["kd"] is None for r in baseline["per_sample"])
    assert main(["report", str(real_run)]) == 0
    text = (real_run / "report" / "report.md").read_text()
    assert "## Retrain: does searching pay?" in text and summary["comparison"]["verdict"] in text
    assert "- cnn: " in text


def test_trials_lists_every_trial_as_table_csv_and_json(real_run, capsys):
    for fmt in ("table", "csv", "json"):
        assert main(["trials", str(real_run), "--format", fmt]) == 0
        out = capsys.readouterr().out
        if fmt == "json":
            rows = json.loads(out)
            assert len(rows) == 14 and {"val_acc", "budget", "G1_nodes", "model_based"} <= set(rows[0])
        elif fmt == "csv":
            assert out.splitlines()[0].startswith("trial_id,status") and len(out.splitlines()) == 15
        else:
            assert len(out.splitlines()) == 15 and "val_acc" in out.splitlines()[0]


def test_journal_keeps_losses_steps_and_history(real_run):
    _, events, _ = read_journal(real_run / "journal.jsonl")
    done = [e for e in events if e["event"] == "finished"]
    assert all(e["train_loss"] is not None and e["val_loss"] is not None and e["steps"] > 0 for e in done)
    assert all(e["history"] and "lr" in e["history"][0] for e in done)


def test_resume_with_more_iterations_extends_a_finished_search(tmp_path):
    run_dir = fake_run(tmp_path / "run", iterations=3)
    n = len([e for e in read_journal(run_dir / "journal.jsonl")[1] if e["event"] == "finished"])
    assert n == 14
    out = run_search(None, run_dir, resume=True, quiet=True, trial_fn=fake, overrides={"iterations": 6})
    events = read_journal(run_dir / "journal.jsonl")[1]
    assert len([e for e in events if e["event"] == "finished"]) == 28 and not out.already_complete
    assert json.loads((run_dir / "run.json").read_text())["settings"]["iterations"] == 6


def test_random_search_and_bohb_runs_report_model_based_proposals(tmp_path):
    settings = apply_preset("smoke", {"dataset": SYN, "no_kd": True, "teacher": None, "iterations": 24,
                                      "optimizer": "random", "min_budget": 30.0, "max_budget": 120.0})
    out = run_search(settings, tmp_path / "r", quiet=True, trial_fn=fake)
    assert out.model_based == 0 and out.proposals == 80


def test_aggregate_report_of_repeated_runs_and_group_comparison(tmp_path):
    kd = [fake_run(tmp_path / f"kd-{s}", seed=s) for s in range(3)]
    base = [fake_run(tmp_path / f"nokd-{s}", seed=s) for s in range(2)]
    for r in kd:  # label the group as KD runs (the fake runs searched the no-KD space)
        run = json.loads((r / "run.json").read_text())
        run["settings"]["no_kd"] = False
        (r / "run.json").write_text(json.dumps(run))
    assert main(["report", *map(str, kd), "--aggregate", "--compare", *map(str, base),
                 "--out", str(tmp_path / "agg")]) == 0
    text = (tmp_path / "agg" / "report.md").read_text()
    assert "3 repeated runs against 2" in text and "mean ± std" in text and "KD" in text and "no KD" in text
    for png in ("accuracy_by_budget.png", "best_so_far.png", "accuracy_vs_params.png"):
        assert (tmp_path / "agg" / png).read_bytes()[:4] == b"\x89PNG"


def test_process_executor_runs_trials_in_parallel_workers_and_survives_a_dead_worker(tmp_path):
    from autokd.hpo.executors import trial_runner

    ctx = TrialContext("synthetic:1x16x16:3:800", None, None, 60_000, None, 0.2, 0,
                       recipe=Recipe(batch_size=32, lr=0.05, weight_decay=1e-4), threads=1)
    ex = trial_runner("process", ctx, workers=2)
    try:
        for i in range(2):
            ex.submit(TrialSpec.of(i, (0, 0, i), SMALL_THETA, 4.0, 0.0, 2.0, i))
        results = []
        while ex.in_flight():
            results += ex.wait(timeout=60)
        assert sorted(r.status for r in results) == ["ok", "ok"]
        # side by side each has one core; the one finishing last may have borrowed the freed core for its end
        assert results[0].extra["threads"] == 1 and results[1].extra["threads"] in (1, 2)
        assert len({r.extra["pid"] for r in results}) == 2
        spans = [(r.extra["started"], r.extra["ended"]) for r in results]
        assert max(s for s, _ in spans) < min(e for _, e in spans), "the two trials did not overlap"
        ex.submit(TrialSpec.of(2, (0, 0, 2), SMALL_THETA, 4.0, 0.0, 8.0, 2))
        time.sleep(3)
        processes = ex.executor  # the ProcessExecutor under the search's view
        (victim,) = [p for i, p in enumerate(processes.workers) if i in processes.running]
        os.kill(victim.pid, signal.SIGKILL)
        (r,) = ex.wait(timeout=60)
        assert r.status == "failed" and "worker process died" in r.error
        ex.submit(TrialSpec.of(3, (0, 0, 3), SMALL_THETA, 4.0, 0.0, 0.5, 3))  # the replacement worker works
        (r,) = ex.wait(timeout=120)
        assert r.status == "ok"
        assert r.extra["threads"] == 2, "a trial running alone borrows the idle worker's core"
    finally:
        ex.shutdown()


def test_same_seed_same_result_in_this_process_and_in_a_worker(tmp_path):
    """The thread count is set per trial, so the local executor and a worker process compute the same thing."""
    from autokd.hpo.executors import trial_runner

    ctx = TrialContext("synthetic:1x16x16:3:400", None, None, 60_000, None, 0.2, 0,
                       recipe=Recipe(batch_size=32, lr=0.05, weight_decay=1e-4), threads=1)
    spec = TrialSpec.of(0, (0, 0, 0), SMALL_THETA, 4.0, 0.0, 1.0, 7)
    local = trial_runner("local", ctx)
    local.submit(spec)
    (a,) = local.wait()
    ex = trial_runner("process", ctx, workers=1)
    try:
        ex.submit(spec)
        (b,) = ex.wait(timeout=120)
    finally:
        ex.shutdown()
    assert a.status == b.status == "ok" and a.val_acc == b.val_acc and a.train_loss == b.train_loss


def test_a_training_seed_changes_the_training_and_not_the_architecture():
    """The paper's protocol trains every budget from scratch with its own seed: same student, other initialisation
    and data order; without `train_seed` the journal's started record is what earlier releases wrote."""
    from autokd.hpo.executors import trial_runner

    ctx = TrialContext("synthetic:1x16x16:3:400", None, None, 60_000, None, 0.2, 0,
                       recipe=Recipe(batch_size=32, lr=0.05, weight_decay=1e-4), threads=1)
    runs = {}
    for train_seed in (None, 7, 8):
        ex = trial_runner("local", ctx)
        ex.submit(TrialSpec.of(0, (0, 0, 0), SMALL_THETA, 4.0, 0.0, 1.0, 7, train_seed=train_seed))
        (runs[train_seed],) = ex.wait()
    assert len({r.arch_id for r in runs.values()}) == 1
    assert runs[None].train_loss == runs[7].train_loss, "train_seed = seed is the default"
    assert runs[8].train_loss != runs[7].train_loss
    assert "train_seed" not in TrialSpec.of(0, (0, 0, 0), SMALL_THETA, 4.0, 0.0, 1.0, 7).to_json()
    assert TrialSpec.of(0, (0, 0, 0), SMALL_THETA, 4.0, 0.0, 1.0, 7, train_seed=3).to_json()["train_seed"] == 3


def test_a_student_over_a_cost_limit_is_rejected_before_training_and_its_costs_are_journaled(tmp_path):
    from autokd.deploy import activation_mb
    from autokd.hpo.executors import trial_runner
    from autokd.nn.student import build_student
    from autokd.space.generator import sample_architecture
    from autokd.space.plan import count_macs

    arch = sample_architecture(SMALL_THETA, 7, (1, 16, 16), 3, 60_000)
    macs = count_macs(arch)
    base = dict(recipe=Recipe(batch_size=32, lr=0.05, weight_decay=1e-4), threads=1)
    runs = {}
    for name, limits in {"free": {}, "macs": {"macs_limit": macs - 1}, "memory": {"memory_limit": 1e-4},
                         "latency": {"latency_limit": 1e-6},
                         "both-met": {"macs_limit": macs, "memory_limit": 100.0, "latency_limit": 1e6}}.items():
        ctx = TrialContext("synthetic:1x16x16:3:400", None, None, 60_000, None, 0.2, 0, **base, **limits)
        ex = trial_runner("local", ctx)
        ex.submit(TrialSpec.of(0, (0, 0, 0), SMALL_THETA, 4.0, 0.0, 1.0, 7))
        (runs[name],) = ex.wait()
    assert runs["free"].status == runs["both-met"].status == "ok"
    assert runs["free"].activation_mb == pytest.approx(
        activation_mb(build_student(arch), (1, 16, 16)), rel=1e-3)
    assert runs["free"].latency_ms is None, "latency is measured only when a limit or the objective asks"
    lat = runs["both-met"].extra["latency"]
    assert runs["both-met"].latency_ms == lat["batch1_ms"] > 0 and lat["batch64_ms"] > lat["batch1_ms"]
    assert lat["runtime"].startswith("onnxruntime") and lat["threads"] == 1
    for name in ("macs", "memory", "latency"):
        r = runs[name]
        assert r.status == "failed" and r.error.startswith("rejected before training") and r.steps is None
        assert r.macs == macs and r.params == runs["free"].params and r.activation_mb > 0
    assert "--macs-limit" in runs["macs"].error and "--memory-limit" in runs["memory"].error
    assert "--latency-limit" in runs["latency"].error
    settings = apply_preset("smoke", {"dataset": SYN, "no_kd": True, "teacher": None, "macs_limit": 123})
    assert TrialContext.from_settings(settings, None, 60_000, None, False, 1).macs_limit == 123


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    assert main(["search", *TINY, "--run-dir", str(tmp_path / "r"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "plan: 3 brackets, 14 evaluations" in err and "projected" in err and not (tmp_path / "r").exists()


def test_a_week_long_cpu_plan_stops_before_any_work_decided_by_the_quick_probe(tmp_path, capsys):
    # far beyond the refusal line, so the probe decides (the full measure, ≈ 12 s here, never runs); a plan near
    # the line is measured in full (next test); the refusal is one check of the plan, whichever measure made it
    rc = main(["search", "--dataset", SYN, "--no-kd", "--param-limit", "4000000", "--iterations", "600",
               "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "projected to take" in err and "(from a quick probe)" in err
    assert "--preset cpu" in err and "--yes" in err
    assert not (tmp_path / "r").exists()


def test_a_plan_near_the_refusal_line_is_measured_in_full(tmp_path, capsys):
    assert main(["search", *TINY, "--run-dir", str(tmp_path / "r"), "--dry-run"]) == 0
    assert "from a quick probe" not in capsys.readouterr().err


def test_interrupted_training_continues_from_its_saved_state(tmp_path):
    from autokd.data.dataset import load_dataset, train_val_split
    from autokd.nn.student import build_student
    from autokd.space.generator import sample_architecture
    from autokd.train import Checkpointing, TrainConfig, train_and_evaluate

    ds = load_dataset("synthetic:1x8x8:3:256")
    train, val = train_val_split(ds.train, seed=0)
    cfg = TrainConfig(epochs=4, batch_size=32, seed=3)
    spec = sample_architecture(SMALL_THETA, 0, (1, 8, 8), 3, 40_000)

    def model():
        torch.manual_seed(0)
        return build_student(spec)

    full = train_and_evaluate(model(), train, val, ds.info.mean, ds.info.std, cfg)
    ck = Checkpointing(tmp_path / "state.pt", "k", every_seconds=0.0)

    class Stop(Exception):
        pass

    def stop_after_two(event):
        if event.get("phase") == "train" and event["epoch"] >= 2.0:
            raise KeyboardInterrupt  # a kill at an epoch end, after the state of epoch 2 was saved

    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(model(), train, val, ds.info.mean, ds.info.std, cfg, progress=stop_after_two,
                           checkpointing=ck)
    assert ck.path.is_file()
    events = []
    resumed = train_and_evaluate(model(), train, val, ds.info.mean, ds.info.std, cfg, checkpointing=ck,
                                 progress=events.append)
    assert resumed.resumed_from_epoch == 2
    # time before the kill still counts, and the ETA's rate comes only from the steps run after the resume
    assert resumed.prior_seconds > 0 and resumed.history[-1]["seconds"] > resumed.prior_seconds
    first = next(e for e in events if e["phase"] == "train")
    remaining = first["steps"] - first["step"]
    done_here = first["step"] - 2 * first["steps"] // cfg.epochs  # steps since the epoch-2 state
    assert first["eta_seconds"] == pytest.approx(first["seconds"] / done_here * remaining, rel=1e-6)
    assert resumed.eval_acc == full.eval_acc and resumed.train_loss == pytest.approx(full.train_loss, rel=1e-5)
    other = Checkpointing(tmp_path / "state.pt", "another recipe", every_seconds=0.0)
    assert train_and_evaluate(model(), train, val, ds.info.mean, ds.info.std, cfg,
                              checkpointing=other).resumed_from_epoch is None


def test_progress_board_prints_plain_lines_in_logs():
    import io

    from autokd.progress import Board

    buf = io.StringIO()
    board = Board(buf, log_every=0.0)
    report = board.reporter("trial 3", "trial 3 cfg (0, 0, 1) @2 ep")
    report({"phase": "train", "step": 10, "steps": 40, "epoch": 0.5, "epochs": 2.0, "train_loss": 1.25,
            "seconds": 5.0, "eta_seconds": 15.0})
    board.line("done")
    board.close()
    lines = buf.getvalue().splitlines()
    assert "epoch 0.50/2, step 10/40, loss 1.2500, 5s elapsed, ~15s left" in lines[0] and lines[1] == "done"


def test_a_run_killed_before_its_seal_is_sealed_on_resume(tmp_path):
    """Every result in the journal but no search_finished (killed in between), best.json stale: resume rewrites
    best.json from the journal and appends the seal, once."""
    run_dir = fake_run(tmp_path / "r")
    journal = run_dir / "journal.jsonl"
    good = json.loads((run_dir / "best.json").read_text())
    lines = [ln for ln in journal.read_text().splitlines() if '"search_finished"' not in ln]
    journal.write_text("\n".join(lines) + "\n")
    stale = {**good, "source": {**good["source"], "trial_id": 0, "val_acc": 0.01}}
    (run_dir / "best.json").write_text(json.dumps(stale))
    outcome = run_search(None, run_dir, resume=True, quiet=True, trial_fn=fake)
    assert outcome.already_complete
    again = json.loads((run_dir / "best.json").read_text())
    assert again["generator"] == good["generator"] and again["kd"] == good["kd"]
    assert {k: again["source"][k] for k in ("trial_id", "val_acc", "config_id", "seed")} == \
        {k: good["source"][k] for k in ("trial_id", "val_acc", "config_id", "seed")}
    _, events, _ = read_journal(journal)
    assert [e["event"] for e in events].count("search_finished") == 1
    run_search(None, run_dir, resume=True, quiet=True, trial_fn=fake)  # sealed now: nothing more appended
    _, events, _ = read_journal(journal)
    assert [e["event"] for e in events].count("search_finished") == 1
