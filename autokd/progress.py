"""The one progress mechanism for long work: search trials, retrain samples and teacher training.

Producers (the training loop, in this process or in a worker process) call `report(event)` with plain data:
    {"task": "trial 12", "label": "[b2 r0 @1ep] cfg (2,0,1)", "phase": "train" | "eval", "step": 120,
     "steps": 469, "epoch": 0.26, "epochs": 1.0, "train_loss": 1.23, "seconds": 31.0, "eta_seconds": 90.0}
A `Board` in the main process shows them: on a terminal, a live table of running tasks (rich) above the
permanent lines; in a log (not a terminal), one plain line per task at most every `log_every` seconds, plus
every permanent line. Permanent lines (a trial finished, a sample done) go through `Board.line`.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

Report = Callable[[dict[str, Any]], None]


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def describe(event: dict[str, Any]) -> str:
    """One plain line for an event: where it is, its loss, and when it will be done."""
    if event.get("phase") == "eval":
        return f"{event.get('label', event['task'])}: evaluating ({fmt_seconds(event.get('seconds'))} so far)"
    epochs = event.get("epochs") or 0
    loss = event.get("train_loss")
    return (f"{event.get('label', event['task'])}: epoch {event.get('epoch', 0):.2f}/{epochs:g}, step "
            f"{event.get('step', 0)}/{event.get('steps', '?')}"
            + (f", loss {loss:.4f}" if loss is not None else "")
            + f", {fmt_seconds(event.get('seconds'))} elapsed, ~{fmt_seconds(event.get('eta_seconds'))} left")


class Board:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False, live: bool | None = None,
                 log_every: float = 30.0) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.log_every = log_every
        self.tasks: dict[str, dict[str, Any]] = {}
        self.last_logged: dict[str, float] = {}
        self.lock = threading.Lock()
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.live_view = None
        if not quiet and (live if live is not None else is_tty):
            try:
                from rich.console import Console
                from rich.live import Live

                self.console = Console(file=self.stream)
                self.live_view = Live(self._render(), console=self.console, refresh_per_second=2,
                                      transient=True, redirect_stdout=False, redirect_stderr=False)
                self.live_view.start()
            except Exception:  # no usable terminal: plain lines
                self.live_view = None

    # ---------------------------------------------------------------- producers
    def update(self, event: dict[str, Any]) -> None:
        """A progress event of a running task."""
        if self.quiet:
            return
        with self.lock:
            task = str(event["task"])
            self.tasks[task] = event
            if self.live_view is not None:
                self.live_view.update(self._render())
                return
            now = time.monotonic()
            if now - self.last_logged.get(task, 0.0) >= self.log_every:
                self.last_logged[task] = now
                print(describe(event), file=self.stream, flush=True)

    def done(self, task: str) -> None:
        with self.lock:
            self.tasks.pop(str(task), None)
            self.last_logged.pop(str(task), None)
            if self.live_view is not None:
                self.live_view.update(self._render())

    def line(self, text: str, force: bool = False) -> None:
        """A permanent line (printed above the live view on a terminal). `force` prints even when quiet."""
        if self.quiet and not force:
            return
        with self.lock:
            if self.live_view is not None:
                self.live_view.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.live_view is not None:
            self.live_view.stop()
            self.live_view = None

    def reporter(self, task: str, label: str) -> Report:
        """A `report` callable for one task (what train_and_evaluate's `progress` takes)."""
        def report(event: dict[str, Any]) -> None:
            self.update({**event, "task": task, "label": label})
        return report

    # ---------------------------------------------------------------- rendering
    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table(box=None, show_header=bool(self.tasks), pad_edge=False, expand=False)
        for col in ("running", "progress", "epoch", "loss", "elapsed", "left"):
            table.add_column(col, no_wrap=True)
        for event in list(self.tasks.values()):
            steps = max(1, int(event.get("steps") or 1))
            step = int(event.get("step") or 0)
            loss = event.get("train_loss")
            phase = "eval" if event.get("phase") == "eval" else f"{event.get('epoch', 0):.2f}/{event.get('epochs', 0):g}"
            table.add_row(str(event.get("label", event["task"])), ProgressBar(total=steps, completed=step, width=24),
                          phase, f"{loss:.4f}" if loss is not None else "-", fmt_seconds(event.get("seconds")),
                          fmt_seconds(event.get("eta_seconds")))
        return table
