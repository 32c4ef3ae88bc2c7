"""Backend profiles: what a deployment backend accepts in a QDQ model.

A *target* prices precisions; a *backend* is what will load the emitted file (ONNX Runtime's
CPU EP, TensorRT, Qualcomm QNN through ONNX Runtime, OpenVINO). `--backend` narrows the
search to the precisions the backend runs for each layer and sets how mpqc emits them
(activation signedness, zero points, per-channel axes, bias quantization); the validator
(`mpqc.backend_check`) checks an emitted file against the same rules and names each
violation. Every rule cites the documentation or code it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mpqc.analysis import QUANTIZABLE_OPS, Layer, takes_form
from mpqc.errors import OptionError
from mpqc.precision import Precision

__all__ = ["Backend", "BACKENDS", "get_backend", "DEFAULT_BACKEND"]

#: (bits, signed) of a quantized type
QType = tuple[int, bool]

_TRT_DOC = "https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/work-quantized-types.html"
_TRT_EXPLICIT = (
    "https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-explicit-quantization.html"
)
_QNN_DOC = "https://onnxruntime.ai/docs/execution-providers/QNN-ExecutionProvider.html#running-a-quantized-model"
_QNN_CODE = "onnxruntime/quantization/execution_providers/qnn/quant_config.py (get_qnn_qdq_config)"
_OV_DOC = (
    "https://docs.openvino.ai/2025/openvino-workflow/model-optimization-guide/quantizing-models-post-training.html"
)
_ORT_DOC = "https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html"


@dataclass(frozen=True)
class Backend:
    """The rules of one backend. `labels` are the precisions it runs (None: every one mpqc
    emits); the rest says how a quantizer must look for it to be accepted."""

    name: str
    description: str
    #: precision labels accepted (None = all); forms not listed are refused by label
    labels: frozenset[str] | None
    #: activation quantizer types: (bits, signed)
    activation_types: frozenset[QType]
    #: activation quantizers must be signed with zero point 0 (symmetric)
    signed_activations: bool = False
    #: weight quantizer types: (bits, signed)
    weight_types: frozenset[QType] = frozenset({(8, True), (4, True), (2, True)})
    #: every zero point (weights and activations) must be 0
    zero_points_zero: bool = False
    #: op type -> weight axes that may carry per-channel scales (absent op: per-tensor only)
    per_channel_axes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    #: blocked (block_size) weight DequantizeLinear allowed, and for which weight bits
    blocked_bits: frozenset[int] = frozenset()
    #: weight bits a layer may hold without quantized activations (weight-only)
    weight_only_bits: frozenset[int] = frozenset()
    #: int32 bias behind a DequantizeLinear (ORT fuses it into QLinearConv/QGemm)
    quantized_bias: bool = True
    #: DynamicQuantizeLinear allowed (the dynamic form)
    dynamic: bool = False
    #: ops outside the standard ONNX domain allowed
    custom_ops: bool = False
    #: int8 weights held in [-127, 127] (TensorRT's documented weight range)
    narrow_weights: bool = False
    #: runs ONNX's `Attention` (opset 23), so the front end may fuse attention into it
    attention: bool = False
    #: documentation each rule is taken from
    references: tuple[str, ...] = ()

    # -- what the search may choose -----------------------------------------------------------
    def allows_kind(self, precision: Precision) -> bool:
        """Whether this backend runs `precision` for some layer."""
        return precision.is_float or self.labels is None or precision.label in self.labels

    def refusal(self, layer: Layer, precision: Precision) -> str | None:
        """Why `layer` cannot run at `precision` here, or None when it can."""
        if precision.is_float:
            return None
        if not self.allows_kind(precision):
            return f"{self.name} runs {', '.join(sorted(self.labels or ()))}, not {precision.label}"
        if not takes_form(layer, precision.form, precision.block):
            return f"{precision.label} applies to MatMul/Gemm layers with whole blocks only"
        if precision.form == "qdq" and precision.w_bits is not None and precision.a_bits is None:
            if precision.w_bits not in self.weight_only_bits:
                return f"{self.name} runs no weight-only {precision.w_bits}-bit layers"
        if precision.form == "nbits" and precision.w_bits not in self.blocked_bits:
            return f"{self.name} runs no blocked {precision.w_bits}-bit weights"
        return None

    def allows(self, layer: Layer, precision: Precision) -> bool:
        return self.refusal(layer, precision) is None

    def per_tensor_ops(self) -> tuple[str, ...]:
        """Layer ops whose weights must be per-tensor here (the CPU EP takes per-channel everywhere)."""
        return tuple(op for op in QUANTIZABLE_OPS if op not in self.per_channel_axes)

    def recipe_settings(self) -> dict[str, Any]:
        """How `Recipe` must emit for this backend (merged over the target's defaults)."""
        settings: dict[str, Any] = {}
        if self.signed_activations:
            settings["signed_activations"] = True
        if self.zero_points_zero:
            settings["zero_points_zero"] = True
        if not self.quantized_bias:
            settings["quantize_bias"] = False
        if self.per_tensor_ops():
            settings["per_tensor_weight_ops"] = self.per_tensor_ops()
        return settings

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "precisions": None if self.labels is None else sorted(self.labels),
            "references": list(self.references),
        }


_ALL_WEIGHTS = frozenset({(8, True), (4, True), (2, True)})

BACKENDS: dict[str, Backend] = {
    # Everything mpqc emits is written for ONNX Runtime's CPU EP; the rules only state it.
    "ort": Backend(
        name="ort",
        description="ONNX Runtime CPU EP: every precision mpqc emits (QDQ, dynamic int8, MatMulNBits)",
        labels=None,
        activation_types=frozenset({(8, False), (8, True), (4, False), (4, True), (2, False), (2, True)}),
        weight_types=_ALL_WEIGHTS | {(8, False)},
        per_channel_axes={"Conv": (0,), "ConvTranspose": (1,), "Gemm": (0, 1), "MatMul": (1,)},
        blocked_bits=frozenset({4, 8, 2}),
        weight_only_bits=frozenset({8, 4, 2}),
        dynamic=True,
        custom_ops=True,
        # a CPU kernel since ONNX Runtime 1.23 (microsoft/onnxruntime#25156)
        attention=True,
        references=(_ORT_DOC,),
    ),
    # TensorRT 10: "The quantization scheme is symmetric quantization ... INT8 ... Weight-only
    # quantization is supported for INT4" (_TRT_DOC); "TensorRT only supports symmetric
    # quantization - zeroPt must be all zeros" (its ONNX parser); Q/DQ types INT8, FP8, INT4,
    # FP4, so no int32 bias DequantizeLinear; activation scales per tensor, weight scales per
    # tensor or per output channel; INT4 weights block-quantized (_TRT_EXPLICIT); INT8 weights
    # in [-127, 127].
    "tensorrt": Backend(
        name="tensorrt",
        description="TensorRT 10 explicit quantization: symmetric int8 (zero point 0), int4 weight-only blocked",
        labels=frozenset({"w8a8", "w4nb", "w4nb64", "w4nb128"}),
        activation_types=frozenset({(8, True)}),
        signed_activations=True,
        weight_types=frozenset({(8, True), (4, True)}),
        zero_points_zero=True,
        per_channel_axes={"Conv": (0,), "ConvTranspose": (1,), "Gemm": (0, 1), "MatMul": (1,)},
        blocked_bits=frozenset({4}),
        weight_only_bits=frozenset(),
        quantized_bias=False,
        narrow_weights=True,
        references=(_TRT_DOC, _TRT_EXPLICIT),
    ),
    # Qualcomm QNN HTP through ONNX Runtime's QNN EP: uint8 or uint16 activations with
    # zero points, int8 symmetric weights; per-channel weights on Conv (axis 0), ConvTranspose
    # (axis 1) and Gemm, per tensor on MatMul ("QNN does not support per-channel MatMul",
    # _QNN_CODE, which leaves the quantizer's per-channel Gemm as it is);
    # a fully quantized QDQ model (_QNN_DOC): no weight-only layers, no DynamicQuantizeLinear,
    # no blocked weights, no com.microsoft ops.
    "qnn": Backend(
        name="qnn",
        description="Qualcomm QNN HTP (ONNX Runtime QNN EP): uint8 or uint16 activations (w8a8, w8a16), int8 "
        "symmetric weights, per tensor on MatMul",
        labels=frozenset({"w8a8", "w8a16"}),
        activation_types=frozenset({(8, False), (16, False)}),
        weight_types=frozenset({(8, True)}),
        per_channel_axes={"Conv": (0,), "ConvTranspose": (1,), "Gemm": (0, 1)},
        references=(_QNN_DOC, _QNN_CODE),
    ),
    # OpenVINO turns QDQ pairs into FakeQuantize and runs them with its own int8 kernels; it
    # folds weight-only and blocked 4-bit weights (weight compression) and reads
    # DynamicQuantizeLinear. Checked for real: `mpqc.backend_check` compiles the file with it.
    "openvino": Backend(
        name="openvino",
        description="OpenVINO CPU: QDQ to FakeQuantize, int8 kernels, weight compression",
        labels=frozenset({"w8a8", "w4a8", "w8af", "w4af", "w8a8d", "w4nb", "w4nb64", "w4nb128"}),
        activation_types=frozenset({(8, False), (8, True)}),
        weight_types=frozenset({(8, True), (4, True)}),
        per_channel_axes={"Conv": (0,), "ConvTranspose": (1,), "Gemm": (0, 1), "MatMul": (1,)},
        blocked_bits=frozenset({4}),
        weight_only_bits=frozenset({8, 4}),
        dynamic=True,
        # read by its ONNX front end (checked: `tests/passes/test_fuse_attention.py`)
        attention=True,
        references=(_OV_DOC,),
    ),
}
DEFAULT_BACKEND = "ort"


def get_backend(spec: str | Backend | None) -> Backend:
    """A backend by name (`ort`, `tensorrt`, `qnn`, `openvino`); anything else is refused by name."""
    if isinstance(spec, Backend):
        return spec
    name = (spec or DEFAULT_BACKEND).strip().lower()
    if name not in BACKENDS:
        raise OptionError(f"unknown backend {spec!r}; use one of {', '.join(BACKENDS)}")
    return BACKENDS[name]
