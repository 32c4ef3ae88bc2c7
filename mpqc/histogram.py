"""Streaming statistics of one tensor with bounded memory: exact min/max and a histogram
whose range grows by doubling, so bins merge exactly and no data is ever kept."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["TensorStats"]

BINS = 4096  # over [-R, R]; R only ever doubles, so merging is exact


class TensorStats:
    __slots__ = ("min", "max", "count", "radius", "counts")

    def __init__(self, histogram: bool = True) -> None:
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.radius = 0.0
        self.counts: np.ndarray | None = np.zeros(BINS, dtype=np.int64) if histogram else None

    def update(self, values: np.ndarray) -> None:
        flat = np.asarray(values, dtype=np.float32).ravel()
        if flat.size == 0:
            return
        lo, hi = float(flat.min()), float(flat.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.count += flat.size
        if self.counts is None:
            return
        need = max(abs(lo), abs(hi))
        if self.radius == 0.0:
            self.radius = 2.0 ** math.ceil(math.log2(need)) if need > 0 else 1.0
        while need > self.radius:
            self._double()
        width = 2 * self.radius / BINS
        idx = np.minimum(((flat + self.radius) / width).astype(np.int64), BINS - 1)
        self.counts += np.bincount(idx, minlength=BINS)

    def _double(self) -> None:
        assert self.counts is not None
        merged = self.counts.reshape(-1, 2).sum(axis=1)
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.counts[BINS // 4 : BINS // 4 + BINS // 2] = merged
        self.radius *= 2

    @property
    def centers(self) -> np.ndarray:
        width = 2 * self.radius / BINS
        return (-self.radius + width * (np.arange(BINS) + 0.5)).astype(np.float64)

    def to_json(self) -> dict[str, float | int]:
        return {"min": self.min, "max": self.max, "count": self.count}
