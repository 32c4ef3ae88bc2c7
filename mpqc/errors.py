"""The exceptions a user is meant to see.

Every bad input raises a subclass of `MpqcError`; the CLI prints its message on one line
and exits with status 2. Pipelines catch the subclass they care about (a `BudgetError` to
loosen a budget, a `DataError` to fix inputs). Anything else is a bug in mpqc.
"""

from __future__ import annotations

__all__ = [
    "MpqcError",
    "ModelError",
    "DataError",
    "SchemeError",
    "BudgetError",
    "TargetError",
    "OptionError",
    "OutputError",
    "UserCodeError",
    "RunFolderError",
    "WorkerError",
    "BackendError",
    "first_line",
]


class MpqcError(Exception):
    """A problem with the user's input, explained in one line."""

    exit_code = 2


class ModelError(MpqcError):
    """The model file is missing, unreadable, invalid, or has nothing to quantize."""


class DataError(MpqcError):
    """Inputs or labels do not fit the model, or there are too few samples."""


class SchemeError(MpqcError):
    """A scheme or precision that cannot be read or that the target cannot run."""


class BudgetError(MpqcError):
    """A budget that cannot be read, or that no scheme can meet."""


class TargetError(MpqcError):
    """An unknown target, or a malformed target description."""


class BackendError(MpqcError):
    """A scheme or model the chosen deployment backend would refuse (`mpqc.backend`)."""


class OptionError(MpqcError):
    """A numeric or named option out of its range."""


class OutputError(MpqcError):
    """An output path mpqc will not write (a directory, a device, an unwritable place)."""


class UserCodeError(MpqcError):
    """Code the user named (`--data module:function`, `export module:factory`) failed."""


class RunFolderError(MpqcError):
    """A compile run folder that cannot be resumed or reused."""


class WorkerError(MpqcError):
    """Jobs could not run: a worker died more often than retried, or the Ray cluster was
    lost. Not bad input (exit 1); what had finished is kept."""

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (tools often append stack dumps), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
