"""Check a QDQ model against a backend profile (`mpqc.backend`) and name each violation.

The rules are read off the file, not off mpqc's intentions, so the validator also judges
models mpqc did not write (`mpqc validate`). For OpenVINO the check is real: the file is
read and compiled by OpenVINO's CPU plugin where the `openvino` package is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from mpqc.analysis import MATMUL_FORM_OPS, QUANTIZABLE_OPS, SHARED_SCALE_OPS
from mpqc.backend import Backend
from mpqc.errors import BackendError
from mpqc.quant import STORAGE_TYPES, ir_dtype

__all__ = ["Violation", "check_model", "require_valid"]

_STANDARD = ("", "ai.onnx")
#: ONNX element type -> (bits, signed), for every integer type mpqc stores
_TYPES: dict[int, tuple[int, bool]] = {int(ir_dtype(*qtype)): qtype for qtype in STORAGE_TYPES}


@dataclass(frozen=True)
class Violation:
    """One broken rule: the node, what it has, and what the backend needs."""

    node: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.node}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "rule": self.rule, "message": self.message}


def _type_text(qtype: tuple[int, bool]) -> str:
    bits, signed = qtype
    return f"{'' if signed else 'u'}int{bits}"


class _Graph:
    """Producers, consumers and constants of one (main) graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.constants: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = attr.t
        self.producer = {out: node for node in graph.node for out in node.output if out}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.nodes = list(graph.node)

    def array(self, name: str) -> np.ndarray | None:
        tensor = self.constants.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def elem_type(self, name: str) -> int | None:
        tensor = self.constants.get(name)
        return None if tensor is None else tensor.data_type

    def dequantized(self, name: str) -> bool:
        """Whether `name` comes from a DequantizeLinear (through value-moving ops)."""
        node = self.producer.get(name)
        while node is not None and node.op_type in SHARED_SCALE_OPS:
            node = self.producer.get(node.input[0])
        return node is not None and node.op_type in ("DequantizeLinear", "DynamicQuantizeLinear")


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def check_model(model: onnx.ModelProto, backend: Backend, run: bool = True) -> list[Violation]:
    """Every rule of `backend` the model breaks. `run` also compiles it with the backend
    itself where that is possible here (OpenVINO)."""
    g = _Graph(model)
    found: list[Violation] = []
    for node in g.nodes:
        name = node.name or (node.output[0] if node.output else node.op_type)
        if node.domain not in _STANDARD and not backend.custom_ops:
            found.append(Violation(name, "domain", f"{node.domain}.{node.op_type} is not a standard ONNX op"))
        if node.op_type == "DynamicQuantizeLinear" and not backend.dynamic:
            found.append(Violation(name, "dynamic", f"{backend.name} has no DynamicQuantizeLinear"))
        if node.op_type == "QuantizeLinear":
            found += _check_activation(g, node, name, backend)
        elif node.op_type == "DequantizeLinear" and node.input[0] in g.constants:
            found += _check_constant(g, node, name, backend)
    if run and backend.name == "openvino" and not found:
        found += _compile_with_openvino(model)
    return found


def _check_activation(g: _Graph, node: onnx.NodeProto, name: str, backend: Backend) -> list[Violation]:
    found: list[Violation] = []
    zp_name = node.input[2] if len(node.input) > 2 else ""
    qtype = _TYPES.get(g.elem_type(zp_name) or onnx.TensorProto.UINT8, (0, False)) if zp_name else (8, False)
    if qtype not in backend.activation_types:
        allowed = ", ".join(sorted(_type_text(t) for t in backend.activation_types))
        found.append(
            Violation(name, "activation-type", f"activations are {_type_text(qtype)}; {backend.name} takes {allowed}")
        )
    scale = g.array(node.input[1])
    if scale is not None and scale.size != 1:
        found.append(Violation(name, "activation-per-tensor", f"{backend.name} quantizes activations per tensor"))
    zero = g.array(zp_name) if zp_name else None
    if backend.zero_points_zero and zero is not None and np.any(zero.astype(np.int64) != 0):
        found.append(Violation(name, "zero-point", f"zero point {int(zero.reshape(-1)[0])}; {backend.name} needs 0"))
    return found


def _check_constant(g: _Graph, node: onnx.NodeProto, name: str, backend: Backend) -> list[Violation]:
    """A DequantizeLinear of a constant: a layer's weights or an int32 bias."""
    found: list[Violation] = []
    qtype = _TYPES.get(g.elem_type(node.input[0]) or 0, (0, False))
    users = g.consumers.get(node.output[0], [])
    while len(users) == 1 and users[0].op_type in ("Reshape", "Transpose"):  # a guard between DQ and layer
        users = g.consumers.get(users[0].output[0], [])
    layer = next((u for u in users if u.op_type in QUANTIZABLE_OPS), None)
    if qtype == (32, True):
        if not backend.quantized_bias:
            found.append(Violation(name, "bias", f"int32 bias DequantizeLinear; {backend.name} has no int32 Q/DQ"))
        return found
    if qtype not in backend.weight_types:
        allowed = ", ".join(sorted(_type_text(t) for t in backend.weight_types))
        found.append(Violation(name, "weight-type", f"weights are {_type_text(qtype)}; {backend.name} takes {allowed}"))
    zero = g.array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if backend.zero_points_zero and zero is not None and np.any(zero.astype(np.int64) != 0):
        found.append(Violation(name, "zero-point", f"weight zero points are not all 0; {backend.name} needs 0"))
    values = g.array(node.input[0])
    if backend.narrow_weights and qtype[1] and values is not None and values.size:
        low = -(1 << (qtype[0] - 1))
        if int(values.astype(np.int64).min()) <= low:
            found.append(
                Violation(name, "weight-range", f"weights reach {low}; {backend.name} takes [{low + 1}, {-low - 1}]")
            )
    scale = g.array(node.input[1])
    block = int(_attr(node, "block_size", 0) or 0)
    axis = int(_attr(node, "axis", 1))
    op = layer.op_type if layer is not None else "?"
    if block:
        if qtype[0] not in backend.blocked_bits or op not in MATMUL_FORM_OPS:
            found.append(
                Violation(
                    name, "blocked", f"blocked {_type_text(qtype)} weights on {op}; {backend.name} does not take them"
                )
            )
    elif scale is not None and scale.size > 1:
        weight_rank = values.ndim if values is not None else 0
        axes = backend.per_channel_axes.get(op, ())
        if axis < 0:
            axis += weight_rank
        if axis not in axes:
            where = f"axis {axis}" if axes else "any axis"
            found.append(
                Violation(
                    name, "per-channel", f"per-channel {op} weights on {where}; {backend.name} does not take them"
                )
            )
    if layer is not None and not g.dequantized(layer.input[0]) and qtype[0] not in _weight_only(backend, block):
        found.append(
            Violation(
                layer.name or name,
                "weight-only",
                f"{_type_text(qtype)} weights with float activations; {backend.name} runs no such layer",
            )
        )
    return found


def _weight_only(backend: Backend, block: int) -> frozenset[int]:
    """Weight bits that may meet float activations (blocked weights are weight-only by design)."""
    return backend.blocked_bits if block else backend.weight_only_bits


def _compile_with_openvino(model: onnx.ModelProto) -> list[Violation]:
    try:
        import openvino as ov
    except ImportError:
        return []
    try:
        core = ov.Core()
        core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU")
    except RuntimeError as exc:
        line = next((ln for ln in str(exc).splitlines() if ln.strip()), "refused")
        return [Violation("<model>", "openvino-compile", f"OpenVINO refused the model: {line[:200]}")]
    return []


def require_valid(model: onnx.ModelProto, backend: Backend, what: str = "the model") -> None:
    """Raise a `BackendError` naming the first violations, if any."""
    found = check_model(model, backend)
    if found:
        shown = "; ".join(str(v) for v in found[:3])
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise BackendError(f"{what} breaks {len(found)} {backend.name} rule(s): {shown}{more}")
