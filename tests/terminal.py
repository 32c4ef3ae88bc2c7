"""For tests that send Ctrl-C to a child process."""

from __future__ import annotations

import signal


def ctrl_c_as_in_a_terminal() -> None:
    """`preexec_fn` for such a child. A shell without job control starts background jobs with
    Ctrl-C ignored (`make test &`) and children inherit that, so Python installs no
    KeyboardInterrupt handler; a terminal's process gets Ctrl-C. Test the latter."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
