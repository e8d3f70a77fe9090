"""The run's append-only journal (`RUN_DIR/journal.jsonl`): a header line, then one event per line.

Every line is flushed and fsynced before the call returns, so a SIGKILL loses at most the line being written; a
torn last line is ignored (and cut off before the next append). Any other unreadable line is a corrupt journal.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from autokd.errors import RunDirError, UserError
from autokd.validate import Field, check_object

JOURNAL_FORMAT = "autokd.journal/1"
# started → finished (ok) | failed (the configuration's failure) | env_failed (the environment's: rerun on resume);
# search_finished marks a completed search (trial_id -1).
EVENTS = ("started", "finished", "failed", "env_failed", "search_finished")

_COMMON = {"event": Field("str", required=True, choices=EVENTS), "trial_id": Field("int", min=-1, required=True),
           "config_id": Field("list", required=True), "budget": Field("float", min=0, required=True),
           "time": Field("float", min=0, required=True)}
_TRIAL = {"theta": Field("dict", required=True), "temperature": Field("float", nullable=True, required=True),
          "alpha": Field("float", min=0, max=1, nullable=True, required=True),
          "seed": Field("int", min=0, required=True)}
EVENT_FIELDS = {
    "started": {**_COMMON, **_TRIAL},
    "finished": {**_COMMON, **_TRIAL, "val_acc": Field("float", min=0, max=1, required=True),
                 "seconds": Field("float", min=0, required=True)},
    "failed": {**_COMMON, **_TRIAL, "error": Field("str", nullable=True)},
    "env_failed": {**_COMMON, **_TRIAL},
    "search_finished": _COMMON,
}


def check_event(obj: object, where: str) -> dict[str, Any]:
    """One journal line against the fields its event kind needs (others are kept as they are)."""
    if not isinstance(obj, dict) or obj.get("event") not in EVENTS:
        raise UserError(f"{where} is not a journal event")
    event = check_object(obj, EVENT_FIELDS[obj["event"]], where, allow_unknown=True)
    cid = event["config_id"]
    if len(cid) != 3 or not all(isinstance(x, int) and not isinstance(x, bool) for x in cid):
        raise UserError(f"{where}: config_id must be three integers")
    return event


def read_journal(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """(header, events, byte length of the complete lines). Raises RunDirError for a corrupt journal."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"{p} not found: this run directory has no journal") from None
    except OSError as exc:
        raise RunDirError(f"{p} cannot be read ({exc.strerror or exc}); fix its permissions") from None
    lines = data.split(b"\n")
    complete = lines[:-1]  # text after the last newline is a torn write (or empty)
    good_len = sum(len(line) + 1 for line in complete)
    header: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    for no, raw in enumerate(complete, start=1):
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise RunDirError(f"{p} line {no} is corrupt (not JSON); restore the file or start a new run "
                              f"directory") from None
        if no == 1:
            if not isinstance(obj, dict) or obj.get("format") != JOURNAL_FORMAT:
                raise RunDirError(f"{p} does not start with an {JOURNAL_FORMAT} header; not an autokd journal")
            header = obj
        else:
            try:
                events.append(check_event(obj, f"{p} line {no}"))
            except UserError as exc:
                raise RunDirError(f"{exc}; restore the file or start a new run directory") from None
    if header is None:
        raise RunDirError(f"{p} is empty or has no header line; start a new run directory")
    return header, events, good_len


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: Any = None

    @classmethod
    def create(cls, path: str | Path, header: dict[str, Any]) -> "Journal":
        j = cls(path)
        with open(j.path, "x") as fh:  # never overwrite an existing journal
            fh.write(json.dumps({"format": JOURNAL_FORMAT, **header}, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return j

    @classmethod
    def resume(cls, path: str | Path) -> tuple["Journal", dict[str, Any], list[dict[str, Any]]]:
        header, events, good_len = read_journal(path)
        j = cls(path)
        if good_len != j.path.stat().st_size:
            with open(j.path, "r+b") as fh:  # drop the torn tail so the next line starts clean
                fh.truncate(good_len)
                fh.flush()
                os.fsync(fh.fileno())
        return j, header, events

    def append(self, event: str, **fields: Any) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown journal event {event}")
        if self._fh is None:
            self._fh = open(self.path, "a")
        line = json.dumps({"event": event, "time": round(time.time(), 3), **fields}, sort_keys=True,
                          allow_nan=False, default=_plain)
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _plain(value: Any) -> Any:
    """numpy scalars and the like, as JSON builtins."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")

