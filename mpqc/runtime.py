"""ONNX Runtime sessions, and running data through a model, sample axis first on both sides.

Inputs are moved to each one's batch axis (see `mpqc.signature`). Outputs are brought back to sample-first:
the axis carrying the batch symbol, checked against the batch size at run time; where no
axis can be trusted, the model runs one sample at a time and the outputs are stacked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from mpqc.errors import DataError, ModelError, first_line
from mpqc.signature import InputSpec

if TYPE_CHECKING:
    from mpqc.data import Dataset

__all__ = ["make_session", "open_session", "Runner", "Outputs"]

#: one array per model output, sample axis first
Outputs = list[np.ndarray]


def make_session(
    model: ir.Model | onnx.ModelProto | bytes, threads: int | None = None, optimize: bool = True
) -> ort.InferenceSession:
    """A CPU session; a model ONNX Runtime refuses is a `ModelError` with its first line."""
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
        return open_session(payload, options)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise ModelError(f"ONNX Runtime cannot load the model: {first_line(exc)}") from exc


#: ORT 1.32 on x86 turns int8 activation Q/DQ into uint8 (QDQS8ToU8Transformer) after its QDQ
#: propagation has copied a Q past a Slice with `output_dtype` int8; the pair then fails type
#: inference ("output_dtype INT8 does not match y_zero_point type UINT8"). Seen on the kit's
#: YOLO detector with symmetric int8 activations (`--backend tensorrt`). Without the s8->u8
#: rewrite the model loads and runs ORT's s8s8 kernels, with the same numbers.
_S8_TO_U8 = "QDQS8ToU8Transformer"


def open_session(payload: bytes, options: ort.SessionOptions) -> ort.InferenceSession:
    """A CPU session of `payload`; retried without ORT's s8->u8 rewrite where it breaks the model."""
    try:
        return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        if "output_dtype" not in str(exc):
            raise
        return ort.InferenceSession(
            payload, options, providers=["CPUExecutionProvider"], disabled_optimizers=[_S8_TO_U8]
        )


class Runner:
    """Runs datasets through one session, sample axis first on both sides."""

    def __init__(self, session: ort.InferenceSession, specs: Sequence[InputSpec], batch_size: int = 32) -> None:
        self.session = session
        self.specs = list(specs)
        self.names = [o.name for o in session.get_outputs()]
        fixed = [s.fixed_batch for s in self.specs if s.fixed_batch is not None]
        self.batch_size = min(fixed) if fixed else batch_size
        self.fixed = bool(fixed)
        symbols = {s.batch_symbol for s in self.specs if s.batch_symbol}
        self._out_axes: list[int | None] = []
        for output in session.get_outputs():
            dims = list(output.shape or [])
            axis = next((i for i, d in enumerate(dims) if isinstance(d, str) and d in symbols), None)
            if axis is None and self.fixed and dims and dims[0] == self.batch_size:
                axis = 0
            self._out_axes.append(axis)
        #: set once a batch showed that no output axis can be trusted to carry the samples
        self.per_sample = False

    @property
    def step(self) -> int:
        """Samples per run."""
        return 1 if self.per_sample else self.batch_size

    def feed(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Sample-first arrays in the model's own layout (an unbatched input: its one value)."""
        fed = {}
        for spec in self.specs:
            array = batch[spec.name]
            if spec.batch_axis is None:
                fed[spec.name] = np.ascontiguousarray(array[0])
            elif spec.batch_axis:
                fed[spec.name] = np.moveaxis(array, 0, spec.batch_axis)
            else:
                fed[spec.name] = array
        return fed

    def run(self, data: Dataset, outputs: Sequence[str] | None = None) -> Outputs:
        """Every sample through the model; the selected outputs, sample axis first. A model with
        a fixed batch size gets batches of exactly that size; a remainder that cannot fill
        one is left out (reported by `len` of the result)."""
        names = list(outputs) if outputs is not None else self.names
        index = [self.names.index(n) for n in names]
        parts: list[list[np.ndarray]] = [[] for _ in names]
        size = self.step
        start = 0
        while start < len(data):
            batch = data.slice(start, start + size)
            n = len(batch)
            if self.fixed and n != size:
                break
            results = self.call(names, batch, data.name)
            split = self.to_samples(results, n, index)
            if split is None:  # no trustworthy sample axis: redo everything one sample at a time
                self.per_sample = True
                return self.run(data, outputs)
            for part, array in zip(parts, split):
                part.append(array)
            start += n
        if not parts or not parts[0]:
            raise DataError(f"data {data.name} gave no complete batch (the model takes batches of {size})")
        return [np.concatenate(p) for p in parts]

    def call(self, names: Sequence[str], batch: Dataset, where: str) -> list[np.ndarray]:
        """One batch, outputs as the model gives them (model layout)."""
        try:
            return [np.asarray(r) for r in self.session.run(names, self.feed(batch.inputs))]
        except Exception as exc:  # ORT raises its own exception types
            raise DataError(f"ONNX Runtime failed on data {where}: {first_line(exc)}") from exc

    def to_samples(self, results: Sequence[Any], n: int, index: Sequence[int] | None = None) -> list[Any] | None:
        """Outputs of one run of `n` samples (numpy arrays or torch tensors, model layout)
        turned sample-first; None if no axis can be trusted to hold the samples."""
        axes = [self._out_axes[i] for i in (index if index is not None else range(len(results)))]
        out = []
        for array, axis in zip(results, axes):
            if self.per_sample or (self.fixed and n == 1 and (axis is None or array.shape[axis] != 1)):
                out.append(array[None])  # one sample per run: stack
            elif axis is not None and array.ndim > axis and array.shape[axis] == n:
                out.append(_move_first(array, axis))
            elif n == 1:
                out.append(array[None])
            else:
                return None
        return out


def _move_first(array: Any, axis: int) -> Any:
    if axis == 0:
        return array
    if isinstance(array, np.ndarray):
        return np.moveaxis(array, axis, 0)
    return array.movedim(axis, 0)  # a torch tensor
