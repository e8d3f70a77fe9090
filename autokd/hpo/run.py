"""`autokd search` as a library call: start a new run (or resume one) in its run directory, under its lock, then run
the loop. The parts, one job each: `rundir` (run.json, best.json, the space), `start` (checks, plan, teacher,
resume), `loop` (the ask/submit/wait/tell loop), `summary` (the closing line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TextIO

from autokd.config import SearchSettings
from autokd.progress import Board
from autokd.runlock import RunLock
from autokd.hpo.executors import TrialRunner
from autokd.hpo.loop import SearchLoop, SearchOutcome
from autokd.hpo.start import resume_search, start_search

__all__ = ["run_search", "SearchOutcome"]


def run_search(settings: SearchSettings | None, run_dir: str | Path, resume: bool = False,
               stream: TextIO | None = None, quiet: bool = False, trial_fn: Callable | None = None,
               executor: TrialRunner | None = None, overrides: dict[str, Any] | None = None, dry_run: bool = False,
               yes: bool = False, live: bool | None = None, measure_speed: bool = True) -> SearchOutcome:
    run_dir = Path(run_dir)
    board = Board(stream, quiet=quiet, live=live)
    lock = RunLock(run_dir)
    try:
        if resume:
            prep = resume_search(run_dir, overrides or {}, board, lock)
        else:
            assert settings is not None
            own = trial_fn is None and executor is None  # tests may hand in their own executor or trial function
            maybe = start_search(settings, run_dir, board, lock, dry_run=dry_run, yes=yes,
                                 measure_speed=measure_speed and own, join_cluster=own)
            if maybe is None:
                return SearchOutcome(run_dir)
            prep = maybe
        return SearchLoop(prep, run_dir, board, trial_fn, executor).run_session()
    finally:
        board.close()
        lock.release()
