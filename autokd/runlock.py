"""One owner per run directory: an OS-level lock (flock on DIR/.lock), held for the whole search or retrain.

A second process gets a one-line error naming the owner's pid; the lock dies with its process (SIGKILL included),
so a crash never leaves a directory locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

from autokd.errors import RunDirError

LOCK_NAME = ".lock"


class RunLock:
    def __init__(self, folder: str | Path, what: str = "run directory") -> None:
        self.folder = Path(folder)
        self.what = what
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise RunDirError(f"cannot use {self.what} {self.folder} ({exc.strerror or exc}); choose a writable "
                              f"path") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirError(f"{self.what} {self.folder} is in use by another autokd process (pid {owner}); "
                                  f"wait for it to finish or choose another folder") from None
            raise RunDirError(f"cannot lock {self.what} {self.folder} ({exc.strerror or exc})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
