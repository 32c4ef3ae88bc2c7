"""ONNX Runtime's own quantization recipes, the baselines every mpqc claim is measured
against (benchmarks, the real-model tests): static QDQ, dynamic int8 and MatMulNBits.

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
from typing import Any

import numpy as np
import onnx

__all__ = [
    "ort_quantize_static",
    "ort_quantize_dynamic",
    "ort_transformer_dynamic",
    "ort_matmul_nbits",
    "ort_quantize_with_options",
]

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


def ort_quantize_dynamic(model: str | Path, output: str | Path) -> Path:
    """ORT's `quantize_dynamic` as documented: int8 weights (QInt8), activations quantized at
    run time (MatMulInteger/ConvInteger, fused on load), after `quant_pre_process`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(output), weight_type=QuantType.QInt8)
    return Path(output)


def ort_transformer_dynamic(model: str | Path, output: str | Path) -> Path:
    """ORT's recipe for transformers: its transformer optimizer first (BERT fusions such as
    SkipLayerNormalization, BiasGelu and Attention, where it recognises the pattern), then
    `quantize_dynamic` as above (which turns a fused Attention into QAttention)."""
    from onnxruntime.transformers import optimizer

    with tempfile.TemporaryDirectory() as tmp:
        fused = Path(tmp) / "fused.onnx"
        optimizer.optimize_model(str(model), model_type="bert", opt_level=0).save_model_to_file(str(fused))
        return ort_quantize_dynamic(fused, output)


def ort_matmul_nbits(
    model: str | Path, output: str | Path, *, bits: int = 4, block: int = 32, accuracy_level: int = 4
) -> Path:
    """ORT's `MatMulNBitsQuantizer` (weight-only, symmetric blocks along K, the
    `com.microsoft` MatMulNBits operator) on every MatMul with a constant weight."""
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )
    from onnxruntime.quantization.quant_utils import QuantFormat

    config = DefaultWeightOnlyQuantConfig(
        block_size=block,
        is_symmetric=True,
        accuracy_level=accuracy_level,
        quant_format=QuantFormat.QOperator,
        bits=bits,
    )
    quantizer = MatMulNBitsQuantizer(onnx.load(str(model)), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(output), use_external_data_format=False)
    return Path(output)


def ort_quantize_with_options(
    model: str | Path, calibration: Mapping[str, np.ndarray], output: str | Path, options: Mapping[str, Any]
) -> Path:
    """`quantize_static` with quantizer options as `mpqc.ort_overrides.to_ort_overrides`
    writes them (JSON: types by name), on the calibration samples one at a time."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    from mpqc.ort_overrides import ort_quant_options

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = _samples(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    quantize_static(str(model), str(output), _Reader(), **ort_quant_options(options))
    return Path(output)
