"""Files: the one atomic writer every writer of results uses, and the one careful JSON reader for input files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from autokd.errors import UserError

MAX_JSON_BYTES = 64 * 2**20  # no file autokd writes comes near this; a bigger one is not ours


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some filesystems cannot open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: str | bytes, mode: int | None = None) -> None:
    """Write `data` so readers see either the old or the new file, never a torn one: a temporary file in the same
    folder, fsynced, renamed over the target, and the folder fsynced so the rename survives a power cut.

    The file gets the mode a plain `open()` would give it (0666 minus the umask), not mkstemp's 0600, so results
    stay readable to the group on a shared cluster."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(p.parent)


def write_json(path: str | Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON input file; every way it can be unusable (missing, a folder, unreadable, not UTF-8, not JSON,
    too large or too deep) is a one-line UserError naming the file."""
    p = Path(path)
    try:
        if p.is_dir():
            raise UserError(f"{what} {p} is a folder, not a file")
        size = p.stat().st_size
        if size > MAX_JSON_BYTES:
            raise UserError(f"{what} {p} is {size / 2**20:.0f} MB; not a file autokd writes")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} {p} not found") from None
    except PermissionError:
        raise UserError(f"{what} {p} cannot be read (permission denied); fix its permissions") from None
    except OSError as exc:
        raise UserError(f"{what} {p} cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {p} is not UTF-8 text (binary, UTF-16 or latin-1?); save it as UTF-8 JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {p} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise UserError(f"{what} {p} is nested too deeply; not a file autokd writes") from None


def require_utf8(path: Path, flag: str) -> None:
    """A path the records can name: a byte that is not UTF-8 (the shell passes such names through) is bad input."""
    try:
        str(path).encode()
    except UnicodeEncodeError:
        raise UserError(f"{flag}: the path {os.fsencode(path)!r} is not valid UTF-8 text; choose a UTF-8 name") from None


def make_output_dir(path: Path, flag: str = "--out") -> Path:
    """Create an output folder (and its parents), or stop with a one-line UserError that says why and what to do:
    a path that is a file, a folder that cannot be created (read-only, /proc, permissions), a name not UTF-8."""

    require_utf8(path, flag)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot create this folder ({exc.strerror or exc}); choose a writable "
                        "folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path} is not writable; choose a writable folder")
    return path
