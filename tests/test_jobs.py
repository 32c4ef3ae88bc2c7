from __future__ import annotations

import pytest

from mpqc.jobs import JobResult, JobStore, QatJob, context_from, run_jobs
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
