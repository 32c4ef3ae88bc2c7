"""Bring the default-domain opset to the level the QDQ types need: 21 for int4/uint4,
25 for int2/uint2 in ONNX Runtime."""

from __future__ import annotations

__all__ = ["UpgradeOpsetPass"]

import onnx
import onnx.helper
import onnx.version_converter
import onnx_ir as ir
from mpqc.passes._common import detach_weights, opset_version, rebuild, restore_weights

from mpqc.errors import MpqcError, first_line


class UpgradeOpsetPass(ir.passes.FunctionalPass):
    """Converts with `onnx.version_converter`; never downgrades."""

    def __init__(self, target: int = 21) -> None:
        super().__init__()
        self.target = target

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        current = opset_version(model)
        target = max(current, self.target)

        def convert(proto: onnx.ModelProto) -> onnx.ModelProto:
            if current < target:
                proto = _convert(proto, current, target)
            minimum = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", target)])
            proto.ir_version = max(proto.ir_version, minimum)
            return proto

        return ir.passes.PassResult(rebuild(model, convert), modified=current < target)


def _convert(proto: onnx.ModelProto, current: int, target: int) -> onnx.ModelProto:
    """Convert with the weights detached (fast); should that fail, convert with them."""
    saved = detach_weights(proto)
    try:
        converted = onnx.version_converter.convert_version(proto, target)
        restore_weights(converted, saved)
        return converted
    except Exception:
        restore_weights(proto, saved)
    try:
        return onnx.version_converter.convert_version(proto, target)
    except Exception as exc:
        raise MpqcError(f"cannot upgrade the model from opset {current} to {target}: {first_line(exc)}") from exc
