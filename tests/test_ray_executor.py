"""The Ray executor on a real local cluster (`ray.cluster_utils.Cluster`: a head and a
second node, each a separate raylet with its own worker processes): jobs spread over both
nodes, a killed worker costs only its job, a compile gives the same bytes as one in this
process, a killed driver takes its workers with it, a lost head is one clear error."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mpqc.api import compile as compile_model
from mpqc.compiler import CompileOptions
from mpqc.cpu import detect
from mpqc.errors import OptionError
from mpqc.executor import ExecutorSpec, Retry
from mpqc.ray_executor import node_mismatch

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'mpqc[ray]')")
from ray.cluster_utils import Cluster  # noqa: E402

TESTS = str(Path(__file__).parent)
#: the `ray` command of this Python's environment
RAY_CLI = str(Path(sys.executable).parent / "ray") if (Path(sys.executable).parent / "ray").exists() else "ray"
BUDGET = "latency=0.35x"


def _busy_workers() -> list[int]:
    """Ray worker processes running a job now (Ray names them after the method they run)."""
    out = subprocess.run(["pgrep", "-f", "ray::_RayWorker.run"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _kill_one_busy_worker(when: Callable[[], bool], timeout: float) -> tuple[threading.Thread, list[int]]:
    """A started thread that kills (-9) one Ray worker running a job once `when()` holds;
    the list gets the killed pid."""
    killed: list[int] = []

    def watch() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and not killed:
            busy = _busy_workers() if when() else []
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed


def _slow_square(x: int) -> int:
    time.sleep(1.0)
    return x * x


def _fail(x: int) -> int:
    raise ValueError(f"job {x} is wrong")


@pytest.fixture(scope="module")
def cluster():
    """A head of one CPU; tests add the second node. Workers import this folder's modules."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([TESTS, *([old] if old else [])])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        ExecutorSpec("ray", address=cluster.address).check()  # connects this process
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _two_nodes(cluster) -> None:
    if len(cluster.list_all_nodes()) < 2:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()


@pytest.mark.slow
def test_a_compile_on_one_and_two_ray_nodes_equals_one_in_process_even_with_a_killed_worker(
    cluster, tmp_path, monkeypatch, default_model
):
    fast = dict(max_qat_runs=2, qat_epochs=2, probe_epochs=1, levels=3, progress=False, use_cache=False)

    def run(name: str, options: CompileOptions):
        return compile_model(default_model, BUDGET, "bitserial", None, tmp_path / name, options)

    local = run("local", CompileOptions(workers=1, **fast))
    one = run("one", CompileOptions(executor="ray", ray_address=cluster.address, **fast))
    assert one.report["executor"]["workers"] is None and len(ray.nodes()) == 1

    _two_nodes(cluster)
    log = tmp_path / "two" / "compile.log"
    # "QAT round" is said before the round's jobs start
    killer, killed = _kill_one_busy_worker(lambda: log.exists() and "QAT round" in log.read_text(), 600)
    two = run("two", CompileOptions(executor="ray", ray_address=cluster.address, workers=2, **fast))
    killer.join(timeout=1)
    assert killed, "no Ray worker was running a QAT job to kill"
    retried = two.report["executor"]["retried"]
    assert [r["stage"] for r in retried] == ["QAT"] and "Ray worker died" in retried[0]["reason"]

    def numbers(report):
        return [(c["key"], c["ptq"], c["qat"], c["decision"]) for c in report["candidates"]]

    for other in (one, two):
        assert (other.output / "model.onnx").read_bytes() == (local.output / "model.onnx").read_bytes()
        assert (other.output / "scheme.json").read_bytes() == (local.output / "scheme.json").read_bytes()
        assert numbers(other.report) == numbers(local.report)


def test_jobs_spread_over_both_nodes_and_a_killed_worker_costs_only_its_job(cluster):
    _two_nodes(cluster)
    executor = ExecutorSpec("ray", workers=2, address=cluster.address).start(4)
    try:
        assert len({n["node"] for n in executor.nodes}) == 2  # one actor per node
        assert all(n["isa"] == detect().to_json() for n in executor.nodes)  # checked against this machine
        retries: list[Retry] = []
        killer, killed = _kill_one_busy_worker(lambda: True, 60)
        assert executor.run(_slow_square, [1, 2, 3, 4], on_retry=retries.append) == [1, 4, 9, 16]
        killer.join(timeout=1)
        assert killed and len(retries) == 1 and retries[0].attempt == 1
        with pytest.raises(ValueError, match="job 7 is wrong"):  # the job's own error, not retried
            executor.run(_fail, [7])
    finally:
        executor.close()


def test_a_killed_driver_takes_its_ray_workers_with_it(cluster, tmp_path):
    script = textwrap.dedent(
        f"""
        import time
        from mpqc.executor import ExecutorSpec
        executor = ExecutorSpec("ray", workers=1, address={cluster.address!r}).start(1)
        print("started", flush=True)
        executor.run(time.sleep, [120])
        """
    )
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert driver.stdout is not None and driver.stdout.readline().strip() == "started"
    deadline = time.time() + 60
    while time.time() < deadline and not _busy_workers():
        time.sleep(0.1)
    assert _busy_workers()
    driver.kill()
    driver.wait()
    deadline = time.time() + 30
    while time.time() < deadline and _busy_workers():
        time.sleep(0.2)
    assert not _busy_workers()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_lost_head_is_one_clear_error_and_the_folder_resumes(tmp_path, default_model):
    """A head started with `ray start`, a compile driven from another process, the head's
    GCS killed between the sensitivity pass and QAT (the actors kept from the first stage
    would run on without it): one line, exit 1, and the folder resumes locally."""
    port = _free_port()
    env = {**os.environ, "RAY_ADDRESS": ""}
    subprocess.run(
        [RAY_CLI, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"],
        check=True,
        capture_output=True,
        env=env,
    )
    out = tmp_path / "run"
    try:
        driver = subprocess.Popen(
            [sys.executable, "-m", "mpqc", "compile", "--json", "--budget", BUDGET, "--max-qat-runs", "2"]
            + ["--epochs", "3", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "-o", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "MPQC_CACHE_DIR": str(tmp_path / "cache")},
        )
        deadline = time.time() + 600
        log = out / "compile.log"
        while time.time() < deadline and driver.poll() is None:
            if log.exists() and "PTQ sensitivity (measured)" in log.read_text():
                break
            time.sleep(0.05)
        driver.send_signal(signal.SIGSTOP)  # held while the head goes: it resumes before the QAT jobs
        gcs = subprocess.run(["pgrep", "-f", f"gcs_server.*{port}"], capture_output=True, text=True).stdout.split()
        assert gcs, "the head's GCS process was not found"
        for pid in gcs:
            os.kill(int(pid), signal.SIGKILL)
        driver.send_signal(signal.SIGCONT)
        _, err = driver.communicate(timeout=120)
    finally:  # this head's processes only (`ray stop` would also stop the other tests' cluster)
        for pid in subprocess.run(["pgrep", "-f", f":{port}"], capture_output=True, text=True).stdout.split():
            if int(pid) != os.getpid():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    assert driver.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "lost the Ray cluster" in lines[0] and f"--resume {out}" in lines[0], err
    resumed = compile_model(
        default_model,
        BUDGET,
        "bitserial",
        None,
        out,
        CompileOptions(max_qat_runs=2, qat_epochs=3, workers=1, progress=False),
        resume=True,
    )
    assert json.loads((resumed.output / "report.json").read_text())["winner"]


def test_an_unreachable_address_is_refused_before_any_work(tmp_path):
    port = _free_port()
    with pytest.raises(OptionError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port}: nothing answers"):
        ExecutorSpec("ray", address=f"127.0.0.1:{port}").check()
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mpqc", "compile", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"]
        + ["-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nothing answers" in proc.stderr
    assert not out.exists()


def test_a_node_with_another_version_or_int8_instruction_set_is_refused_by_name():
    here = {"arch": "x86_64", "features": ["avx2"], "source": "/proc/cpuinfo", "int8_saturates": True}
    vnni = {**here, "features": ["avx2", "avx512-vnni"], "int8_saturates": False}
    same = [{"mpqc": "1.0", "isa": here, "node": "a"}, {"mpqc": "1.0", "isa": dict(here), "node": "b"}]
    assert node_mismatch(same, "1.0", here) is None
    mixed = [*same, {"mpqc": "1.0", "isa": vnni, "node": "c"}]
    problem = node_mismatch(mixed, "1.0", here)
    assert problem is not None and "x86_64 avx2+avx512-vnni" in problem and "(x86_64 avx2)" in problem
    assert "mpqc 0.9, this process 1.0" in (node_mismatch([{**same[0], "mpqc": "0.9"}], "1.0", here) or "")
