"""Progress for long work: what step, how many of how many, how long so far.

A `Progress` prints stamped lines on stderr (and hands them to an optional log, such as a
compile run folder's). `count` tracks a step of known size: a bar on a terminal, else a
line every few seconds, so logs of non-interactive runs show progress too."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Progress"]


class Progress:
    """Callable with a line to say; `count` for steps of known size."""

    def __init__(self, echo: bool = True, log: Callable[[str], None] | None = None, every_s: float = 10.0) -> None:
        self.echo, self.log, self.every_s = echo, log, every_s
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, line: str) -> None:
        stamped = f"[{self.elapsed():7.1f}s] {line}"
        if self.log is not None:
            self.log(stamped)
        if self.echo:
            print(stamped, file=sys.stderr, flush=True)

    @contextmanager
    def count(self, total: int, what: str) -> Iterator[Callable[[int], None]]:
        """`advance(n)` inside the block; a closing line says how long the step took."""
        began = time.perf_counter()
        done = 0
        bar: Any = None
        if self.echo and total and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=total, desc=what, unit="step", file=sys.stderr, leave=False)
        last = [began]

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if bar is not None:
                bar.update(n)
            elif self.echo and time.perf_counter() - last[0] >= self.every_s:
                last[0] = time.perf_counter()
                self(f"{what}: {done}/{total} ({time.perf_counter() - began:.0f}s)")

        try:
            yield advance
        finally:
            if bar is not None:
                bar.close()
        if done:
            self(f"{what}: {done}/{total} done in {time.perf_counter() - began:.1f}s")
