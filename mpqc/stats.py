"""Streaming statistics of activation tensors, with bounded memory.

`TensorStats` keeps the exact min/max and a histogram whose range grows by doubling, so bins
merge exactly and no data is ever kept (an update of more than 2^20 values feeds the
histogram a strided sample of them). Values any histogram would be ruined by are counted
apart: non-finite values, and sentinels beyond ±1e9 (attention masks filled with the float
minimum). Percentile and MSE ranges ignore them, so they saturate to the end of the range,
which is what a mask needs; min-max still sees them. `Calibration` holds the statistics of
every observed tensor: one calibration serves every scheme."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TensorStats", "Calibration", "BINS", "SENTINEL"]

BINS = 4096  # over [-R, R]; R only ever doubles, so merging is exact
#: at most this many values of one update go into the histogram (a strided, deterministic
#: sample); min, max and counts stay exact
HISTOGRAM_SAMPLE = 1 << 20
SENTINEL = 1e9  # |x| beyond this is a mask value or an overflow, not part of the distribution


class TensorStats:
    """Min, max, count and a doubling histogram of one tensor, with sentinels and non-finite values apart."""

    __slots__ = ("min", "max", "count", "radius", "counts", "low_sentinels", "high_sentinels", "nonfinite")

    def __init__(self, histogram: bool = True) -> None:
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.radius = 0.0
        self.counts: np.ndarray | None = np.zeros(BINS, dtype=np.int64) if histogram else None
        self.low_sentinels = 0
        self.high_sentinels = 0
        self.nonfinite = 0

    def update(self, values: np.ndarray) -> None:
        flat = np.asarray(values, dtype=np.float32).ravel()
        if flat.size == 0:
            return
        lo, hi = float(flat.min()), float(flat.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):  # rare: NaN or inf somewhere
            finite = np.isfinite(flat)
            self.nonfinite += int(flat.size - finite.sum())
            flat = flat[finite]
            if flat.size == 0:
                return
            lo, hi = float(flat.min()), float(flat.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.count += flat.size
        if self.counts is None:
            return
        if lo < -SENTINEL or hi > SENTINEL:  # rare: mask values
            self.low_sentinels += int(np.count_nonzero(flat < -SENTINEL))
            self.high_sentinels += int(np.count_nonzero(flat > SENTINEL))
            flat = flat[np.abs(flat) <= SENTINEL]
            if flat.size == 0:
                return
            lo, hi = float(flat.min()), float(flat.max())
        if flat.size > HISTOGRAM_SAMPLE:
            flat = flat[:: -(-flat.size // HISTOGRAM_SAMPLE)]
        need = max(abs(lo), abs(hi))
        if self.radius == 0.0:
            self.radius = 2.0 ** math.ceil(math.log2(need)) if need > 0 else 1.0
        while need > self.radius:
            self._double()
        # float32 index arithmetic: one pass, no float64 copy (values lie in [-R, R])
        idx = ((flat + np.float32(self.radius)) * np.float32(BINS / (2 * self.radius))).astype(np.int32)
        np.minimum(idx, BINS - 1, out=idx)
        np.maximum(idx, 0, out=idx)
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

    @property
    def bulk_range(self) -> tuple[float, float]:
        """Min and max without sentinels (the exact range when there are none)."""
        if self.counts is None or not (self.low_sentinels or self.high_sentinels):
            return self.min, self.max
        nonzero = np.nonzero(self.counts)[0]
        if len(nonzero) == 0:
            return 0.0, 0.0
        width = 2 * self.radius / BINS
        lo = -self.radius + width * nonzero[0] if self.low_sentinels else self.min
        hi = -self.radius + width * (nonzero[-1] + 1) if self.high_sentinels else self.max
        return float(lo), float(hi)

    def to_json(self) -> dict[str, float | int]:
        return {
            "min": self.min,
            "max": self.max,
            "count": self.count,
            "sentinels": self.low_sentinels + self.high_sentinels,
            "nonfinite": self.nonfinite,
        }


@dataclass
class Calibration:
    """Statistics of every observed tensor, from one pass over the calibration data."""

    stats: dict[str, TensorStats]
    samples: int
    seconds: float
    histograms: bool
    notes: list[str] = field(default_factory=list)
    #: ranges computed so far (see `mpqc.ranges.range_of`): MSE searches are costly and every
    #: scheme asks again
    ranges: dict[tuple[str, int, bool, str, float], tuple[float, float]] = field(
        default_factory=dict, repr=False, compare=False
    )

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

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "seconds": self.seconds,
            "tensors": {name: stat.to_json() for name, stat in self.stats.items()},
            "notes": list(self.notes),
        }
