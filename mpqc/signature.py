"""A model's input signature: names, dtypes, shapes, and where each input's batch axis is.

Data inside mpqc keeps the sample axis first. A model's inputs need not: a recurrent state
`[2, batch, 128]` carries the batch on axis 1. Each input's batch axis is declared with the
data, or inferred from the graph: the axis whose symbolic dimension is the one the first
input carries on axis 0 (`batch`), else axis 0."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from mpqc.errors import DataError

__all__ = ["InputSpec", "input_specs", "numpy_dtype"]

_NUMPY_OF_ONNX: dict[int, type] = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.UINT64: np.uint64,
    onnx.TensorProto.BOOL: np.bool_,
}


def numpy_dtype(dtype: ir.DataType | None) -> np.dtype:
    """The numpy type of an ONNX tensor type (float32 when unknown)."""
    if dtype is None:
        return np.dtype(np.float32)
    return np.dtype(_NUMPY_OF_ONNX.get(int(dtype), np.float32))


@dataclass(frozen=True)
class InputSpec:
    """A graph input. `shape` dims are ints, or None where symbolic; `batch_axis` is where
    samples go; `fixed_batch` is the model's fixed size there (often 1), None if dynamic."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None
    batch_axis: int = 0
    fixed_batch: int | None = None
    #: the symbolic name of the batch dimension, if it has one
    batch_symbol: str | None = None

    def describe(self) -> str:
        dims = "?" if self.shape is None else "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} ({self.dtype.name}, {dims}, batch axis {self.batch_axis})"

    def sample_shape(self) -> tuple[int | None, ...] | None:
        """Dims of one sample (the batch axis left out)."""
        if self.shape is None:
            return None
        return tuple(d for i, d in enumerate(self.shape) if i != self.batch_axis)


def input_specs(model: ir.Model, batch_axes: Mapping[str, int] | None = None) -> list[InputSpec]:
    """The model's data inputs (initializers that are also inputs are left out)."""
    batch_axes = dict(batch_axes or {})
    initializers = set(model.graph.initializers)
    values = [v for v in model.graph.inputs if v.name not in initializers]
    symbol = None
    for value in values:
        if value.shape is not None and len(value.shape) and not isinstance(value.shape[0], int):
            text = str(value.shape[0])
            symbol = text or None
            if symbol:
                break
    specs = []
    for value in values:
        name = value.name or ""
        dims = None if value.shape is None else [d if isinstance(d, int) else (str(d) or None) for d in value.shape]
        if name in batch_axes:
            axis = batch_axes[name]
            if dims is not None and not -len(dims) <= axis < len(dims):
                raise DataError(f"batch axis {axis} of input {name} is out of range for its rank {len(dims)}")
            axis = axis % len(dims) if dims else axis
        elif dims is not None and symbol is not None and symbol in dims:
            axis = dims.index(symbol)
        else:
            axis = 0
        shape = None if dims is None else tuple(d if isinstance(d, int) else None for d in dims)
        fixed = shape[axis] if shape is not None and axis < len(shape) else None
        symbolic = dims[axis] if dims is not None and axis < len(dims) else None
        batch_symbol = symbolic if isinstance(symbolic, str) else None
        specs.append(InputSpec(name, numpy_dtype(value.dtype), shape, axis, fixed, batch_symbol))
    return specs
