"""The front end: the fixed pass order every model goes through before quantization, and
`Prepared`, the model it leaves with its analysis."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import (
    LiftConstantsToInitializersPass,
    NameFixPass,
    RemoveUnusedNodesPass,
    TopologicalSortPass,
)

from mpqc.analysis import Analysis
from mpqc.errors import ModelError, MpqcError, first_line
from mpqc.modelio import load_model
from mpqc.passes import (
    AnalyzeLayersPass,
    CheckModelPass,
    FoldBatchNormPass,
    FuseAttentionPass,
    FuseGeluPass,
    InferShapesPass,
    SimplifyPass,
    UpgradeOpsetPass,
)
from mpqc.passes.analyze_layers import ANALYSIS_KEY

__all__ = ["Prepared", "ModelLike", "prepare", "front_end_passes", "BASE_OPSET", "NO_LAYERS"]

#: int4/uint4 QDQ run in ONNX Runtime from opset 21; 2-bit schemes upgrade again to 25.
BASE_OPSET = 21
NO_LAYERS = "no quantizable layer (Conv, ConvTranspose, Gemm, MatMul with a constant weight) in the model"

ModelLike = str | os.PathLike[str] | onnx.ModelProto | ir.Model


@dataclass
class Prepared:
    """A model after the front end, with its analysis: the starting point for any scheme.
    Never mutated: schemes are applied to copies."""

    model: ir.Model
    analysis: Analysis
    _digest: str = field(default="", repr=False)

    @property
    def proto(self) -> onnx.ModelProto:
        return ir.serde.serialize_model(self.model)

    def copy(self) -> ir.Model:
        """A structural copy that shares the (never mutated) weight tensors: cheap."""
        return self.model.clone()

    def digest(self) -> str:
        """Content hash of the prepared model: what caches and run folders are keyed on."""
        if not self._digest:
            self._digest = hashlib.sha256(self.proto.SerializeToString(deterministic=True)).hexdigest()
        return self._digest

    def require_layers(self) -> None:
        if not self.analysis.layers:
            raise ModelError(NO_LAYERS)


def front_end_passes(simplify: bool = True, fuse_attention: bool = True) -> ir.passes.PassManager:
    """The front end in its fixed order: check, opset 21, simplify, lift constants, name, shapes, fold
    BatchNorm, fuse GELU, fuse attention (opset 23; off for backends without the op), clean,
    sort, analyze."""
    steps: list[ir.passes.PassBase] = [CheckModelPass(), UpgradeOpsetPass(BASE_OPSET)]
    if simplify:
        steps.append(SimplifyPass())
    steps += [
        LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        NameFixPass(),
        InferShapesPass(),
        FoldBatchNormPass(),
        FuseGeluPass(),
        *([FuseAttentionPass()] if fuse_attention else []),
        RemoveUnusedNodesPass(),
        TopologicalSortPass(),
        AnalyzeLayersPass(),
    ]
    return ir.passes.PassManager(steps)


def prepare(model: ModelLike | Prepared, simplify: bool = True, fuse_attention: bool = True) -> Prepared:
    """Load (if a path) and run the front end. A `Prepared` is returned as is.
    `fuse_attention=False` keeps attention as the model spells it, for backends that do not
    run ONNX's `Attention` (TensorRT, QNN)."""
    if isinstance(model, Prepared):
        return model
    loaded = load_model(model)
    try:
        result = front_end_passes(simplify, fuse_attention)(loaded)
    except (MpqcError, ir.passes.PassError) as exc:
        raise _user_error(exc) from None
    return Prepared(result.model, result.model.meta[ANALYSIS_KEY])


def _user_error(exc: BaseException) -> MpqcError:
    """The MpqcError inside onnx-ir's PassError wrappers, or the innermost cause as one."""
    cause: BaseException = exc
    while not isinstance(cause, MpqcError) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, MpqcError):
        return cause
    return ModelError(f"front end failed: {first_line(cause)}")
