"""Error types. `UserError` and its subclasses are bad input: the CLI prints their message on one line, exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad usage or bad input; the message says what to do."""


class InvalidGenerator(UserError):
    """Generator hyperparameters θ that cannot produce an architecture (graphs never connected, limit too small)."""


class DatasetError(UserError):
    """A dataset that is unknown, missing, or malformed."""


class TeacherError(UserError):
    """A teacher that is unknown, missing, or does not match the dataset."""


class RunDirError(UserError):
    """A run directory that cannot be used (holds another run, corrupt journal, unwritable)."""
