"""QAT jobs: PTQ and QAT of one scheme, anywhere.

A `QatContext` carries everything a worker needs (picklable, sent once per worker). A job
is a scheme plus its training settings; its key is a content hash of the context and the
job, so a result stored under it is valid for any run that asks the same question. A
`JobStore` keeps finished jobs (validated on read, like the cache) so an interrupted run
redoes only what had not finished, whatever executor runs it."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from mpqc.cache import Cache, content_key
from mpqc.data import Dataset
from mpqc.executor import Executor, ExecutorSpec, default_workers
from mpqc.frontend import Prepared, prepare
from mpqc.modelio import atomic_write_bytes
from mpqc.quality import QualityMeasure
from mpqc.recipe import Recipe
from mpqc.runtime import Outputs, Runner, make_session
from mpqc.scheduler import JobFn, OnDone, OnRetry, Retry
from mpqc.scheme import Scheme
from mpqc.signature import InputSpec
from mpqc.stats import Calibration
from mpqc.training.config import QatConfig

__all__ = [
    "QatContext",
    "QatJob",
    "PtqJob",
    "JobResult",
    "JobStore",
    "Where",
    "Workers",
    "run_jobs",
    "run_ptq_jobs",
    "context_from",
]

_STORE_VERSION = 1


@dataclass
class QatContext:
    """What every QAT job of one workload shares."""

    model_bytes: bytes
    calibration: Calibration
    recipe: Recipe
    specs: list[InputSpec]
    train: Dataset
    validation: Dataset
    #: the float model's outputs on `train` (distillation targets) and on `validation`
    teacher: Outputs
    reference: Outputs
    measure: QualityMeasure
    config: QatConfig
    per_sample: bool
    #: content hash of all of the above
    key: str = ""
    #: emit as the target runs schemes (sub-8-bit layers as int8 kernels on ort-cpu)
    int8_kernels: bool = False


def context_from(
    workload: Any, config: QatConfig, bits: Iterable[int] = (8,), weight_bits: Iterable[int] = ()
) -> QatContext:
    """The QAT context of a `mpqc.workload.Workload` whose jobs use activations of `bits` and
    weights of `weight_bits` (their `auto` choices are made here, so every worker quantizes
    alike)."""
    recipe = workload.resolve_recipe(bits, weight_bits)
    teacher = workload.reference("train")
    reference = workload.reference("validation")
    fingerprint = workload.fingerprint()
    key = content_key(
        {
            **fingerprint,
            # the resolved recipe: which widths got their `auto` choices changes every result
            "resolved": recipe.to_json(),
            "measure": workload.quality.name,
            "config": dataclasses.asdict(dataclasses.replace(config, progress=False)),
        }
    )
    return QatContext(
        workload.prepared.proto.SerializeToString(),
        workload.calibration,
        recipe,
        workload.specs,
        workload.splits.train,
        workload.splits.validation,
        teacher,
        reference,
        workload.quality,
        config,
        workload.float_runner().per_sample,
        key,
        workload.target.int8_kernels if workload.target is not None else False,
    )


@dataclass(frozen=True)
class QatJob:
    """PTQ and QAT of `scheme` (its JSON) for `epochs` epochs with `seed`. `keep_state` asks
    for where training stopped (`mpqc.training.train.TrainingState`, as bytes) so that a
    later job can go on from it: `resume`, the state of a shorter run of the same scheme and
    seed. A resumed job gives the bytes the job would give from scratch, so neither is part
    of its key. States are not stored (`JobStore`): one read back has none, and the longer
    job then runs from scratch (the same result, the replay paid again)."""

    scheme: dict[str, Any]
    epochs: int
    seed: int
    keep_model: bool = False
    keep_state: bool = False
    resume: bytes | None = field(default=None, repr=False, compare=False)

    def key(self, context_key: str) -> str:
        return content_key({"context": context_key, "scheme": self.scheme, "epochs": self.epochs, "seed": self.seed})


@dataclass(frozen=True)
class PtqJob:
    """PTQ quality of `scheme` (its JSON) on the first `samples` validation samples."""

    scheme: dict[str, Any]
    samples: int

    def key(self, context_key: str) -> str:
        return content_key({"context": context_key, "ptq": self.scheme, "samples": self.samples})


@dataclass(frozen=True)
class JobResult:
    """Validation quality after PTQ and after QAT, and the trained model if kept."""

    ptq: float
    qat: float
    seconds: float
    model: bytes | None = field(default=None, repr=False, compare=False)
    #: QAT did not beat PTQ on validation, so the PTQ model is the result (qat == ptq)
    kept_ptq: bool = False
    #: where training stopped (`QatJob.keep_state`; never stored)
    state: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def necessity(self) -> float:
        return self.qat - self.ptq

    def to_json(self) -> dict[str, Any]:
        return {"ptq": self.ptq, "qat": self.qat, "seconds": self.seconds, "kept_ptq": self.kept_ptq}


# -- in the worker -------------------------------------------------------------------------
_STATE: dict[str, Any] = {}


def _init_worker(context: QatContext) -> None:
    import torch

    torch.set_num_threads(context.config.threads)
    proto = onnx.ModelProto()
    proto.ParseFromString(context.model_bytes)
    # the driver's front end ran already: no fusion here that it did not do
    prepared = prepare(ir.serde.deserialize_model(proto), simplify=False, fuse_attention=False)
    layout = Runner(make_session(prepared.model), context.specs)
    layout.per_sample = context.per_sample
    _STATE.update(context=context, prepared=prepared, layout=layout)


def _quality(context: QatContext, payload: bytes, samples: int | None = None) -> float:
    data = context.validation if samples is None else context.validation.take(samples)
    reference = context.reference if samples is None else [o[: len(data)] for o in context.reference]
    runner = Runner(make_session(payload), context.specs)
    runner.per_sample = context.per_sample
    outputs = runner.run(data)
    return context.measure.score(outputs, reference, data.labels)


def _run_ptq(job: PtqJob) -> float:
    from mpqc.emit import emit, run_loadable

    context: QatContext = _STATE["context"]
    prepared: Prepared = _STATE["prepared"]
    scheme = Scheme.from_json(job.scheme, prepared.analysis.layer_names)
    return run_loadable(  # e.g. float weights with 4-bit activations need the 8-bit containers
        lambda check: emit(
            prepared, scheme, context.calibration, context.recipe, context.int8_kernels, check
        ).payload(),
        lambda payload: _quality(context, payload, job.samples),
    )


def _run_job(job: QatJob) -> JobResult:
    from mpqc.emit import emit
    from mpqc.training.train import TrainingState, Validation, train_scheme

    context: QatContext = _STATE["context"]
    prepared: Prepared = _STATE["prepared"]
    scheme = Scheme.from_json(job.scheme, prepared.analysis.layer_names)
    start = time.perf_counter()
    ptq_payload = emit(prepared, scheme, context.calibration, context.recipe).payload()
    ptq = _quality(context, ptq_payload)
    config = dataclasses.replace(context.config, epochs=job.epochs, seed=job.seed, progress=False)
    outcome = train_scheme(
        prepared,
        scheme,
        context.calibration,
        context.recipe,
        context.train,
        _STATE["layout"],
        config,
        context.teacher,
        context.measure.output,
        Validation(context.validation, context.reference, context.measure),
        None if job.resume is None else TrainingState.from_bytes(job.resume),
        job.keep_state,
    )
    payload = ir.serde.serialize_model(outcome.model).SerializeToString()
    qat = _quality(context, payload)
    kept = qat < ptq  # never end below the PTQ start (ONNX Runtime decides, not torch)
    if kept:
        payload, qat = ptq_payload, ptq
    state = outcome.state.to_bytes() if outcome.state is not None else None
    return JobResult(ptq, qat, time.perf_counter() - start, payload if job.keep_model else None, kept, state)


# -- in the parent -------------------------------------------------------------------------
Job = QatJob | PtqJob


class JobStore:
    """Finished jobs in a folder (`jobs/` of a run folder), one validated entry each, keyed on
    the job's content; kept models beside them, checked by their hash. Any executor reads
    what any other wrote."""

    def __init__(self, folder: Path, context_key: str) -> None:
        self.folder, self.context_key = folder, context_key
        self._cache = Cache("jobs", _STORE_VERSION, folder=folder)

    def get(self, job: Job) -> Any:
        """The stored result (a `JobResult`, or a PTQ quality), or None."""
        key = job.key(self.context_key)
        if isinstance(job, PtqJob):
            return self._cache.get(key, lambda data: _finite(float(data["quality"])))
        model_path = self.folder / f"{key}.onnx"
        keep_model = job.keep_model

        def read(data: Any) -> JobResult:
            values = [_finite(float(data[k])) for k in ("ptq", "qat", "seconds")]
            model = None
            if keep_model:
                model = model_path.read_bytes()
                if hashlib.sha256(model).hexdigest() != data["model_sha256"]:
                    raise ValueError("model file does not match its hash")
            return JobResult(values[0], values[1], values[2], model, bool(data.get("kept_ptq", False)))

        return self._cache.get(key, read)

    def put(self, job: Job, result: Any) -> None:
        key = job.key(self.context_key)
        if isinstance(job, PtqJob):
            self._cache.put(key, {"quality": float(result)})
            return
        data: dict[str, Any] = result.to_json()
        if result.model is not None:
            atomic_write_bytes(self.folder / f"{key}.onnx", result.model)
            data["model_sha256"] = hashlib.sha256(result.model).hexdigest()
        self._cache.put(key, data)


def _finite(value: float) -> float:
    if not np.isfinite(value):
        raise ValueError("non-finite result")
    return value


class Workers:
    """Workers kept across the batches of one run (a compile's sensitivity and every QAT
    round), set up with `context` once instead of once a batch. Why: starting local workers
    costs about 3 s (spawn, imports, the model's set-up), and each worker's first job pays a
    warm-up (torch's deterministic mode imports its compiler, about 1 s; the MSE weight
    searches it remembers): paid again by every round before. Started on the first batch,
    with no more workers than its jobs; started again, bigger, when a later batch has more
    jobs than a pool held to the job count. Results do not depend on which worker ran a job."""

    def __init__(self, context: QatContext, where: ExecutorSpec | int) -> None:
        self.context, self.spec = context, _spec(where)
        self._executor: Executor | None = None
        self._size = 0
        self._started_for = 0
        #: how many times workers were started (reported, and checked by the tests)
        self.starts = 0

    def _most(self) -> int | None:
        if self.spec.kind == "local":
            return self.spec.workers or default_workers()
        return self.spec.workers  # ray: None is the cluster's CPUs, unknown until started

    def _ready(self, jobs: int) -> Executor:
        most = self._most()
        held_to_jobs = self._size >= self._started_for and (most is None or self._size < most)
        if self._executor is None or (jobs > self._size and held_to_jobs):
            self.close()
            self._executor = self.spec.start(jobs, _init_worker, (self.context,))
            self._size, self._started_for = max(1, int(getattr(self._executor, "workers", 1))), jobs
            self.starts += 1
        return self._executor

    def run(
        self, fn: JobFn, jobs: Sequence[Any], on_done: OnDone | None = None, on_retry: OnRetry | None = None
    ) -> list[Any]:
        executor = self._ready(len(jobs))
        try:
            return executor.run(fn, jobs, on_done, on_retry)
        except BaseException:
            self._executor = None  # an executor that raised has stopped its workers
            raise

    def close(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.close()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Where = ExecutorSpec | int | Workers


def _spec(where: ExecutorSpec | int) -> ExecutorSpec:
    return where if isinstance(where, ExecutorSpec) else ExecutorSpec(workers=max(1, where))


def _run_stored(
    context: QatContext,
    jobs: Sequence[Job],
    fn: Callable[[Any], Any],
    where: Where,
    store: JobStore | None,
    progress: Callable[[int], None] | None,
    on_retry: OnRetry | None,
) -> list[Any]:
    """Results in job order: stored ones read back, the rest run where `where` says and
    stored as each finishes (a retry is reported with the job's index in `jobs`)."""
    results: list[Any] = [store.get(job) if store is not None else None for job in jobs]
    todo = [i for i, r in enumerate(results) if r is None]
    if progress is not None and len(todo) < len(jobs):
        progress(len(jobs) - len(todo))
    if not todo:
        return results

    def done(position: int, result: Any) -> None:
        index = todo[position]
        results[index] = result
        if store is not None:
            store.put(jobs[index], result)
        if progress is not None:
            progress(1)

    def retried(retry: Retry) -> None:
        if on_retry is not None:
            on_retry(dataclasses.replace(retry, job=todo[retry.job]))

    if isinstance(where, Workers):
        if where.context is not context:
            raise ValueError("these workers were set up with another QAT context")
        where.run(fn, [jobs[i] for i in todo], done, retried)
        return results
    with Workers(context, where) as workers:
        workers.run(fn, [jobs[i] for i in todo], done, retried)
    return results


def run_ptq_jobs(
    context: QatContext,
    schemes: Sequence[Scheme],
    samples: int,
    where: Where,
    progress: Callable[[int], None] | None = None,
    store: JobStore | None = None,
    on_retry: OnRetry | None = None,
) -> list[float]:
    """PTQ quality of each scheme on the first `samples` validation samples, in job order."""
    jobs = [PtqJob(s.to_json(), samples) for s in schemes]
    return _run_stored(context, jobs, _run_ptq, where, store, progress, on_retry)


def run_jobs(
    context: QatContext,
    jobs: Sequence[QatJob],
    where: Where,
    store: JobStore | None = None,
    progress: Callable[[int], None] | None = None,
    on_retry: OnRetry | None = None,
) -> list[JobResult]:
    """PTQ and QAT of each job, in job order (stored ones read back)."""
    return _run_stored(context, jobs, _run_job, where, store, progress, on_retry)
