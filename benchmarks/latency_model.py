"""Predicted vs measured `ort-cpu` latency (1 thread, batch 1) for random mixed schemes.

    python benchmarks/latency_model.py [--schemes 10] [--rounds 200]

For each model: the cost model is profiled once (its variants), then each random scheme's
latency is predicted without running it and measured by running its lowered model. The
machine's speed drifts by tens of percent between minutes on this shared VM, so the
variants are timed again in the same interleaved rounds as the schemes and node costs
re-derived from those walls ('same run'); the table shows both errors.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BUILD, resnet18_path, table  # noqa: E402
from mpqc.models import zoo_path  # noqa: E402
from mpqc.targets import OrtCpuTarget  # noqa: E402

from mpqc.scheme import Scheme  # noqa: E402
from mpqc.workload import Workload  # noqa: E402


def run(name: str, path: Path, data: Path | None, count: int, rounds: int, seed: int) -> list[str]:
    target = OrtCpuTarget()
    work = Workload.build(path, data, target=target, use_cache=False)
    feed = work.sample_feed()
    start = time.perf_counter()
    cost = work.costs
    profile_seconds = time.perf_counter() - start
    rng = random.Random(seed)
    layers = work.prepared.analysis.layers
    names = [layer.name for layer in layers]
    # every precision the target's search space has for each layer (w8a8d, w4nb: linear layers)
    choices = {layer.name: list(target.search_space(layer)) for layer in layers}
    schemes = [Scheme({n: rng.choice(choices[n]) for n in names}) for _ in range(count)]
    assert not set(schemes) & set(cost.mixed_schemes()), "a held-out scheme is one the costs were fitted on"
    predicted = [cost.latency(s) for s in schemes]
    timed = cost.timed()
    runs = target.measure_interleaved([p for _, p in timed] + [cost.lower(s) for s in schemes], feed, rounds)
    measured = [m.median_s for m in runs[len(timed) :]]
    before = dict(cost.walls)
    cost.set_walls({label: m.median_s for (label, _), m in zip(timed, runs)})
    drift = statistics.median(cost.walls[k] / before[k] for k in before)
    recalibrated = [cost.latency(s) for s in schemes]
    raw = [abs(p - m) / m for p, m in zip(predicted, measured)]
    scaled = [abs(p - m) / m for p, m in zip(recalibrated, measured)]
    return [
        name,
        str(len(names)),
        str(count),
        f"{profile_seconds:.1f}",
        f"{min(measured) * 1e3:.3f}-{max(measured) * 1e3:.3f}",
        f"{drift:.3f}",
        f"{100 * statistics.median(raw):.1f}",
        f"{100 * max(raw):.1f}",
        f"{100 * statistics.median(scaled):.1f}",
        f"{100 * max(scaled):.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schemes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="digits_cnn,resnet18_cifar,mobilenetv2,transformer,minilm_bert")
    args = parser.parse_args()
    rows = [
        [
            "model",
            "layers",
            "schemes",
            "profile s",
            "measured ms",
            "drift",
            "med err %",
            "max err %",
            "med err % (same run)",
            "max err % (same run)",
        ]
    ]
    for name in args.models.split(","):
        data = None
        if name == "resnet18_cifar":
            path = resnet18_path()
        elif name == "minilm_bert":
            from mpqc.models.hf_encoder import MINILM, export_bert

            path, data, _ = export_bert(BUILD / "minilm_bert", MINILM)
        else:
            path = zoo_path(name)
        rows.append(run(name, path, data, args.schemes, args.rounds, args.seed))
    print(table(rows))
    print("\ndrift = median over variants of wall(now) / wall(profiling); errors are |pred - meas| / meas.")
    print("'same run': node costs re-derived from the variants' wall times measured in the same interleaved rounds")
    print("as the schemes (profiles unchanged; no scheme is run for its own prediction).")


if __name__ == "__main__":
    main()
