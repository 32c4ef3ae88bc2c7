"""onnxsim at the edge of the pipeline: constant folding and dead-code removal that later
passes rely on (weights behind Constant/Reshape chains become plain initializers)."""

from __future__ import annotations

from mpqc.errors import first_line

__all__ = ["SimplifyPass"]

import onnx
import onnx_ir as ir
import onnxsim
from mpqc.passes._common import note, rebuild


class SimplifyPass(ir.passes.FunctionalPass):
    """Runs `onnxsim.simplify`. When onnxsim cannot handle a model, the model goes on
    unsimplified and the report says so: simplification is an optimisation, not a need."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        failure: list[str] = []

        def simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
            try:
                simplified, ok = onnxsim.simplify(proto, check_n=0, perform_optimization=True)
            except Exception as exc:  # onnxsim raises bare RuntimeErrors from C++
                failure.append(first_line(exc))
                return proto
            if not ok:
                failure.append("its result did not validate")
                return proto
            return simplified

        before = sum(1 for _ in model.graph.all_nodes())
        result = rebuild(model, simplify)
        if failure:
            note(result, f"onnxsim skipped: {failure[0]}")
        after = sum(1 for _ in result.graph.all_nodes())
        return ir.passes.PassResult(result, modified=after != before)
