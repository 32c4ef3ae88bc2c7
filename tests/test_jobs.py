from __future__ import annotations

import dataclasses
import os

import pytest

from mpqc.jobs import JobResult, JobStore, QatJob, Workers, context_from, run_jobs
from mpqc.scheme import Scheme
from mpqc.training import QatConfig
from mpqc.workload import Workload


@pytest.fixture(scope="module")
def setup(default_model):
    work = Workload.build(default_model)
    context = context_from(work, QatConfig(epochs=2, seed=1), (8,), (2,))
    return context, Scheme.parse("w2a8", work.prepared.analysis.layer_names).to_json()


def test_a_job_resumed_from_a_shorter_one_gives_what_one_from_scratch_gives(setup):
    context, scheme = setup
    (short,) = run_jobs(context, [QatJob(scheme, 1, 1, keep_model=True, keep_state=True)], 1)
    assert short.state is not None and short.model is not None
    scratch, resumed = QatJob(scheme, 2, 1, True), QatJob(scheme, 2, 1, True, resume=short.state)
    full, went_on = run_jobs(context, [scratch, resumed], 1)
    assert went_on.model == full.model != short.model
    assert (went_on.ptq, went_on.qat, went_on.kept_ptq) == (full.ptq, full.qat, full.kept_ptq)
    assert went_on.state is None and full.state is None  # not asked for
    assert resumed.key(context.key) == scratch.key(context.key)  # same result, same stored entry


def test_the_store_keeps_no_state(tmp_path):
    """A state is as large as what training moves, twice, plus Adam's moments (every weight
    where weights train); a run folder keeps results and models only. A resumed compile
    replays a short run instead."""
    store = JobStore(tmp_path, "context")
    job = QatJob({"layers": {}}, 1, 0, keep_model=True, keep_state=True)
    store.put(job, JobResult(0.5, 0.6, 1.0, b"model", False, b"state"))
    got = store.get(job)
    assert got is not None and (got.model, got.state, got.qat) == (b"model", None, 0.6)
    assert sorted(p.suffix for p in tmp_path.rglob("*") if p.is_file()) == [".json", ".onnx"]


def _pid(_: object) -> int:
    return os.getpid()


def _fail(_: object) -> int:
    raise RuntimeError("this job fails")


def test_workers_start_once_for_every_batch(setup):
    context, _ = setup
    with Workers(context, 2) as pool:
        first = pool.run(_pid, [0, 1, 2])
        second = pool.run(_pid, [0, 1])
        assert pool.starts == 1 and len(set(first)) == 2 and set(second) <= set(first)
        assert os.getpid() not in first


def test_workers_start_again_bigger_when_a_later_batch_has_more_jobs(setup):
    context, _ = setup
    with Workers(context, 2) as pool:
        assert pool.run(_pid, [0]) == [os.getpid()]  # one job: in this process
        pids = pool.run(_pid, [0, 1, 2])
        assert pool.starts == 2 and len(set(pids)) == 2 and os.getpid() not in pids
        assert set(pool.run(_pid, [0, 1, 2, 3])) == set(pids) and pool.starts == 2  # already at --workers


def test_workers_after_a_failed_batch_start_afresh(setup):
    context, _ = setup
    with Workers(context, 2) as pool:
        with pytest.raises(RuntimeError, match="this job fails"):
            pool.run(_fail, [0, 1])
        assert len(set(pool.run(_pid, [0, 1]))) == 2 and pool.starts == 2


def test_workers_serve_only_the_context_they_were_set_up_with(setup):
    context, scheme = setup
    other = dataclasses.replace(context)
    with Workers(context, 1) as pool, pytest.raises(ValueError, match="another QAT context"):
        run_jobs(other, [QatJob(scheme, 1, 1)], pool)


def test_a_job_gives_the_same_bytes_in_a_kept_worker_as_in_a_fresh_one(setup):
    """What a worker remembers between batches (MSE searches, torch's state) changes no result."""
    context, scheme = setup
    other = Scheme.parse("w4a8", list(scheme["layers"])).to_json()
    jobs = [QatJob(scheme, 1, 1, keep_model=True), QatJob(other, 1, 1, keep_model=True)]
    fresh = run_jobs(context, jobs, 2)
    with Workers(context, 2) as pool:
        run_jobs(context, jobs[::-1], pool)
        kept = run_jobs(context, jobs, pool)
    assert [r.model for r in kept] == [r.model for r in fresh] and pool.starts == 1
