"""A model's input signature: names, dtypes, shapes, and where each input's batch axis is.

Data inside mpqc keeps the sample axis first. A model's inputs need not: a recurrent state
`[2, batch, 128]` carries the batch on axis 1. Each input's batch axis is declared with the
data (`__batch_axes__`), or inferred from the graph, first rule that applies:

1. the axis whose symbolic dimension is the batch symbol (the one the first input carries
   on axis 0, when it is named), or is named like a batch (`batch`, `batch_size`, `N`);
2. the one dimension that is neither a number nor named (`state [2, ?, 128]` -> axis 1; a
   named dimension such as `image_width` is a size, not a batch);
3. axis 0.

A scalar input (rank 0, such as a sample rate) has no batch axis: the data holds one value,
given to every run (`batch_axis` None)."""

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
    #: None: not batched (a scalar the data gives once)
    batch_axis: int | None = 0
    fixed_batch: int | None = None
    #: the symbolic name of the batch dimension, if it has one
    batch_symbol: str | None = None

    @property
    def batched(self) -> bool:
        return self.batch_axis is not None

    def describe(self) -> str:
        dims = "?" if self.shape is None else "x".join("?" if d is None else str(d) for d in self.shape)
        where = "not batched" if self.batch_axis is None else f"batch axis {self.batch_axis}"
        return f"{self.name} ({self.dtype.name}, {dims}, {where})"

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
    dims_of = {v.name or "": None if v.shape is None else [_dim(d) for d in v.shape] for v in values}
    symbol = next((d[0] for d in dims_of.values() if d and isinstance(d[0], str)), None)
    specs = []
    for value in values:
        name = value.name or ""
        dims = dims_of[name]
        axis: int | None
        if name in batch_axes:
            axis = batch_axes[name]
            if dims is not None and not -len(dims) <= axis < len(dims):
                raise DataError(f"batch axis {axis} of input {name} is out of range for its rank {len(dims)}")
            axis = axis % len(dims) if dims else axis
        elif dims is not None and len(dims) == 0:
            axis = None  # a scalar: one value for every run
        elif dims is not None and symbol is not None and symbol in dims:
            axis = dims.index(symbol)
        elif dims is not None and any(_batch_like(d) for d in dims):
            axis = next(i for i, d in enumerate(dims) if _batch_like(d))
        elif (
            dims is not None
            and sum(d is None for d in dims) == 1
            and all(d is None or isinstance(d, int) for d in dims)
        ):
            axis = dims.index(None)
        else:
            axis = 0
        shape = None if dims is None else tuple(d if isinstance(d, int) else None for d in dims)
        fixed = shape[axis] if shape is not None and axis is not None and axis < len(shape) else None
        symbolic = dims[axis] if dims is not None and axis is not None and axis < len(dims) else None
        batch_symbol = symbolic if isinstance(symbolic, str) else None
        specs.append(InputSpec(name, numpy_dtype(value.dtype), shape, axis, fixed, batch_symbol))
    return specs


def _batch_like(d: object) -> bool:
    return isinstance(d, str) and (d.lower() in ("n", "b", "bs") or "batch" in d.lower())


def _dim(d: object) -> int | str | None:
    """An int, a symbol's name, or None for an unnamed dimension."""
    if isinstance(d, int):
        return d
    value = getattr(d, "value", None)
    return value if isinstance(value, str) and value else None
