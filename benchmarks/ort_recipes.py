"""mpqc's quality-constrained winner against ONNX Runtime's own recipes, side by side in one
run, on the real-model kit, our zoo (CNN, transformer) and a MiniLM-sized BERT encoder
(exported here from `transformers`, random weights):

    python benchmarks/ort_recipes.py [--models digits_cnn,minilm_bert,...] [--repeats 100]

Recipes: float; ORT `quantize_static` (QDQ, uint8 activations, min-max) per-tensor (its
default) and per-channel; ORT `quantize_dynamic` (int8); where the model has MatMul layers,
ORT's transformer recipe (its transformer optimizer, then `quantize_dynamic`) and ORT
`MatMulNBitsQuantizer` (int4, block 32, accuracy level 4); mpqc `compile
--target ort-cpu --max-drop 1 --qat-policy never` (the fastest scheme within 1 point of
float on mpqc's validation split; no QAT, so PTQ only, like every ORT recipe here).

Quality is measured on the test split in ONNX Runtime: top-1 with labels (zoo), else the
fidelity to the float model (kit, BERT; see `mpqc.quality`). Latency: batch 1, 1 thread,
all recipes of a model timed in the same interleaved rounds (each timed run after an
untimed one of the same model); ×float is the median of the per-round ratios. The last
table asks the question of the issue: is mpqc's winner at least as fast as the fastest ORT
recipe that stays within the same drop?
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BUILD, interleaved_latency, paired_ratio, single_thread_session, table  # noqa: E402
from mpqc.models import zoo_path  # noqa: E402

import mpqc  # noqa: E402
from mpqc.baselines import (  # noqa: E402
    ort_matmul_nbits,
    ort_quantize_dynamic,
    ort_quantize_static,
    ort_transformer_dynamic,
)
from mpqc.realkit import kit_models  # noqa: E402

DROP = 1.0  # points


@dataclass
class Case:
    """One model: where it is, its calibration and test data (None: the built-in digits)."""

    name: str
    model: Path
    calib: Path | None
    test: Path | None


def cases(wanted: list[str]) -> list[Case]:
    found = [Case(k.name, k.model, k.calib, k.test) for k in kit_models()]
    found += [Case(n, zoo_path(n), None, None) for n in ("digits_cnn", "transformer")]
    if not wanted or "minilm_bert" in wanted:
        from mpqc.models.hf_encoder import MINILM, export_bert

        model, calib, test = export_bert(BUILD / "minilm_bert", MINILM)
        found.append(Case("minilm_bert", model, calib, test))
    return [c for c in found if not wanted or c.name in wanted]


def _calibration(case: Case) -> dict[str, np.ndarray]:
    if case.calib is not None:
        return dict(np.load(case.calib))
    from mpqc.workload import Workload

    train = Workload.build(case.model).splits.train
    return {name: array[:64] for name, array in train.inputs.items()}


def _quality(path: Path, case: Case) -> tuple[float, str]:
    """Test-split quality in ONNX Runtime: top-1 with labels, else fidelity to float."""
    if case.test is None:
        result = mpqc.evaluate(path, split="test")
    else:
        result = mpqc.evaluate(path, data=case.test, reference=case.model, split="all")
    return result.quality, result.measure


def bench(case: Case, repeats: int, workdir: Path) -> tuple[list[list[str]], list[str]]:
    layers = mpqc.analyze(case.model).layers
    calib = _calibration(case)
    files: dict[str, Path] = {"float": case.model}
    seconds: dict[str, float] = {}

    def timed(name: str, make) -> None:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        files[name] = make(workdir / f"{case.name}_{name.replace(' ', '_')}.onnx")
        seconds[name] = time.perf_counter() - start

    timed("ORT static", lambda out: ort_quantize_static(case.model, calib, out))
    timed("ORT static pc", lambda out: ort_quantize_static(case.model, calib, out, per_channel=True))
    timed("ORT dynamic", lambda out: ort_quantize_dynamic(case.model, out))
    if any(layer.op_type == "MatMul" for layer in layers):
        timed("ORT opt+dynamic", lambda out: ort_transformer_dynamic(case.model, out))
        timed("ORT nbits int4", lambda out: ort_matmul_nbits(case.model, out))
    options = mpqc.CompileOptions(max_drop=DROP / 100, qat_policy="never", progress=False)
    data = {} if case.calib is None else {"data": case.calib, "test_data": case.test}
    start = time.perf_counter()
    result = mpqc.compile(case.model, target="ort-cpu", output=workdir / f"{case.name}_run", options=options, **data)
    seconds["mpqc"] = time.perf_counter() - start
    files["mpqc"] = result.output / "model.onnx"
    quality = {name: _quality(path, case) for name, path in files.items()}
    measure = quality["float"][1]
    reference = quality["float"][0] if case.test is None else 1.0
    test = dict(np.load(case.test)) if case.test is not None else calib
    feed = {name: np.ascontiguousarray(array[:1]) for name, array in test.items()}
    sessions = {name: single_thread_session(path.read_bytes()) for name, path in files.items()}
    latency, times = interleaved_latency(sessions, feed, repeats)
    rows = []
    for name in files:
        drop = 100 * (reference - quality[name][0])
        rows.append(
            [
                case.name,
                name,
                f"{latency[name][0]:.3f}",
                f"{paired_ratio(times, name, 'float'):.3f}",
                f"{100 * quality[name][0]:.2f}",
                f"{drop:+.2f}",
                f"{seconds.get(name, 0.0):.1f}",
            ]
        )
    within = [n for n in files if n.startswith("ORT") and 100 * (reference - quality[n][0]) <= DROP]
    fastest = min(within, key=lambda n: latency[n][0]) if within else None
    mpqc_drop = 100 * (reference - quality["mpqc"][0])
    verdict = [
        case.name,
        measure,
        f"{len(layers)}",
        result.scheme.summary()[:48],
        f"{mpqc_drop:+.2f}",
        fastest or "none within",
        "-" if fastest is None else f"{100 * (reference - quality[fastest][0]):+.2f}",
        "-" if fastest is None else f"{paired_ratio(times, 'mpqc', fastest):.3f}",
    ]
    return rows, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    args = parser.parse_args()
    wanted = [m for m in args.models.split(",") if m]
    rows = [["model", "recipe", "ms", "x float", "quality %", "drop pts", "make s"]]
    verdicts = [
        ["model", "measure", "layers", "mpqc winner", "mpqc drop", "fastest ORT within 1 pt", "its drop", "mpqc/it"]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases(wanted):
            start = time.perf_counter()
            found, verdict = bench(case, args.repeats, Path(tmp))
            rows += found
            verdicts.append(verdict)
            print(f"[ort_recipes] {case.name} done in {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    print(table(rows))
    print(
        f"\nbatch 1, 1 thread, {args.repeats} interleaved rounds per model; quality on the test split (top-1 with"
        " labels, else fidelity to float); drop = float - recipe in points; make s = time to produce the model\n"
    )
    print(table(verdicts))
    print("\nmpqc/it: median per-round latency ratio of mpqc's winner to the fastest ORT recipe within 1 point")


if __name__ == "__main__":
    main()
