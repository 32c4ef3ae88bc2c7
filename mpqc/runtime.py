"""ONNX Runtime sessions and the model's input signature, in one place."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from mpqc.errors import MpqcError, first_line

if TYPE_CHECKING:
    from mpqc.data import Dataset

__all__ = ["InputSpec", "input_specs", "make_session", "run_batches"]

_NUMPY_OF_ONNX = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
}


@dataclass(frozen=True)
class InputSpec:
    """A graph input: dims are ints, or None where symbolic/unknown."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None

    def describe(self) -> str:
        dims = "?" if self.shape is None else "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} ({self.dtype.name}, {dims})"


def input_specs(model: ir.Model) -> list[InputSpec]:
    specs = []
    initializers = set(model.graph.initializers)
    for value in model.graph.inputs:
        if value.name in initializers:
            continue
        dtype = value.dtype
        np_dtype = np.dtype(_NUMPY_OF_ONNX.get(int(dtype), np.float32)) if dtype is not None else np.dtype(np.float32)
        shape = None if value.shape is None else tuple(d if isinstance(d, int) else None for d in value.shape)
        specs.append(InputSpec(value.name or "", np_dtype, shape))
    return specs


def make_session(
    model: ir.Model | onnx.ModelProto | bytes, threads: int | None = None, optimize: bool = True
) -> ort.InferenceSession:
    if isinstance(model, ir.Model):
        payload = ir.serde.serialize_model(model).SerializeToString()
    elif isinstance(model, onnx.ModelProto):
        payload = model.SerializeToString()
    else:
        payload = model
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise MpqcError(f"ONNX Runtime cannot load the model: {first_line(exc)}") from exc


def run_batches(
    session: ort.InferenceSession, data: Dataset, outputs: Sequence[str] | None = None, batch_size: int = 64
) -> Iterator[list[np.ndarray]]:
    """Run the data through in batches. A model whose batch dimension is fixed (often 1 in
    exported models) gets batches of exactly that size; a remainder that cannot fill one is
    left out."""
    fixed = {i.shape[0] for i in session.get_inputs() if i.shape and isinstance(i.shape[0], int)}
    size = min(fixed) if fixed else batch_size
    names = list(outputs) if outputs is not None else [o.name for o in session.get_outputs()]
    for batch in data.batches(size):
        if fixed and len(next(iter(batch.values()))) != size:
            break
        try:
            yield session.run(names, batch)
        except Exception as exc:  # ORT raises its own exception types
            raise MpqcError(f"ONNX Runtime failed on data {data.name}: {first_line(exc)}") from exc
