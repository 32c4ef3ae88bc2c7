"""Executors: results in job order whatever the finishing order; workers ignore Ctrl-C and
die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from mpqc.executor import InProcessExecutor, LocalPoolExecutor


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
