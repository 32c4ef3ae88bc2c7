"""The front end: the fixed pass order every model goes through before quantization."""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import (
    LiftConstantsToInitializersPass,
    NameFixPass,
    RemoveUnusedNodesPass,
    TopologicalSortPass,
)

from mpqc.analysis import Analysis
from mpqc.errors import MpqcError, first_line
from mpqc.passes import (
    AnalyzeLayersPass,
    CheckModelPass,
    FoldBatchNormPass,
    InferShapesPass,
    SimplifyPass,
    UpgradeOpsetPass,
)
from mpqc.passes.analyze_layers import ANALYSIS_KEY

__all__ = ["front_end_passes", "run_front_end", "BASE_OPSET"]

#: int4/uint4 QDQ run in ONNX Runtime from opset 21; 2-bit schemes upgrade again to 25.
BASE_OPSET = 21


def front_end_passes(simplify: bool = True) -> ir.passes.PassManager:
    steps: list[ir.passes.PassBase] = [CheckModelPass(), UpgradeOpsetPass(BASE_OPSET)]
    if simplify:
        steps.append(SimplifyPass())
    steps += [
        LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        NameFixPass(),
        InferShapesPass(),
        FoldBatchNormPass(),
        RemoveUnusedNodesPass(),
        TopologicalSortPass(),
        AnalyzeLayersPass(),
    ]
    return ir.passes.PassManager(steps)


def run_front_end(model: ir.Model, simplify: bool = True) -> tuple[ir.Model, Analysis]:
    try:
        result = front_end_passes(simplify)(model)
    except (MpqcError, ir.passes.PassError) as exc:
        raise _user_error(exc) from None
    return result.model, result.model.meta[ANALYSIS_KEY]


def _user_error(exc: BaseException) -> MpqcError:
    """The MpqcError inside onnx-ir's PassError wrappers, or the innermost cause as one."""
    cause: BaseException = exc
    while not isinstance(cause, MpqcError) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, MpqcError):
        return cause
    return MpqcError(f"front end failed: {first_line(cause)}")
