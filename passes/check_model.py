"""Reject invalid models up front with the checker's own words, before any pass touches them."""

from __future__ import annotations

__all__ = ["CheckModelPass"]

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import CheckerPass

from mpqc.errors import MpqcError, first_line


class CheckModelPass(ir.passes.PassBase):
    """Runs `onnx.checker`; raises `MpqcError` with its first line. Changes nothing."""

    in_place = True
    changes_input = False

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        try:
            # onnx-ir's checker pass hands large weights to the checker as inputs: far less copying
            CheckerPass(full_check=False)(model)
        except (onnx.checker.ValidationError, ValueError) as exc:
            raise MpqcError(f"invalid ONNX model: {first_line(exc)}") from exc
        if not any(node for node in model.graph):
            raise MpqcError("invalid ONNX model: the graph has no nodes")
        return ir.passes.PassResult(model, modified=False)
