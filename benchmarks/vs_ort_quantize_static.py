"""mpqc w8a8 against ONNX Runtime's own `quantize_static` (QDQ, per-channel, u8 activations,
s8 weights, min-max, 64 calibration samples), in one process: accuracy, quantize time and
single-thread batch-1 latency, with mpqc/ORT ratios.

    python benchmarks/vs_ort_quantize_static.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    best_of,
    digits,
    interleaved_latency,
    paired_ratio,
    resnet18_path,
    single_thread_session,
    table,
    top1,
)
from mpqc.models import zoo_path  # noqa: E402

import mpqc  # noqa: E402

CALIB_SAMPLES = 64


class _Reader(CalibrationDataReader):
    def __init__(self, inputs: dict[str, np.ndarray]) -> None:
        name, array = next(iter(inputs.items()))
        self._items = iter([{name: array[i : i + 1]} for i in range(len(array))])

    def get_next(self):
        return next(self._items, None)


def bench(name: str, path: Path, repeats: int, workdir: Path) -> list[str]:
    calib = digits(path, "train").take(CALIB_SAMPLES)
    test = digits(path, "test")
    every = dict(calib.inputs)  # validation and test given: all 64 samples calibrate, as for ORT

    mpqc_seconds, ours = best_of(
        3,
        lambda: mpqc.quantize(
            path, "w8a8", every, val_data=every, test_data=every, evaluate=False, output=workdir / f"{name}_mpqc.onnx"
        ),
    )
    ort_path = workdir / f"{name}_ort.onnx"
    ort_seconds, _ = best_of(
        3,
        lambda: quantize_static(
            str(path),
            str(ort_path),
            _Reader(dict(calib.inputs)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        ),
    )

    float_bytes = path.read_bytes()
    payloads = {"float": float_bytes, "mpqc": ours.model.SerializeToString(), "ort": ort_path.read_bytes()}
    acc = {k: top1(v, test) for k, v in payloads.items()}
    feed = {k: v[:1] for k, v in test.inputs.items()}
    lat, times = interleaved_latency({k: single_thread_session(v) for k, v in payloads.items()}, feed, repeats)
    return [
        name,
        f"{100 * acc['float']:.2f}",
        f"{100 * acc['ort']:.2f}",
        f"{100 * acc['mpqc']:.2f}",
        f"{ort_seconds:.2f}",
        f"{mpqc_seconds:.2f}",
        f"{mpqc_seconds / ort_seconds:.2f}",
        f"{lat['float'][0]:.3f}",
        f"{lat['ort'][0]:.3f}±{lat['ort'][1]:.3f}",
        f"{lat['mpqc'][0]:.3f}±{lat['mpqc'][1]:.3f}",
        f"{paired_ratio(times, 'mpqc', 'ort'):.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--models", default="digits_cnn,resnet18_cifar,transformer")
    args = parser.parse_args()
    header = [
        "model",
        "float top1",
        "ORT top1",
        "mpqc top1",
        "ORT quant s",
        "mpqc quant s",
        "time ratio",
        "float ms",
        "ORT ms (IQR)",
        "mpqc ms (IQR)",
        "latency ratio",
    ]
    rows = [header]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            path = resnet18_path() if name == "resnet18_cifar" else zoo_path(name)
            rows.append(bench(name, path, args.repeats, Path(tmp)))
    print(table(rows))
    print(
        "\nratios are mpqc / ONNX Runtime quantize_static. quantize time: best of 3 after a warm-up, 64 calibration"
        f" samples. latency: batch 1, 1 thread, {args.repeats} interleaved rounds, median (IQR); ratio = median of"
        " per-round ratios. accuracy: digits test split (450) in ONNX Runtime"
    )


if __name__ == "__main__":
    main()
