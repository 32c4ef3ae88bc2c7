"""Where jobs run: in this process, in a pool of local worker processes, or on a Ray cluster
(`mpqc.ray_executor`).

Every executor runs a list of independent jobs with one function, reports each result as it
finishes (so the caller can store it at once) and returns results in job order. A worker
that dies mid-job (killed, out of memory, a lost node) costs only that job: it is retried
on a fresh worker, at most `retries` times, and each retry is reported. An exception the job
itself raises is not retried (it would raise again) and ends the run.

Local workers are spawned (torch and ONNX Runtime start clean), ignore Ctrl-C (the parent
handles it and stops them), and exit on their own if their parent dies."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Protocol

from mpqc.errors import OptionError, WorkerError
from mpqc.scheduler import DEFAULT_RETRIES, EXECUTORS, JobFn, OnDone, OnRetry, Retry, Scheduler

__all__ = [
    "Executor",
    "ExecutorSpec",
    "InProcessExecutor",
    "LocalPoolExecutor",
    "Retry",
    "Scheduler",
    "default_workers",
    "EXECUTORS",
]


class Executor(Protocol):
    """Runs jobs and reports each result as it finishes; results come back in job order."""

    def run(
        self, fn: JobFn, jobs: Sequence[Any], on_done: OnDone | None = None, on_retry: OnRetry | None = None
    ) -> list[Any]: ...

    def close(self) -> None: ...


def default_workers() -> int:
    """Worker processes when none are asked for: the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class ExecutorSpec:
    """Where a command's jobs run. Checked when made (`OptionError`), so a bad choice fails
    before any work; `check()` also finds Ray when it is asked for.

    local: `workers` processes on this machine (1: in this process; default: the cores, at
    most 4). ray: `workers` actors of one CPU each (default: the cluster's CPUs) on the
    cluster at `address` ("auto", "HOST:PORT"), or on a Ray started here when None."""

    kind: str = "local"
    workers: int | None = None
    address: str | None = None
    retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise OptionError(f"unknown executor {self.kind!r}; use one of {', '.join(EXECUTORS)}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise OptionError(f"--workers must be a whole number >= 1, got {self.workers!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise OptionError(f"--job-retries must be a whole number >= 0, got {self.retries!r}")
        if self.address is not None:
            if self.kind != "ray":
                raise OptionError("--ray-address needs --executor ray")
            if not isinstance(self.address, str) or not _valid_address(self.address):
                raise OptionError(f"--ray-address takes auto, HOST:PORT or ray://HOST:PORT, got {self.address!r}")

    def check(self) -> None:
        """Raises `OptionError` when the executor cannot be used here: Ray not installed, or
        its cluster not reachable (this connects, so the first job does not find out)."""
        if self.kind == "ray":
            from mpqc.ray_executor import connect

            try:
                connect(self.address)
            except WorkerError as exc:
                raise OptionError(str(exc)) from None

    def describe(self) -> str:
        if self.kind == "local":
            count = self.workers or default_workers()
            return "in this process" if count <= 1 else f"in {count} local worker processes"
        where = f"the Ray cluster at {self.address}" if self.address else "a Ray started here"
        return f"on {where}, " + (f"{self.workers} actors" if self.workers else "one actor per cluster CPU")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.workers, "address": self.address, "retries": self.retries}

    def start(
        self, jobs: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
    ) -> Executor:
        """An executor for `jobs` jobs (no more workers than jobs), each worker set up once."""
        if self.kind == "ray":
            from mpqc.ray_executor import RayExecutor

            return RayExecutor(self.address, self.workers, jobs, initializer, initargs, self.retries)
        count = min(self.workers or default_workers(), max(1, jobs))
        if count <= 1:
            return InProcessExecutor(initializer, initargs)
        return LocalPoolExecutor(count, initializer, initargs, self.retries)


def _valid_address(text: str) -> bool:
    if text == "auto":
        return True
    host, _, port = text.removeprefix("ray://").rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


class InProcessExecutor:
    """Jobs one after the other in this process (one worker, tests, debugging)."""

    def __init__(self, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()) -> None:
        if initializer is not None:
            initializer(*initargs)

    def run(
        self, fn: JobFn, jobs: Sequence[Any], on_done: OnDone | None = None, on_retry: OnRetry | None = None
    ) -> list[Any]:
        results = []
        for i, job in enumerate(jobs):
            result = fn(job)
            if on_done is not None:
                on_done(i, result)
            results.append(result)
        return results

    def close(self) -> None:
        pass


# -- local worker processes ----------------------------------------------------------------
def _worker_start(parent: int) -> None:
    """In each worker: ignore Ctrl-C (the parent stops us), die with the parent."""
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


def _send(conn: Connection, message: tuple[Any, ...]) -> bool:
    """Answer the parent; False when it is gone (nobody left to tell)."""
    try:
        conn.send(message)
    except OSError:
        return False
    except Exception as exc:  # an unpicklable result or exception: say what it was
        return _send(conn, ("error", message[1], RuntimeError(f"{type(exc).__name__}: {exc}"), ""))
    return True


def _worker_main(conn: Connection, parent: int) -> None:
    """A local worker: take the set-up, then run each (fn, index, job) it is sent until told
    to stop. Nothing here may print: a worker's only channel is its pipe."""
    try:
        _worker_start(parent)
        initializer, initargs = pickle.loads(conn.recv_bytes())
        if initializer is not None:
            initializer(*initargs)
    except EOFError:
        return  # the parent went away while we started
    except BaseException as exc:
        _send(conn, ("error", None, exc, traceback.format_exc()))
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, index, job = message
        try:
            answer: tuple[Any, ...] = ("ok", index, fn(job))
        except BaseException as exc:
            answer = ("error", index, exc, traceback.format_exc())
        if not _send(conn, answer):
            return


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C while a worker process starts. A start cut short leaves the child
    unpickling a truncated bootstrap and printing its traceback on our stderr; and a child
    born with Ctrl-C ignored keeps it ignored through Python's start-up, so a terminal's
    Ctrl-C (sent to the whole process group) cannot break its bootstrap either. The window
    is one fork and a small write: a Ctrl-C inside it is lost, the next one is not."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class _RemoteTraceback(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)

    def __str__(self) -> str:
        return str(self.args[0])


def _raise_from_worker(exc: BaseException, text: str) -> None:
    if text:
        exc.__cause__ = _RemoteTraceback(text)
    raise exc


@dataclass
class _Process:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    job: int | None = None


class LocalPoolExecutor:
    """A pool of spawned worker processes, each set up once with the shared state. Jobs are
    handed out one at a time, so a worker that dies loses only the job it was running."""

    def __init__(
        self,
        workers: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.workers, self.retries = workers, retries
        # Pickled once, sent on each worker's pipe after it started: the spawn bootstrap
        # stays small, and a worker that dies before reading it breaks the pipe (CPython's
        # spawn would block forever writing a large bootstrap to a dead child).
        self._setup = bytes(ForkingPickler.dumps((initializer, initargs)))
        self._context = multiprocessing.get_context("spawn")
        self._pool: list[_Process] = []
        try:
            for _ in range(workers):
                self._pool.append(self._spawn())
            for worker in self._pool:  # all started first, so they boot side by side
                self._set_up(worker)
        except BaseException:
            self.terminate()
            raise

    def _spawn(self) -> _Process:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(theirs, os.getpid()), daemon=True, name="mpqc-worker"
        )
        try:
            with _sigint_ignored():
                process.start()
        finally:
            theirs.close()
        return _Process(process, ours)

    def _set_up(self, worker: _Process) -> None:
        """Send the set-up; a worker already dead is found so by its first job, and retried."""
        try:
            worker.conn.send_bytes(self._setup)
        except OSError:
            pass

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._pool if w.process.pid is not None]

    def run(
        self, fn: JobFn, jobs: Sequence[Any], on_done: OnDone | None = None, on_retry: OnRetry | None = None
    ) -> list[Any]:
        state = Scheduler(len(jobs), self.retries, on_done, on_retry)
        try:
            while state.left:
                for worker in self._pool:
                    if worker.job is None and state.queue:
                        worker.job = state.queue.popleft()
                        try:
                            worker.conn.send((fn, worker.job, jobs[worker.job]))
                        except OSError:
                            pass  # it died: _collect retries the job on a fresh worker
                busy = [w for w in self._pool if w.job is not None]
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in busy:
                    self._collect(worker, state)
        except BaseException:
            self.terminate()
            raise
        return state.results

    def _collect(self, worker: _Process, state: Scheduler) -> None:
        """Take the worker's answer if it has one; replace it if it died."""
        index = worker.job
        assert index is not None
        try:
            message = worker.conn.recv() if worker.conn.poll() else None
        except (EOFError, OSError):
            message = None
        if message is None:
            if worker.process.is_alive():
                return  # still working
            worker.process.join()
            code = worker.process.exitcode
            worker.conn.close()
            fresh = self._spawn()
            self._pool[self._pool.index(worker)] = fresh
            self._set_up(fresh)
            state.lost(index, f"worker process {worker.process.pid} died with exit code {code}")
            return
        kind, _, payload, *rest = message
        if kind == "error":
            _raise_from_worker(payload, rest[0] if rest else "")
        worker.job = None
        state.finished(index, payload)

    def terminate(self) -> None:
        """Stop now: kill the workers."""
        for worker in self._pool:
            if worker.process.is_alive():
                worker.process.kill()
        for worker in self._pool:
            worker.process.join(timeout=5)
            worker.conn.close()
        self._pool = []

    def close(self) -> None:
        for worker in self._pool:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._pool:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
            worker.conn.close()
        self._pool = []
