"""Expose intermediate tensors as graph outputs so one ONNX Runtime run can observe them.

A tensor inside an If branch is routed out: it becomes an output of its branch and of the
If node (the other branch gives an empty tensor in its place), up through every enclosing
If, to the main graph. A branch that did not run on a sample contributes nothing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from mpqc.passes._common import name_of

__all__ = ["ObserveTensorsPass", "OBSERVED_KEY"]

#: `model.meta` key of {graph output name: observed tensor name} (they differ for routed tensors)
OBSERVED_KEY = "mpqc.observed"


class ObserveTensorsPass(ir.passes.FunctionalPass):
    """Returns a copy of the model whose outputs also include `tensors` (float activations).
    The copy is for calibration only; the input model is untouched."""

    def __init__(self, tensors: Sequence[str]) -> None:
        super().__init__()
        self.tensors = list(tensors)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        copy = model.clone()  # shares the weight tensors, which this pass never touches
        owner = _owners(copy.graph)
        values: dict[str, ir.Value] = {}
        for graph in (copy.graph, *owner):
            values.update(ir.convenience.create_value_mapping(graph))
        present = {name_of(v) for v in copy.graph.outputs}
        observed = {name: name for name in self.tensors if name in present}  # outputs already
        added = False
        for name in self.tensors:
            value = values.get(name)
            if value is None or name in present or value.is_initializer():
                continue
            if value.dtype is None:
                value.dtype = ir.DataType.FLOAT
            graph = _graph_of(value, copy.graph)
            while graph is not copy.graph:  # route the value out of each enclosing If
                node, branch = owner[graph]
                value = _route_out(node, branch, value)
                assert isinstance(node.graph, ir.Graph)
                graph = node.graph
            copy.graph.outputs.append(value)
            observed[name_of(value)] = name
            present.add(name)
            added = True
        copy.meta[OBSERVED_KEY] = observed
        return ir.passes.PassResult(copy, modified=added)


def _owners(graph: ir.Graph) -> dict[ir.Graph, tuple[ir.Node, str]]:
    """Every If branch (recursively) -> (its If node, the branch's attribute name)."""
    found: dict[ir.Graph, tuple[ir.Node, str]] = {}
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if node.op_type != "If":
            continue
        for name, attr in node.attributes.items():
            if attr.type == ir.AttributeType.GRAPH:
                found[attr.value] = (node, name)
    return found


def _graph_of(value: ir.Value, main: ir.Graph) -> ir.Graph:
    producer = value.producer()
    if producer is not None and isinstance(producer.graph, ir.Graph):
        return producer.graph
    return value.graph if isinstance(value.graph, ir.Graph) else main


def _route_out(node: ir.Node, branch: str, value: ir.Value) -> ir.Value:
    """`value` (inside `branch` of If `node`) as a new output of the If node."""
    for name, attr in node.attributes.items():
        if attr.type != ir.AttributeType.GRAPH:
            continue
        sub: ir.Graph = attr.value
        if name == branch:
            sub.outputs.append(value)
        else:  # an empty tensor of the same type
            dtype = value.dtype or ir.DataType.FLOAT
            empty = ir.Value(name=f"{name_of(value)}__empty_{name}", shape=ir.Shape([0]), type=ir.TensorType(dtype))
            sub.append(ir.node("Constant", [], {"value": ir.tensor(np.zeros(0, np.float32))}, outputs=[empty]))
            sub.outputs.append(empty)
    count = len(node.outputs)
    node.resize_outputs(count + 1)
    routed = node.outputs[count]
    routed.name = f"{name_of(value)}__from_{node.name}"
    routed.dtype = value.dtype or ir.DataType.FLOAT
    return routed
