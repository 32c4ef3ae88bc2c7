"""Jobs on a Ray cluster (the `ray` extra): `--executor ray`, `--ray-address auto|HOST:PORT`.

Workers are actors of one CPU each, spread over the nodes, set up once with the shared
state (put in the object store once). They are owned by this process, so Ray ends them
when it ends (Ctrl-C or kill). A dead actor costs only its job, which is retried on a new
one (`mpqc.scheduler.Scheduler`); a lost cluster is one clear error, and the run folder
keeps every job that had finished."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from mpqc.errors import OptionError, WorkerError, first_line
from mpqc.scheduler import DEFAULT_RETRIES, JobFn, OnDone, OnRetry, Scheduler

__all__ = ["RayExecutor", "connect", "node_mismatch"]

#: seconds between checks that the cluster's head answers, and misses before giving up
_HEAD_CHECK_S = 2.0
_HEAD_MISSES = 3
#: the address this process connected to (None: a Ray started here, or none yet)
_connected_to: str | None = None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise OptionError("--executor ray needs Ray: pip install 'mpqc[ray]'") from None
    return ray


def connect(address: str | None) -> Any:
    """Ray, connected once per process: to the cluster at `address`, or to a Ray started here
    (which ends with this process). A later call for the same address (or for none, when
    Ray is already up) reuses the connection; one for another address reconnects."""
    global _connected_to
    ray = _import_ray()
    if ray.is_initialized() and (address is None or address == _connected_to):
        return ray
    where = f"the Ray cluster at {address}" if address else "a new local Ray"
    why = _unreachable(address)
    if why is not None:  # ray.init would wait minutes for a cluster that is not there
        raise WorkerError(f"cannot reach {where}: {why}")
    if ray.is_initialized():
        ray.shutdown()
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level="warning",
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise WorkerError(f"cannot reach {where}: {first_line(exc)}") from None
    _connected_to = address
    return ray


def _unreachable(address: str | None) -> str | None:
    """Why nothing will answer at the cluster's address (None: something listens, or Ray
    starts one here)."""
    if address is None:
        return None
    target = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            found = canonicalize_bootstrap_address("auto")
        except Exception:  # Ray's own lookup changed: let ray.init say
            return None
        if found is None:
            return "no running Ray cluster found on this machine (ray start --head starts one)"
        target = found
    host, _, port = target.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except (OSError, ValueError) as exc:
        return f"nothing answers at {host}:{port} ({getattr(exc, 'strerror', None) or exc})"
    return None


def node_mismatch(described: Sequence[dict[str, Any]], version: str, isa: dict[str, Any]) -> str | None:
    """Why the actors' nodes cannot run this job, or None: another mpqc version, or another
    int8 instruction set (ONNX Runtime's int8 kernels saturate on some and not on others, so
    sensitivities and QAT would differ from a run here: results must not depend on where a
    job ran)."""
    for info in described:
        if info["mpqc"] != version:
            return f"a Ray node runs mpqc {info['mpqc']}, this process {version}: install one version"
    for info in described:
        if info["isa"] != isa:
            theirs, ours = _isa_text(info["isa"]), _isa_text(isa)
            return (
                f"a Ray node's CPU ({theirs}) differs from this machine's ({ours}): its int8 results would differ; "
                "use nodes with the same instruction set, or --executor local"
            )
    return None


def _isa_text(isa: dict[str, Any]) -> str:
    return f"{isa.get('arch', '?')} {'+'.join(isa.get('features', [])) or 'no int8 extensions'}"


class _RayWorker:
    """A Ray actor: set up once with the shared state (read from the object store), then runs jobs."""

    def __init__(self, setup: tuple[Callable[..., None] | None, tuple[Any, ...]]) -> None:
        initializer, initargs = setup
        if initializer is not None:
            initializer(*initargs)

    def describe(self) -> dict[str, Any]:
        """What results depend on: mpqc's version and the node's instruction set."""
        import ray

        from mpqc.cpu import detect
        from mpqc.version import __version__

        node = ray.get_runtime_context().get_node_id()
        return {"mpqc": __version__, "isa": detect().to_json(), "pid": os.getpid(), "node": node}

    def run(self, fn: Callable[[Any], Any], job: Any) -> Any:
        return fn(job)


class RayExecutor:
    """Actors of one CPU each, spread over the cluster's nodes, each set up once with the
    shared state (put in the object store once). `close` ends the actors; the connection
    stays for the next stage (Ray closes it when this process ends)."""

    def __init__(
        self,
        address: str | None,
        workers: int | None,
        jobs: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        ray = self._ray = connect(address)
        self.retries = retries
        self._head = ray.get_runtime_context().gcs_address
        self._checked_at, self._misses = time.monotonic(), 0  # the head's last check, and misses since
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # one CPU per actor: more actors than the cluster's CPUs would wait forever
        self.workers = max(1, min(workers or cpus, cpus, jobs))
        self._setup = ray.put((initializer, initargs))
        self._actor = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_RayWorker)
        self._pool: list[Any] = [self._spawn() for _ in range(self.workers)]
        self.nodes = self._check_nodes()

    def _spawn(self) -> Any:
        return self._actor.options(scheduling_strategy="SPREAD").remote(self._setup)

    def _check_nodes(self) -> list[dict[str, Any]]:
        """Every actor is up and runs this mpqc version on this instruction set (a set-up
        error is raised here)."""
        from mpqc.cpu import detect
        from mpqc.version import __version__

        ray = self._ray
        refs = [actor.describe.remote() for actor in self._pool]
        try:
            self._wait(refs, len(refs))
            described = ray.get(refs)
        except WorkerError:
            self._pool = []
            raise
        except ray.exceptions.RayActorError as exc:
            self.close()
            raise WorkerError(f"a Ray worker failed to start: {_actor_cause(exc)}") from None
        problem = node_mismatch(described, __version__, detect().to_json())
        if problem is not None:
            self.close()
            raise WorkerError(problem)
        return described

    def run(
        self, fn: JobFn, jobs: Sequence[Any], on_done: OnDone | None = None, on_retry: OnRetry | None = None
    ) -> list[Any]:
        ray = self._ray
        state = Scheduler(len(jobs), self.retries, on_done, on_retry)
        running: dict[Any, tuple[int, int]] = {}  # object ref -> (actor slot, job)
        idle = list(range(len(self._pool)))
        failure: BaseException | None = None  # the job's own exception
        try:
            # Actors kept from an earlier batch run on without their head, until Ray ends
            # this process with a log line a minute later: a batch starts only with a head.
            self._head_answers()
            while state.left and failure is None:
                while idle and state.queue:
                    slot, index = idle.pop(0), state.queue.popleft()
                    running[self._pool[slot].run.remote(fn, jobs[index])] = (slot, index)
                ready = self._wait(list(running))  # raises WorkerError when the head is lost
                for ref in ready:
                    slot, index = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # the job's own error, as it was raised
                        cause = exc.cause if isinstance(exc.cause, BaseException) else None
                        failure = cause or exc.as_instanceof_cause()
                        failure.__cause__ = RuntimeError(str(exc))
                        break
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                        self._kill(self._pool[slot])
                        self._pool[slot] = self._spawn()
                        idle.append(slot)
                        state.lost(index, f"Ray worker died ({_actor_cause(exc)})")
                        continue
                    idle.append(slot)
                    state.finished(index, result)
        except ray.exceptions.RayError as exc:  # the cluster itself: head or object store lost
            self.close()
            raise WorkerError(f"lost the Ray cluster: {_actor_cause(exc)}") from None
        except WorkerError:
            if _unreachable(self._head) is not None:
                self._pool = []  # nothing to stop them through; they end with their owner
            else:
                self.close()
            raise
        except BaseException:
            self.close()
            raise
        if failure is not None:
            self.close()
            raise failure
        return state.results

    def _head_answers(self) -> None:
        """Raise `WorkerError` unless the head answers within `_HEAD_MISSES` tries."""
        for miss in range(1, _HEAD_MISSES + 1):
            if _unreachable(self._head) is None:
                self._checked_at, self._misses = time.monotonic(), 0
                return
            if miss < _HEAD_MISSES:
                time.sleep(_HEAD_CHECK_S)
        raise WorkerError(f"lost the Ray cluster: its head at {self._head} stopped answering")

    def _wait(self, refs: list[Any], count: int = 1) -> list[Any]:
        """The first `count` refs done, checking every `_HEAD_CHECK_S` of waiting (however
        many jobs finish meanwhile) that the head still answers: Ray itself would end this
        process a minute after losing it, with a log line instead of an error."""
        while True:
            ready, _ = self._ray.wait(refs, num_returns=count, timeout=_HEAD_CHECK_S)
            now = time.monotonic()
            if now - self._checked_at >= _HEAD_CHECK_S:
                self._checked_at = now
                self._misses = self._misses + 1 if _unreachable(self._head) is not None else 0
                if self._misses >= _HEAD_MISSES:
                    raise WorkerError(f"lost the Ray cluster: its head at {self._head} stopped answering")
            if len(ready) >= count:
                return list(ready)

    def _kill(self, actor: Any) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # already gone, or the cluster with it
            pass

    def close(self) -> None:
        for actor in self._pool:
            self._kill(actor)
        self._pool = []


def _actor_cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
