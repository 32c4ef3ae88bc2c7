"""Activation ranges from collected statistics: min-max, percentile, MSE-optimal.

Pure functions of (statistics, bits): one calibration serves every scheme."""

from __future__ import annotations

import numpy as np

from mpqc.histogram import TensorStats
from mpqc.quant import activation_qparams

__all__ = ["ACTIVATION_METHODS", "activation_range"]

ACTIVATION_METHODS = ("minmax", "percentile", "mse")


def activation_range(
    stats: TensorStats, bits: int, symmetric: bool, method: str = "minmax", percentile: float = 99.99
) -> tuple[float, float]:
    if method not in ACTIVATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use one of {', '.join(ACTIVATION_METHODS)}")
    lo, hi = min(stats.min, 0.0), max(stats.max, 0.0)
    if method == "minmax" or stats.counts is None or stats.count == 0:
        return lo, hi
    centers, counts = stats.centers, stats.counts.astype(np.float64)
    if method == "percentile":
        found = _percentile_range(centers, counts, lo, hi, symmetric, percentile)
    else:
        found = _mse_range(centers, counts, lo, hi, bits, symmetric)
    return float(found[0]), float(found[1])


def _percentile_range(
    centers: np.ndarray, counts: np.ndarray, lo: float, hi: float, symmetric: bool, percentile: float
) -> tuple[float, float]:
    total = counts.sum()
    if symmetric:
        order = np.argsort(np.abs(centers), kind="stable")
        cdf = np.cumsum(counts[order]) / total
        k = int(np.searchsorted(cdf, percentile / 100.0))
        amax = min(float(np.abs(centers[order[min(k, len(order) - 1)]])), max(-lo, hi))
        return -amax, amax
    cdf = np.cumsum(counts) / total
    tail = (100.0 - percentile) / 100.0
    p_lo = float(centers[int(np.searchsorted(cdf, tail))])
    p_hi = float(centers[min(int(np.searchsorted(cdf, 1.0 - tail)), len(centers) - 1)])
    return max(lo, min(p_lo, 0.0)), min(hi, max(p_hi, 0.0))


def _mse_range(
    centers: np.ndarray, counts: np.ndarray, lo: float, hi: float, bits: int, symmetric: bool, grid: int = 100
) -> tuple[float, float]:
    keep = counts > 0
    x, n = centers[keep], counts[keep]
    best, best_err = (lo, hi), np.inf
    for ratio in np.linspace(1.0, 0.05, grid):
        cand_lo, cand_hi = lo * ratio, hi * ratio
        params = activation_qparams(cand_lo, cand_hi, bits, symmetric)
        qmin, qmax = params.qmin, params.qmax
        scale, zp = float(params.scale), int(params.zero_point)
        q = np.clip(np.rint(x / scale) + zp, qmin, qmax)
        err = float(np.sum(n * np.square(x - (q - zp) * scale)))
        if err < best_err:
            best, best_err = (cand_lo, cand_hi), err
    return best
