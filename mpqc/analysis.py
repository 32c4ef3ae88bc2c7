"""What the analysis knows about a model: its quantizable layers and the tensors whose
quantizers are tied together. Produced by `AnalyzeLayersPass`, read by everything after."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Layer", "Analysis", "QUANTIZABLE_OPS", "SHARED_SCALE_OPS", "INTEGER_OPS", "MATMUL_FORM_OPS", "takes_form"]

#: Ops with a constant weight that get per-layer weight and activation bits.
QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Ops that only move or select values: in an integer region their output reuses the input's
#: quantizer, which lets ONNX Runtime drop the Q/DQ pair around them.
SHARED_SCALE_OPS = ("MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")
#: Ops with an integer kernel in ONNX Runtime (QLinearAdd, QLinearConcat, QLinearMul,
#: QLinearSigmoid, ...): in an int8 region their output gets a quantizer of its own. Sigmoid
#: and Mul make a SiLU (x * sigmoid(x)) run in int8 between convolutions, as ORT's own
#: recipe does: 10-16% faster on the kit's YOLO-style detectors at the same fidelity.
INTEGER_OPS = ("Add", "Concat", "GlobalAveragePool", "AveragePool", "Mul", "Sigmoid")
#: Ops the dynamic and nbits forms apply to: a MatMul (or a Gemm lowered to one) with a 2-D
#: constant weight, the pattern ONNX Runtime fuses into DynamicQuantizeMatMul / MatMulNBits.
MATMUL_FORM_OPS = ("MatMul", "Gemm")
#: Ops the analysis understands and deliberately leaves in float.
FLOAT_OPS = frozenset(
    """Relu LeakyRelu PRelu Sigmoid Tanh Clip HardSigmoid HardSwish Gelu Elu Selu Softplus Softmax LogSoftmax
    Mul Sub Div Pow Sqrt Exp Log Neg Abs Erf Reciprocal Max Min Mean Sum ReduceMean ReduceSum ReduceMax
    ReduceMin ReduceL2 LayerNormalization BatchNormalization InstanceNormalization GroupNormalization
    Shape Gather GatherElements Slice Split Cast Expand Tile Pad Resize Upsample Where Equal Less Greater
    Not And Or ConstantOfShape Range Identity Dropout Constant If Loop Scan ArgMax TopK NonZero Einsum
    Squeeze Unsqueeze DepthToSpace SpaceToDepth CumSum Trilu ScatterND GatherND OneHot Size LSTM GRU RNN
    Floor Ceil Round Sign Sin Cos Tan Atan Softsign Mish Celu ThresholdedRelu LessOrEqual GreaterOrEqual Xor Mod
    CastLike IsNaN IsInf ReduceProd ReduceL1 ReduceSumSquare ReduceLogSum ReduceLogSumExp ArgMin
    InstanceNormalization GlobalMaxPool Attention RMSNormalization""".split()
)


@dataclass(frozen=True)
class Layer:
    """One quantizable layer. Shapes are per the model's declared or inferred shapes, with
    symbolic dimensions as strings; MACs and params are for one sample."""

    name: str
    op_type: str
    activation: str
    weight: str
    bias: str | None
    output: str
    input_shape: tuple[int | str | None, ...] | None
    output_shape: tuple[int | str | None, ...] | None
    weight_shape: tuple[int, ...]
    channel_axis: int | None
    groups: int
    macs: int | None
    params: int
    #: where the layer lives: "" for the main graph, else the If branches it sits in
    #: ("If_0.then_branch"); such layers get per-layer Q/DQ but no int8 region
    scope: str = ""

    @property
    def depthwise(self) -> bool:
        return self.op_type == "Conv" and self.groups > 1 and self.weight_shape[1] == 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def takes_form(layer: Layer, form: str, block: int = 0) -> bool:
    """Whether a precision of `form` can be emitted for `layer`: the static QDQ form for every
    layer; the dynamic and nbits forms for MatMul/Gemm layers with a 2-D weight only (there
    is no fast ONNX Runtime kernel for them on convolutions); nbits only where the reduction
    axis K is a whole number of `block`s (OpenVINO refuses a partial block, and ORT's
    MatMulNBits fusion is built for whole blocks)."""
    if form == "qdq":
        return True
    if layer.op_type not in MATMUL_FORM_OPS or len(layer.weight_shape) != 2:
        return False
    if form == "nbits" and block:
        k = layer.weight_shape[1 - (layer.channel_axis or 0)] if layer.channel_axis in (0, 1) else 0
        return k >= block and k % block == 0
    return True


@dataclass(frozen=True)
class Analysis:
    """Every quantizable layer of a model, the activation tensors to observe, and the tensors
    whose quantizers are tied; `notes` say what stays in float and why."""

    layers: tuple[Layer, ...]
    #: Activation tensors any scheme may quantize: the calibration observes exactly these.
    activation_tensors: tuple[str, ...]
    #: Groups of tensors that share one quantizer in an integer region (value-moving ops).
    shared_quantizers: tuple[tuple[str, ...], ...]
    #: Tensors combined by Add/Concat: kept at one bit width so the op can run in integers.
    combined_inputs: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs or 0 for layer in self.layers)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "layers": [layer.to_json() for layer in self.layers],
            "total_macs": self.total_macs,
            "total_params": self.total_params,
            "shared_quantizers": [list(g) for g in self.shared_quantizers],
            "combined_inputs": [list(g) for g in self.combined_inputs],
            "notes": list(self.notes),
        }
