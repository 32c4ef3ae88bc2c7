"""A data module whose import fails (as a user's module with a missing dependency would)."""

import not_installed_anywhere  # noqa: F401


def f():
    return {}
