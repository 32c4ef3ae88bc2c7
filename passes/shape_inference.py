"""Shapes for every tensor: the analysis needs them for MACs and per-channel axes."""

from __future__ import annotations

from mpqc.errors import first_line

__all__ = ["InferShapesPass"]

import onnx_ir as ir
from mpqc.passes._common import note
from onnx_ir.passes.common import ShapeInferencePass


class InferShapesPass(ir.passes.InPlacePass):
    """onnx shape inference, non-strict: a model whose shapes stay partly unknown (symbolic
    dimensions, custom ops) is still usable; the layers without shapes get no MAC count."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        try:
            result = ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
        except Exception as exc:  # inference is best effort; the analysis reports what is missing
            note(model, f"shape inference incomplete: {first_line(exc)}")
            return ir.passes.PassResult(model, modified=False)
        return ir.passes.PassResult(model, modified=result.modified)
