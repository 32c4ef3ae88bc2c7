"""Where jobs run: in this process, or in a pool of local worker processes.

Every executor runs a list of independent jobs with one function and reports each result
as it finishes (so the caller can store it at once), returning results in job order.
Workers are spawned (torch and ONNX Runtime start clean), ignore Ctrl-C (the parent
handles it and stops them), and exit on their own if their parent dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

__all__ = ["Executor", "InProcessExecutor", "LocalPoolExecutor", "make_executor", "default_workers", "EXECUTORS"]

J = TypeVar("J")
R = TypeVar("R")
OnDone = Callable[[int, Any], None]
EXECUTORS = ("local",)


class Executor(Protocol):
    """Runs jobs and reports each result as it finishes; results come back in job order."""

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any], on_done: OnDone | None = None) -> list[Any]: ...

    def close(self) -> None: ...


def default_workers() -> int:
    """Worker processes when none are asked for: the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


class InProcessExecutor:
    """Jobs one after the other in this process (one worker, tests, debugging)."""

    def __init__(self, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()) -> None:
        if initializer is not None:
            initializer(*initargs)

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any], on_done: OnDone | None = None) -> list[Any]:
        results = []
        for i, job in enumerate(jobs):
            result = fn(job)
            if on_done is not None:
                on_done(i, result)
            results.append(result)
        return results

    def close(self) -> None:
        pass


def _worker_start(parent: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    """In each worker: ignore Ctrl-C, die with the parent, then the caller's set-up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:  # every platform: a parent that is gone ends the worker
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


class LocalPoolExecutor:
    """A pool of spawned worker processes, each set up once with the shared state."""

    def __init__(
        self, workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
    ) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
            initargs=(os.getpid(), initializer, initargs),
        )

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any], on_done: OnDone | None = None) -> list[Any]:
        futures: dict[Future[Any], int] = {self._pool.submit(fn, job): i for i, job in enumerate(jobs)}
        results: list[Any] = [None] * len(jobs)
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: futures[f]):
                    index = futures[future]
                    results[index] = future.result()
                    if on_done is not None:
                        on_done(index, results[index])
        except BaseException:
            self.terminate()
            raise
        return results

    def terminate(self) -> None:
        """Stop now: cancel queued jobs and kill the workers."""
        for process in list(getattr(self._pool, "_processes", {}).values()):
            if process.is_alive():
                process.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def make_executor(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> InProcessExecutor | LocalPoolExecutor:
    """In this process for one worker, else a pool of `workers` local processes."""
    if workers <= 1:
        return InProcessExecutor(initializer, initargs)
    return LocalPoolExecutor(workers, initializer, initargs)
