"""Activation ranges from collected statistics: min-max, percentile, MSE-optimal.

Pure functions of (statistics, bits): one calibration serves every scheme. Percentile and
MSE work on the histogram, which leaves out mask sentinels (see `mpqc.stats`): those
saturate to the end of the chosen range."""

from __future__ import annotations

import numpy as np

from mpqc.quant import activation_qparams
from mpqc.stats import Calibration, TensorStats

__all__ = ["ACTIVATION_METHODS", "activation_range", "range_of"]

ACTIVATION_METHODS = ("minmax", "percentile", "mse")


def range_of(
    calibration: Calibration, tensor: str, bits: int, symmetric: bool, method: str, percentile: float
) -> tuple[float, float]:
    """The range of one calibrated tensor, computed once per (bits, symmetry, method)."""
    key = (tensor, bits, symmetric, method, percentile)
    if key not in calibration.ranges:
        calibration.ranges[key] = activation_range(calibration[tensor], bits, symmetric, method, percentile)
    return calibration.ranges[key]


def activation_range(
    stats: TensorStats, bits: int, symmetric: bool, method: str = "minmax", percentile: float = 99.99
) -> tuple[float, float]:
    """The (low, high) range of one activation tensor at `bits` by `method`."""
    if method not in ACTIVATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use one of {', '.join(ACTIVATION_METHODS)}")
    if stats.count == 0:  # never seen a finite value
        return 0.0, 0.0
    lo, hi = min(stats.min, 0.0), max(stats.max, 0.0)
    if method == "minmax" or stats.counts is None:
        return lo, hi
    bulk_lo, bulk_hi = stats.bulk_range
    lo, hi = min(bulk_lo, 0.0), max(bulk_hi, 0.0)
    centers, counts = stats.centers, stats.counts.astype(np.float64)
    if counts.sum() == 0:
        return lo, hi
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
    centers: np.ndarray, counts: np.ndarray, lo: float, hi: float, bits: int, symmetric: bool, grid: int = 48
) -> tuple[float, float]:
    """Grid search of the clipping range minimising the histogram's expected squared error.
    Asymmetric ranges search both ends independently (a ReLU output and a signed tensor
    with one long tail need different clipping on each side)."""
    keep = counts > 0
    x, n = centers[keep], counts[keep]
    ratios = np.linspace(1.0, 0.05, grid)
    if symmetric:
        amax = max(-lo, hi)
        candidates = [(-amax * r, amax * r) for r in ratios]
        errors = [_error(x, n, c_lo, c_hi, bits, True) for c_lo, c_hi in candidates]
        return candidates[int(np.argmin(errors))]
    qmax = (1 << bits) - 1
    best, best_err = (lo, hi), np.inf
    for lo_ratio in ratios if lo < 0 else ratios[:1]:
        c_lo = lo * lo_ratio
        c_hi = hi * ratios  # vectorised over the upper end
        scale = np.maximum((c_hi - c_lo) / qmax, 1e-12)
        zp = np.clip(np.rint(-c_lo / scale), 0, qmax)
        q = np.clip(np.rint(x[None, :] / scale[:, None]) + zp[:, None], 0, qmax)
        err = (n[None, :] * np.square(x[None, :] - (q - zp[:, None]) * scale[:, None])).sum(axis=1)
        k = int(np.argmin(err))
        if err[k] < best_err:
            best, best_err = (c_lo, float(c_hi[k])), float(err[k])
    return best


def _error(x: np.ndarray, n: np.ndarray, lo: float, hi: float, bits: int, symmetric: bool) -> float:
    params = activation_qparams(lo, hi, bits, symmetric)
    scale, zp = float(params.scale), int(params.zero_point)
    q = np.clip(np.rint(x / scale) + zp, params.qmin, params.qmax)
    return float(np.sum(n * np.square(x - (q - zp) * scale)))
