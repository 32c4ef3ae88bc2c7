"""Where candidate evaluations and QAT runs execute. The executor is pluggable: anything
with `map(fn, jobs)` returning results in order will do (a Ray or Dask pool later); the
default runs a pool of local worker processes, each set up once with the shared state."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

__all__ = ["Executor", "LocalExecutor", "SerialExecutor", "default_workers"]


class Executor(Protocol):
    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]: ...


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class SerialExecutor:
    """In this process; for one worker, tests and debugging."""

    def __init__(self, initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> None:
        if initializer is not None:
            initializer(*initargs)

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        return map(fn, jobs)

    def close(self) -> None:
        pass


class LocalExecutor:
    """A process pool (spawned, so torch and ONNX Runtime start clean in each worker)."""

    def __init__(self, workers: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=initializer,
            initargs=initargs,
        )

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[Any]:
        return self._pool.map(fn, jobs)

    def close(self) -> None:
        self._pool.shutdown()


def make_executor(workers: int, initializer: Callable[..., None], initargs: tuple) -> SerialExecutor | LocalExecutor:
    if workers <= 1:
        return SerialExecutor(initializer, initargs)
    return LocalExecutor(workers, initializer, initargs)
