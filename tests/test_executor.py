"""Executors: results in job order whatever the finishing order; workers ignore Ctrl-C and
die with their parent; a killed worker costs only its job, which is retried (bounded)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from terminal import ctrl_c_as_in_a_terminal

from mpqc.errors import OptionError, WorkerError
from mpqc.executor import ExecutorSpec, InProcessExecutor, LocalPoolExecutor, Retry


def _square(x: int) -> int:
    time.sleep(0.05 * (3 - x % 3))  # finish out of order
    return x * x


def test_results_come_back_in_job_order_and_are_reported_as_they_finish():
    seen: list[int] = []
    pool = LocalPoolExecutor(2)
    try:
        assert pool.run(_square, list(range(6)), lambda i, r: seen.append(i)) == [0, 1, 4, 9, 16, 25]
    finally:
        pool.close()
    assert sorted(seen) == list(range(6))
    assert InProcessExecutor().run(_square, [3, 2]) == [9, 4]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = open(f"/proc/{pid}/stat").read().split()
    return stat[2] != "Z"


def test_workers_die_with_a_killed_parent(tmp_path):
    script = textwrap.dedent(
        """
        import time
        from mpqc.executor import LocalPoolExecutor
        pool = LocalPoolExecutor(2)
        pool.run(time.sleep, [60, 60])
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.2)
        workers = [p for p in _children(parent.pid) if "spawn_main" in open(f"/proc/{p}/cmdline").read()]
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)


def _marked_sleep(job: tuple[str, int, float]) -> int:
    """Say (by a file named after the job) which process runs it, then work for a while."""
    folder, index, seconds = job
    with open(f"{folder}/{index}.pid", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return index


def _die(job: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return job


def _raise(job: int) -> int:
    raise ValueError(f"job {job} is wrong")


def _wait_for(path, timeout: float = 60.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_a_killed_worker_costs_only_its_job_which_is_retried(tmp_path):
    retries: list[Retry] = []
    pool = LocalPoolExecutor(2)
    jobs = [(str(tmp_path), i, 2.0 if i == 1 else 0.5) for i in range(4)]
    killer = threading.Thread(target=lambda: os.kill(_wait_for(tmp_path / "1.pid"), signal.SIGKILL))
    killer.start()
    try:
        assert pool.run(_marked_sleep, jobs, on_retry=retries.append) == [0, 1, 2, 3]
    finally:
        killer.join()
        pool.close()
    assert [(r.job, r.attempt) for r in retries] == [(1, 1)]
    assert "died with exit code -9" in retries[0].reason


def test_a_job_whose_worker_always_dies_stops_after_its_retries():
    retries: list[Retry] = []
    pool = LocalPoolExecutor(2, retries=2)
    with pytest.raises(WorkerError, match=r"job 1 lost its worker 3 times .*giving up after 2 retries"):
        pool.run(_die, [0], on_retry=retries.append)
    assert [r.attempt for r in retries] == [1, 2]


def test_a_job_that_raises_is_not_retried_and_keeps_its_type():
    retries: list[Retry] = []
    pool = LocalPoolExecutor(2)
    with pytest.raises(ValueError, match="job 0 is wrong") as info:
        pool.run(_raise, [0], on_retry=retries.append)
    assert retries == []
    assert "Traceback" in str(info.value.__cause__)  # the worker's traceback travels with it


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (dict(kind="dask"), "unknown executor 'dask'; use one of local, ray"),
        (dict(workers=0), "--workers must be a whole number >= 1"),
        (dict(address="auto"), "--ray-address needs --executor ray"),
        (dict(kind="ray", address="localhost"), "--ray-address takes auto, HOST:PORT"),
        (dict(kind="ray", address="host:99999"), "--ray-address takes auto, HOST:PORT"),
        (dict(retries=-1), "--job-retries must be a whole number >= 0"),
    ],
)
def test_executor_spec_refuses_bad_settings_by_name(spec, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        ExecutorSpec(**spec)


def test_executor_spec_picks_the_executor():
    assert isinstance(ExecutorSpec(workers=1).start(5), InProcessExecutor)
    pool = ExecutorSpec(workers=4).start(2)  # never more workers than jobs
    try:
        assert isinstance(pool, LocalPoolExecutor) and pool.workers == 2
    finally:
        pool.close()


def _take(blob: bytes) -> None:
    """A worker set-up with a large argument, so starting a worker takes a while."""


def test_ctrl_c_while_workers_start_is_one_clean_interrupt():
    """A terminal's Ctrl-C reaches the parent and its starting workers alike; neither may
    leave a child reading a cut-short set-up (it printed 'pickle data was truncated')."""
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, {folder!r})
        from test_executor import _take
        from mpqc.executor import LocalPoolExecutor
        print("ready", flush=True)
        try:
            while True:
                LocalPoolExecutor(2, _take, (bytes(100_000_000),)).close()
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
        """
    ).format(folder=os.path.dirname(__file__))
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
    time.sleep(0.3)
    deadline = time.time() + 60
    while parent.poll() is None and time.time() < deadline:  # an impatient user's Ctrl-C
        os.killpg(parent.pid, signal.SIGINT)
        time.sleep(0.05)

    def left() -> list[str]:
        return subprocess.run(["pgrep", "-s", str(parent.pid)], capture_output=True, text=True).stdout.split()

    try:
        assert parent.poll() is not None, "Ctrl-C did not stop the parent"
        err = parent.stderr.read() if parent.stderr else ""
        assert err == "interrupted\n", err
        while left() and time.time() < deadline:
            time.sleep(0.2)
        assert left() == []
    finally:
        if left():
            os.killpg(parent.pid, signal.SIGKILL)


def _unpicklable(x: int) -> object:
    return lambda: x


def test_an_answer_that_cannot_be_sent_back_is_reported_by_what_it_was():
    pool = LocalPoolExecutor(2)
    try:
        with pytest.raises(RuntimeError, match="(?i)pickl"):
            pool.run(_unpicklable, [1])
    finally:
        pool.close()
