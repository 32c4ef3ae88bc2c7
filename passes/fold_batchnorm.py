"""Fold inference-mode BatchNormalization into the preceding Conv/ConvTranspose/Gemm, so
the quantized weights are the ones that really run (and BN adds no float island)."""

from __future__ import annotations

__all__ = ["FoldBatchNormPass"]

import numpy as np
import onnx_ir as ir
from mpqc.passes._common import const_array

_FOLDABLE = ("Conv", "ConvTranspose")


class FoldBatchNormPass(ir.passes.InPlacePass):
    """Conv(x, W, b) -> BN(scale, bias, mean, var)  ==>  Conv(x, W', b').

    Folds only where it is exact: all BN parameters constant, the Conv output used by the
    BN alone, BN in inference mode (one output)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for bn in list(model.graph):
            if bn.op_type != "BatchNormalization" or bn.domain != "" or len(bn.outputs) != 1:
                continue
            source = bn.inputs[0]
            conv = source.producer() if source is not None else None
            if source is None or conv is None or conv.op_type not in _FOLDABLE or conv.domain != "":
                continue
            if len(source.uses()) != 1 or source.is_graph_output():
                continue
            params = [const_array(v) for v in bn.inputs[1:5]]
            weight = const_array(conv.inputs[1])
            if weight is None or any(p is None for p in params):
                continue
            scale, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
            eps = bn.attributes.get_float("epsilon", 1e-5)
            factor = scale / np.sqrt(var + eps)
            bias = const_array(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] is not None else None
            bias = np.zeros_like(mean) if bias is None else np.asarray(bias, dtype=np.float64)
            new_w = _scale_output_channels(conv, weight.astype(np.float64), factor)
            new_b = (bias - mean) * factor + beta
            w_value = _initializer(model, f"{conv.name}_folded_weight", new_w.astype(weight.dtype))
            b_value = _initializer(model, f"{conv.name}_folded_bias", new_b.astype(weight.dtype))
            conv.replace_input_with(1, w_value)
            if len(conv.inputs) < 3:
                conv.resize_inputs(3)
            conv.replace_input_with(2, b_value)
            _bypass(bn.outputs[0], conv.outputs[0])
            model.graph.remove(bn, safe=True)
            modified = True
        if modified:
            _drop_unused_initializers(model)
        return ir.passes.PassResult(model, modified=modified)


def _bypass(old: ir.Value, new: ir.Value) -> None:
    """Route every use of `old` to `new`; a graph output keeps its name."""
    if old.is_graph_output():
        name = old.name
        old.replace_all_uses_with(new, replace_graph_outputs=True)
        old.name = f"{name}__folded"
        new.name = name
    else:
        old.replace_all_uses_with(new)


def _scale_output_channels(conv: ir.Node, weight: np.ndarray, factor: np.ndarray) -> np.ndarray:
    if conv.op_type == "Conv":
        return weight * factor.reshape(-1, *([1] * (weight.ndim - 1)))
    # ConvTranspose weight: [C_in, C_out / group, k...]; output channel o = g * (C_out/group) + j
    group = conv.attributes.get_int("group", 1)
    cin, cout_g = weight.shape[:2]
    w = weight.reshape(group, cin // group, cout_g, *weight.shape[2:])
    f = factor.reshape(group, 1, cout_g, *([1] * (weight.ndim - 2)))
    return (w * f).reshape(weight.shape)


def _initializer(model: ir.Model, name: str, array: np.ndarray) -> ir.Value:
    base, i = name, 0
    while name in model.graph.initializers:
        i += 1
        name = f"{base}_{i}"
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=name),
    )
    model.graph.register_initializer(value)
    return value


def _drop_unused_initializers(model: ir.Model) -> None:
    for name, value in list(model.graph.initializers.items()):
        if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
            del model.graph.initializers[name]
