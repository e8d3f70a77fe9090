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


# Errors of the code, never of a configuration: a trial that raises one stops the search (exit 1, a log with the
# traceback) instead of being told to the optimizer as a bad configuration with infinite loss.
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (TypeError, AttributeError, NameError, ImportError,
                                                       NotImplementedError, SyntaxError)


def is_programming_error(exc: BaseException) -> bool:
    return isinstance(exc, PROGRAMMING_ERRORS) and not isinstance(exc, UserError)


def names_programming_error(one_line: str | None) -> bool:
    """Whether a worker's one-line error ("TypeError: ...") names a programming error."""
    head = (one_line or "").split(":", 1)[0].strip()
    return head in {cls.__name__ for cls in PROGRAMMING_ERRORS} | {"ModuleNotFoundError", "UnboundLocalError"}
