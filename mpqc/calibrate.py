"""One streaming ONNX Runtime pass over the calibration data: every observed tensor's
statistics are updated batch by batch, so memory stays bounded by one batch."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from mpqc.data import Dataset
from mpqc.errors import MpqcError
from mpqc.histogram import TensorStats
from mpqc.passes.observe_tensors import ObserveTensorsPass
from mpqc.runtime import make_session, run_batches

__all__ = ["Calibration", "calibrate"]


@dataclass
class Calibration:
    stats: dict[str, TensorStats]
    samples: int
    seconds: float
    histograms: bool
    extra: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, tensor: str) -> TensorStats:
        return self.stats[tensor]

    def __contains__(self, tensor: object) -> bool:
        return tensor in self.stats

    @classmethod
    def placeholder(cls, tensors: Sequence[str]) -> Calibration:
        """Unit ranges for every tensor: enough to build a QDQ graph whose structure (and so
        latency) is right, without data. Never used for accuracy."""
        stats = {}
        for name in tensors:
            stat = TensorStats(histogram=False)
            stat.update(np.array([-1.0, 1.0], np.float32))
            stats[name] = stat
        return cls(stats, 0, 0.0, False)


def calibrate(
    model: ir.Model,
    data: Dataset,
    tensors: Sequence[str],
    histograms: bool = True,
    batch_size: int = 64,
    threads: int | None = None,
) -> Calibration:
    start = time.perf_counter()
    observed = ObserveTensorsPass(tensors)(model).model
    session = make_session(observed, threads=threads)
    names = [o.name for o in session.get_outputs() if o.name in set(tensors)]
    stats = {name: TensorStats(histogram=histograms) for name in names}
    for outputs in run_batches(session, data, names, batch_size):
        for name, array in zip(names, outputs):
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise MpqcError(f"calibration produced NaN or Inf in tensor {name}; check the data and the model")
            stats[name].update(array)
    if stats and next(iter(stats.values())).count == 0:
        raise MpqcError(f"data {data.name} gave no complete batch for calibration")
    return Calibration(stats, len(data), time.perf_counter() - start, histograms)
