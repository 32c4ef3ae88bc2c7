"""Expose intermediate tensors as graph outputs so one ONNX Runtime run can observe them."""

from __future__ import annotations

__all__ = ["ObserveTensorsPass"]

from collections.abc import Sequence

import onnx_ir as ir


class ObserveTensorsPass(ir.passes.FunctionalPass):
    """Returns a copy of the model whose outputs also include `tensors` (float activations).
    The copy is for calibration only; the input model is untouched."""

    def __init__(self, tensors: Sequence[str]) -> None:
        super().__init__()
        self.tensors = list(tensors)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        copy = model.clone()  # shares the weight tensors, which this pass never touches
        values = ir.convenience.create_value_mapping(copy.graph)
        present = {v.name for v in copy.graph.outputs}
        added = False
        for name in self.tensors:
            value = values.get(name)
            if value is None or name in present or value.is_initializer():
                continue
            if value.dtype is None:
                value.dtype = ir.DataType.FLOAT
            copy.graph.outputs.append(value)
            present.add(name)
            added = True
        return ir.passes.PassResult(copy, modified=added)
