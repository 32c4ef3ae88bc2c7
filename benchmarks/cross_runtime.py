"""Where ONNX Runtime and OpenVINO disagree on what a precision costs, and how well each
target's cost model predicts mixed schemes (1 thread, batch 1):

    python benchmarks/cross_runtime.py [--models digits_cnn,resnet8,...] [--schemes 8] [--rounds 100]

Per model: both targets profile their variants; the uniform precisions' measured latency
relative to float on each runtime (the same QDQ models); the Spearman correlation of the
per-layer costs at w8a8 between the runtimes; then random mixed schemes (each layer a
precision its target runs) are predicted and measured on each runtime, with the variants
timed again in the same interleaved rounds (node costs re-derived: 'same run').
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path
from typing import Any

from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BUILD, table  # noqa: E402
from mpqc.models import zoo_path  # noqa: E402
from mpqc.targets import OpenVinoCpuTarget, OrtCpuTarget  # noqa: E402

from mpqc.precision import W8A8  # noqa: E402
from mpqc.realkit import kit_models  # noqa: E402
from mpqc.scheme import Scheme  # noqa: E402
from mpqc.workload import Workload  # noqa: E402

LABELS = ("w8a8", "w8a8d", "w4nb", "w8af", "w4af")


def models(wanted: list[str]) -> list[tuple[str, Path, Path | None]]:
    found: list[tuple[str, Path, Path | None]] = [(k.name, k.model, k.calib) for k in kit_models()]
    found += [(n, zoo_path(n), None) for n in ("digits_cnn", "resnet8", "transformer")]
    if not wanted or "minilm_bert" in wanted:
        from mpqc.models.hf_encoder import MINILM, export_bert

        path, calib, _ = export_bert(BUILD / "minilm_bert", MINILM)
        found.append(("minilm_bert", path, calib))
    return [m for m in found if not wanted or m[0] in wanted]


def prediction_errors(work: Workload, schemes: list[Scheme], rounds: int) -> tuple[float, float]:
    """Median and worst |predicted - measured| / measured, variants re-timed in the same run."""
    costs: Any = work.costs  # both measured cost models: timed, lower, set_walls
    assert work.target is not None
    assert not set(schemes) & set(costs.mixed_schemes()), "held-out schemes were fitted on"
    timed = costs.timed()
    lowered = [costs.lower(s) for s in schemes]
    runs = work.target.measure_interleaved([p for _, p in timed] + lowered, work.sample_feed(), rounds)
    costs.set_walls({label: m.median_s for (label, _), m in zip(timed, runs)})
    errors = [abs(costs.latency(s) - m.median_s) / m.median_s for s, m in zip(schemes, runs[len(timed) :])]
    return statistics.median(errors), max(errors)


def bench(name: str, path: Path, data: Path | None, count: int, rounds: int) -> tuple[list[str], list[str]]:
    works = {
        "ort": Workload.build(path, data, target=OrtCpuTarget(), use_cache=False),
        "ov": Workload.build(path, data, target=OpenVinoCpuTarget(), use_cache=False),
    }
    ratios = {}
    for key, work in works.items():
        walls = getattr(work.costs, "walls")  # noqa: B009 (measured cost models keep their variants' walls)
        ratios[key] = {label: walls[label] / walls["float"] for label in LABELS if label in walls}
    layers = works["ort"].prepared.analysis.layers
    ort_w8 = [works["ort"].costs.layer_cost(x.name, W8A8) for x in layers]
    ov_w8 = [works["ov"].costs.layer_cost(x.name, W8A8) for x in layers]
    rho = spearmanr(ort_w8, ov_w8).statistic if len(layers) > 2 else float("nan")
    rng = random.Random(0)
    target = works["ort"].target
    assert target is not None
    choices = {x.name: list(target.search_space(x)) for x in layers}
    schemes = [Scheme({x.name: rng.choice(choices[x.name]) for x in layers}) for _ in range(count)]
    errors = {key: prediction_errors(work, schemes, rounds) for key, work in works.items()}
    row = [name, str(len(layers))]
    for label in LABELS:
        a, b = ratios["ort"].get(label), ratios["ov"].get(label)
        row.append("-" if a is None or b is None else f"{a:.2f} / {b:.2f}")
    row.append(f"{rho:.2f}")
    pred = [
        name,
        f"{100 * errors['ort'][0]:.1f}",
        f"{100 * errors['ort'][1]:.1f}",
        f"{100 * errors['ov'][0]:.1f}",
        f"{100 * errors['ov'][1]:.1f}",
    ]
    return row, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="")
    parser.add_argument("--schemes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    wanted = [m for m in args.models.split(",") if m]
    ratios = [["model", "layers", *[f"{label} ORT/OV" for label in LABELS], "rho layer w8a8"]]
    preds = [["model", "ORT med %", "ORT max %", "OV med %", "OV max %"]]
    for name, path, data in models(wanted):
        row, pred = bench(name, path, data, args.schemes, args.rounds)
        ratios.append(row)
        preds.append(pred)
        print(f"[cross_runtime] {name} done", file=sys.stderr, flush=True)
    print(table(ratios))
    print(
        "\nmeasured latency of the uniform variant / float, on ONNX Runtime / on OpenVINO (same QDQ model; forms only"
        " on MatMul/Gemm layers, the rest float); rho: Spearman of per-layer w8a8 costs between the runtimes\n"
    )
    print(table(preds))
    print(
        f"\n|predicted - measured| / measured over {args.schemes} random mixed schemes, "
        "variants re-timed in the same run"
    )


if __name__ == "__main__":
    main()
