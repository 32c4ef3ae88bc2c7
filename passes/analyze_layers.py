"""Find the quantizable layers, their cost figures, and the tensors whose quantizers are tied.

Writes the `Analysis` into `model.meta["mpqc.analysis"]` and returns it on the result.
Anything it cannot quantize (an activation-by-activation MatMul, compute inside If/Loop,
an op it does not know) stays in float and is named in the notes: the model never fails
because of one odd node.
"""

from __future__ import annotations

__all__ = ["AnalyzeLayersPass", "AnalysisResult", "ANALYSIS_KEY"]

import dataclasses
import math

import networkx as nx
import onnx_ir as ir
from mpqc.passes._common import const_array, const_of, name_of, note, notes

from mpqc.analysis import (
    FLOAT_OPS,
    INTEGER_OPS,
    QUANTIZABLE_OPS,
    SHARED_SCALE_OPS,
    Analysis,
    Layer,
)

ANALYSIS_KEY = "mpqc.analysis"


@dataclasses.dataclass
class AnalysisResult(ir.passes.PassResult):
    """The pass result, with the analysis it wrote into `model.meta`."""

    analysis: Analysis | None = None


class AnalyzeLayersPass(ir.passes.PassBase):
    """Reads the graph; changes nothing but `model.meta`."""

    in_place = True
    changes_input = False

    def call(self, model: ir.Model) -> AnalysisResult:
        graph = model.graph
        layers: list[Layer] = []
        self._walk(model, graph, "", layers)
        if not layers:
            note(model, "no quantizable layer (Conv, ConvTranspose, Gemm, MatMul with a constant weight) found")
        analysis = Analysis(
            layers=tuple(layers),
            activation_tensors=_activation_tensors(graph, layers),
            shared_quantizers=_shared_groups(graph),
            combined_inputs=_combined(graph),
            notes=tuple(notes(model)),
        )
        model.meta[ANALYSIS_KEY] = analysis
        return AnalysisResult(model, modified=False, analysis=analysis)

    def _walk(self, model: ir.Model, graph: ir.Graph, scope: str, layers: list[Layer]) -> None:
        """Layers of `graph`, and of the branches of its If nodes (recursively). Loop and Scan
        bodies run many times with values carried between iterations: their layers stay float."""
        for node in graph:
            if node.domain not in ("", "ai.onnx"):
                note(model, f"op {node.domain}::{node.op_type} (node {node.name}) is not known to mpqc; left in float")
                continue
            if node.op_type == "If":
                for name, attr in node.attributes.items():
                    if attr.type == ir.AttributeType.GRAPH:
                        where = f"{scope}.{node.name}.{name}" if scope else f"{node.name}.{name}"
                        self._walk(model, attr.value, where, layers)
                continue
            if node.op_type in ("Loop", "Scan"):
                for body_node in _subgraph_nodes(node):
                    if body_node.op_type in QUANTIZABLE_OPS:
                        note(
                            model,
                            f"layer {body_node.name} left in float: it is inside the {node.op_type} body of "
                            f"{node.name} (mpqc quantizes If branches, not loop bodies)",
                        )
                continue
            if node.op_type in QUANTIZABLE_OPS:
                layer, reason = _layer(node)
                if layer is None:
                    note(model, f"{node.op_type} node {node.name} left in float: {reason}")
                else:
                    layers.append(dataclasses.replace(layer, scope=scope))
            elif node.op_type not in FLOAT_OPS and node.op_type not in INTEGER_OPS + SHARED_SCALE_OPS:
                note(model, f"op {node.op_type} (node {node.name}) is not known to mpqc's analysis; left in float")


def _subgraph_nodes(node: ir.Node) -> list[ir.Node]:
    found: list[ir.Node] = []
    for attr in node.attributes.values():
        graphs = (
            [attr.value]
            if attr.type == ir.AttributeType.GRAPH
            else (list(attr.value) if attr.type == ir.AttributeType.GRAPHS else [])
        )
        for sub in graphs:
            found.extend(ir.traversal.RecursiveGraphIterator(sub))
    return found


def _is_float(value: ir.Value | None) -> bool:
    return value is not None and value.dtype in (None, ir.DataType.FLOAT)


def _layer(node: ir.Node) -> tuple[Layer | None, str]:
    if len(node.inputs) < 2 or node.inputs[0] is None or node.inputs[1] is None:
        return None, "missing inputs"
    act, weight_value = node.inputs[0], node.inputs[1]
    weight = const_array(weight_value)
    act_const = const_array(act)
    if weight is None:
        if node.op_type == "MatMul" and act_const is None:
            return None, "both inputs are activations (attention-style MatMul)"
        return None, "its weight is not a constant"
    if act_const is not None:
        return None, "its data input is a constant"
    if not (_is_float(act) and str(weight.dtype) == "float32"):
        return None, "not a float32 layer"
    attrs = node.attributes
    groups = attrs.get_int("group", 1) if node.op_type in ("Conv", "ConvTranspose") else 1
    if node.op_type == "Conv":
        axis: int | None = 0
    elif node.op_type == "ConvTranspose":
        axis = 1 if groups == 1 else None
    elif node.op_type == "Gemm":
        if attrs.get_int("transA", 0):
            return None, "Gemm with transA=1 is not supported"
        axis = 0 if attrs.get_int("transB", 0) else 1
    else:  # MatMul
        if weight.ndim != 2:
            return None, f"weight of rank {weight.ndim} (only 2-D weights are quantized)"
        axis = 1
    bias = node.inputs[2] if len(node.inputs) > 2 and node.op_type != "MatMul" else None
    if bias is not None and const_array(bias) is None:
        return None, "its bias is not a constant"
    in_shape = _shape(act)
    out_shape = _shape(node.outputs[0])
    return (
        Layer(
            name=node.name or node.outputs[0].name or "",
            op_type=node.op_type,
            activation=act.name or "",
            weight=weight_value.name or "",
            bias=None if bias is None else bias.name,
            output=node.outputs[0].name or "",
            input_shape=in_shape,
            output_shape=out_shape,
            weight_shape=tuple(int(d) for d in weight.shape),
            channel_axis=axis,
            groups=groups,
            macs=_macs(node.op_type, weight.shape, out_shape, groups),
            params=int(weight.size) + (0 if bias is None else int(const_of(bias).size)),
        ),
        "",
    )


def _shape(value: ir.Value) -> tuple[int | str | None, ...] | None:
    if value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else (str(d) if d is not None and str(d) else None) for d in value.shape)


def _macs(op: str, w_shape: tuple[int, ...], out: tuple[int | str | None, ...] | None, groups: int) -> int | None:
    """Multiply-accumulates for one sample (the first output dimension is the batch)."""
    dims = [d for d in (out or ())[1:] if isinstance(d, int)]
    if out is None or len(dims) != len(out) - 1:
        return None
    per_sample = math.prod(dims)
    if op == "Conv":
        return per_sample * math.prod(w_shape[1:])
    if op == "ConvTranspose":
        # each input pixel scatters C_out/group * k outputs; equals out * C_in/group * k / stride^d
        # only when strides are 1, so count per output element with the full kernel (upper bound).
        return per_sample * (w_shape[0] // groups) * math.prod(w_shape[2:])
    if op == "Gemm":
        k = w_shape[1] if out[-1] == w_shape[0] else w_shape[0]
        return per_sample * k
    return per_sample * w_shape[0]  # MatMul [.., K] x [K, N]


def _float_activation(value: ir.Value | None) -> bool:
    return value is not None and _is_float(value) and const_array(value) is None and value.name is not None


def _activation_tensors(graph: ir.Graph, layers: list[Layer]) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for layer in layers:
        names[layer.activation] = None
        names[layer.output] = None
    for node in graph:
        if node.op_type in INTEGER_OPS + SHARED_SCALE_OPS or node.op_type == "Relu":
            for value in (*node.inputs, *node.outputs):
                if _float_activation(value):
                    names[name_of(value)] = None
    return tuple(names)


def _shared_groups(graph: ir.Graph) -> tuple[tuple[str, ...], ...]:
    ties = nx.Graph()
    for node in graph:
        if node.op_type in SHARED_SCALE_OPS and node.inputs and _float_activation(node.inputs[0]):
            ties.add_edge(name_of(node.inputs[0]), name_of(node.outputs[0]))
    return tuple(tuple(sorted(c)) for c in sorted(nx.connected_components(ties), key=lambda c: sorted(c)[0]))


def _combined(graph: ir.Graph) -> tuple[tuple[str, ...], ...]:
    groups: list[tuple[str, ...]] = []
    for node in graph:
        if node.op_type in ("Add", "Concat"):
            acts = [name_of(v) for v in node.inputs if _float_activation(v)]
            if len(acts) > 1:
                groups.append(tuple(acts))
    return tuple(groups)
