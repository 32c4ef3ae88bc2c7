"""The dispatch loop every worker executor shares (local processes, Ray actors): one job at
a time per worker, results reported as they arrive, a dead worker's job retried (bounded)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mpqc.errors import WorkerError

__all__ = ["JobFn", "OnDone", "OnRetry", "Retry", "Scheduler", "DEFAULT_RETRIES", "EXECUTORS"]

JobFn = Callable[[Any], Any]
OnDone = Callable[[int, Any], None]
#: a job's index, the attempt that failed (1-based) and why
OnRetry = Callable[["Retry"], None]
EXECUTORS = ("local", "ray")
#: times a job whose worker died is run again before the run stops
DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class Retry:
    """A job whose worker died: which job, which attempt failed, why."""

    job: int
    attempt: int
    reason: str


class Scheduler:
    """The dispatch loop both worker executors share: jobs go to idle workers one at a time,
    a result is reported as it arrives, a dead worker's job goes back to the front of the
    queue on a fresh worker (bounded), a job's own exception ends the run."""

    def __init__(self, jobs: int, retries: int, on_done: OnDone | None, on_retry: OnRetry | None) -> None:
        self.queue: deque[int] = deque(range(jobs))
        self.results: list[Any] = [None] * jobs
        self.attempts = [0] * jobs
        self.left = jobs
        self.retries, self.on_done, self.on_retry = retries, on_done, on_retry

    def finished(self, index: int, result: Any) -> None:
        self.results[index] = result
        self.left -= 1
        if self.on_done is not None:
            self.on_done(index, result)

    def lost(self, index: int, reason: str) -> None:
        """The worker running job `index` died: retry it, or stop when it has used its retries."""
        self.attempts[index] += 1
        if self.attempts[index] > self.retries:
            raise WorkerError(
                f"job {index + 1} lost its worker {self.attempts[index]} times ({reason}); "
                f"giving up after {self.retries} retries"
            )
        if self.on_retry is not None:
            self.on_retry(Retry(index, self.attempts[index], reason))
        self.queue.appendleft(index)
