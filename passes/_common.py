"""Helpers shared by passes: notes for the report, proto round trips, constant lookup."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnx_ir as ir

NOTES_KEY = "mpqc.notes"


def note(model: ir.Model, message: str) -> None:
    """Record something the user should read in the report (a layer left in float, a pass skipped)."""
    notes: list[str] = model.meta.setdefault(NOTES_KEY, [])
    if message not in notes:
        notes.append(message)


def notes(model: ir.Model) -> list[str]:
    return list(model.meta.get(NOTES_KEY, []))


def rebuild(model: ir.Model, transform: Callable[[onnx.ModelProto], onnx.ModelProto]) -> ir.Model:
    """Run a proto-level tool and return a new IR model; notes carry over."""
    result = ir.serde.deserialize_model(transform(ir.serde.serialize_model(model)))
    for message in notes(model):
        note(result, message)
    return result


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The constant behind a value (initializer or Constant node), or None for activations."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def opset_version(model: ir.Model) -> int:
    return int(model.opset_imports.get("", 1))


def detach_weights(proto: onnx.ModelProto, min_bytes: int = 1024) -> dict[str, bytes]:
    """Empty the raw data of large initializers in place and return it.

    The onnx checker and version converter need only the names, types and shapes of
    weights; carrying megabytes through them made opset conversion 40x slower on ResNet-18."""
    saved: dict[str, bytes] = {}
    for tensor in proto.graph.initializer:
        if len(tensor.raw_data) >= min_bytes:
            saved[tensor.name] = tensor.raw_data
            tensor.ClearField("raw_data")
    return saved


def restore_weights(proto: onnx.ModelProto, saved: dict[str, bytes]) -> None:
    for tensor in proto.graph.initializer:
        if tensor.name in saved and not tensor.raw_data:
            tensor.raw_data = saved[tensor.name]


def name_of(value: ir.Value | None) -> str:
    """A value's name ('' for a missing optional input)."""
    return "" if value is None or value.name is None else value.name


def input_at(node: ir.Node, index: int) -> ir.Value:
    """A required input of a node."""
    value = node.inputs[index] if index < len(node.inputs) else None
    if value is None:
        raise ValueError(f"node {node.name} ({node.op_type}) has no input {index}")
    return value


def const_of(value: ir.Value | None) -> np.ndarray:
    """The constant behind a value that must be one (a weight, a scale, a zero point)."""
    array = const_array(value)
    if array is None:
        raise ValueError(f"value {name_of(value)} is not a constant")
    return array
