"""ONNX Runtime's own static quantization, the baseline every mpqc PTQ claim is measured
against (benchmarks, the real-model tests).

`ort_quantize_static` runs `onnxruntime.quantization.quantize_static` the way its
documentation recommends: the model pre-processed by ORT's `quant_pre_process` (shape
inference, and an opset upgrade to 13 where per-channel QDQ needs it), QDQ format, the same
calibration samples fed one at a time, and otherwise ORT's defaults unless asked. Only ORT's
own behaviour is measured here; nothing of mpqc runs inside it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx

__all__ = ["ort_quantize_static"]

#: weight bits -> ORT QuantType name
_WEIGHT_TYPES = {8: "QInt8", 4: "QInt4"}


def _samples(inputs: Mapping[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """One feed per calibration sample, batch axis 0 kept (batch 1)."""
    count = len(next(iter(inputs.values())))
    for i in range(count):
        yield {name: np.ascontiguousarray(array[i : i + 1]) for name, array in inputs.items()}


def ort_quantize_static(
    model: str | Path,
    calibration: Mapping[str, np.ndarray],
    output: str | Path,
    *,
    weight_bits: int = 8,
    per_channel: bool = False,
    method: str = "MinMax",
) -> Path:
    """Quantize `model` with ORT's `quantize_static` (QDQ, uint8 activations, int8 or int4
    weights) on `calibration` (input name -> batch-first array) and write it to `output`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if weight_bits not in _WEIGHT_TYPES:
        raise ValueError(f"ORT quantize_static baseline: weight_bits must be one of {sorted(_WEIGHT_TYPES)}")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = _samples(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(model)
        prepared = Path(tmp) / "prepared.onnx"
        graph = onnx.load(str(source))
        opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < 13:  # per-channel QuantizeLinear (axis) and int4 need opset 13+/21
            graph = onnx.version_converter.convert_version(graph, 13)
            upgraded = Path(tmp) / "upgraded.onnx"
            onnx.save(graph, str(upgraded))
            source = upgraded
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(output),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=getattr(QuantType, _WEIGHT_TYPES[weight_bits]),
            calibrate_method=getattr(CalibrationMethod, method),
        )
    return Path(output)
