"""The one exception type a user is meant to see.

Every bad input (file, scheme, data, budget) raises `MpqcError`; the CLI prints its
message on one line and exits with status 2. Anything else is a bug.
"""

from __future__ import annotations

__all__ = ["MpqcError", "first_line"]


class MpqcError(Exception):
    """A problem with the user's input, explained in one line."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (tools often append stack dumps), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
