"""Quantization arithmetic in plain numpy: integer ranges, scales and zero points, and the
fake-quantization reference that the QDQ graphs must agree with."""

from __future__ import annotations

import hashlib
from typing import Any

import ml_dtypes
import numpy as np
import onnx_ir as ir

__all__ = [
    "STORAGE_TYPES",
    "int_range",
    "storage_dtype",
    "ir_dtype",
    "QParams",
    "activation_qparams",
    "weight_qparams",
    "weight_range",
    "block_weight_qparams",
    "block_expand",
    "quantize",
    "dequantize",
    "fake_quantize",
]

_EPS = np.float32(1e-12)

_STORAGE: dict[tuple[int, bool], type] = {
    (8, True): np.int8,
    (8, False): np.uint8,
    (16, True): np.int16,
    (16, False): np.uint16,
    (4, True): ml_dtypes.int4,
    (4, False): ml_dtypes.uint4,
    (2, True): ml_dtypes.int2,
    (2, False): ml_dtypes.uint2,
    (32, True): np.int32,
}


#: (bits, signed) of every integer type mpqc stores
STORAGE_TYPES: tuple[tuple[int, bool], ...] = tuple(_STORAGE)


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """The integer range of a `bits`-wide type."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def storage_dtype(bits: int, signed: bool) -> np.dtype:
    """The numpy type that stores `bits`-wide integers (ml_dtypes below 8 bits)."""
    return np.dtype(_STORAGE[(bits, signed)])


def ir_dtype(bits: int, signed: bool) -> ir.DataType:
    """The ONNX type of `bits`-wide integers."""
    return ir.DataType.from_numpy(storage_dtype(bits, signed))


class QParams:
    """Scale and zero point of one quantizer (per-tensor, or per-channel along `axis`)."""

    __slots__ = ("scale", "zero_point", "bits", "signed", "axis", "qmin", "qmax")

    def __init__(
        self,
        scale: np.ndarray,
        zero_point: np.ndarray,
        bits: int,
        signed: bool,
        axis: int | None,
        qrange: tuple[int, int] | None = None,
    ):
        self.scale = np.asarray(scale, dtype=np.float32)
        self.zero_point = np.asarray(zero_point, dtype=np.int32)
        self.bits = bits
        self.signed = signed
        self.axis = axis
        self.qmin, self.qmax = qrange or int_range(bits, signed)

    def zero_point_array(self) -> np.ndarray:
        return self.zero_point.astype(storage_dtype(self.bits, self.signed))


def activation_qparams(lo: float, hi: float, bits: int, symmetric: bool) -> QParams:
    """Symmetric: signed, zero point 0. Asymmetric: unsigned; the range always holds 0 so that
    zero (padding, ReLU) is exact."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric:
        qmin, qmax = int_range(bits, True)
        scale = max(max(-lo, hi) / qmax, float(_EPS))
        return QParams(np.asarray(scale, np.float32), np.asarray(0, np.int32), bits, True, None)
    qmin, qmax = int_range(bits, False)
    scale = max((hi - lo) / (qmax - qmin), float(_EPS))
    zp = int(np.clip(np.round(qmin - lo / np.float32(scale)), qmin, qmax))
    return QParams(np.asarray(scale, np.float32), np.asarray(zp, np.int32), bits, False, None)


def weight_range(bits: int, reduce_range: bool = False) -> tuple[int, int]:
    """Signed weight range. `reduce_range` keeps 8-bit weights in [-64, 63]: x86 AVX2 int8
    kernels (u8 x s8 pairs summed in int16) then cannot saturate, which costs far less
    accuracy than saturation does on CPUs without VNNI."""
    return (-64, 63) if reduce_range and bits == 8 else int_range(bits, True)


def weight_qparams(
    weight: np.ndarray,
    bits: int,
    axis: int | None,
    symmetric: bool,
    method: str = "minmax",
    reduce_range: bool = False,
    grid: int = 64,
) -> QParams:
    """Signed weights, per channel along `axis` (or per tensor). `mse` searches the clipping
    ratio per channel that minimises the squared quantization error; it pays at 4 and 2 bits.
    Its result is remembered per weight's content: a compile emits the same weights at the
    same widths hundreds of times (every sensitivity, candidate and QAT job), and the search
    took about half of each emit."""
    w = np.asarray(weight, dtype=np.float32)
    if method != "mse":
        return _weight_qparams(w, bits, axis, symmetric, method, reduce_range, grid)
    digest = hashlib.blake2b(np.ascontiguousarray(w).data, digest_size=16).digest()
    key = (digest, w.shape, bits, axis, symmetric, reduce_range, grid)
    found = _MSE_SEARCHED.get(key)
    if found is None:
        found = _weight_qparams(w, bits, axis, symmetric, method, reduce_range, grid)
        if len(_MSE_SEARCHED) >= _MSE_SEARCHED_MAX:
            _MSE_SEARCHED.pop(next(iter(_MSE_SEARCHED)))  # oldest first
        _MSE_SEARCHED[key] = found
    return QParams(found.scale.copy(), found.zero_point.copy(), bits, True, axis, (found.qmin, found.qmax))


#: weight_qparams's `mse` results, by the weight's content and the arguments
_MSE_SEARCHED: dict[tuple[Any, ...], QParams] = {}
_MSE_SEARCHED_MAX = 4096


def _weight_qparams(
    w: np.ndarray,
    bits: int,
    axis: int | None,
    symmetric: bool,
    method: str,
    reduce_range: bool,
    grid: int,
) -> QParams:
    qrange = weight_range(bits, reduce_range)
    rows = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1) if axis is not None else w.reshape(1, -1)
    lo, hi = rows.min(axis=1), rows.max(axis=1)
    best = _qparams_rows(lo, hi, qrange, symmetric)
    if method == "mse":
        best_err = _row_error(rows, best, qrange)
        for ratio in np.linspace(1.0, 0.2, grid, dtype=np.float32)[1:]:
            cand = _qparams_rows(lo * ratio, hi * ratio, qrange, symmetric)
            err = _row_error(rows, cand, qrange)
            better = err < best_err
            if better.any():
                best_err = np.where(better, err, best_err)
                best = (np.where(better, cand[0], best[0]), np.where(better, cand[1], best[1]))
    elif method != "minmax":
        raise ValueError(f"unknown weight method {method!r}")
    scale, zp = best
    if axis is None:
        scale, zp = scale.reshape(()), zp.reshape(())
    return QParams(scale, zp, bits, True, axis, qrange)


def block_weight_qparams(
    weight: np.ndarray, bits: int, block: int, symmetric: bool = True, method: str = "minmax", mirror: bool = True
) -> QParams:
    """Block-wise weights of a MatMul weight [K, N]: one scale per `block` consecutive values
    of the reduction axis K in each column (ONNX blocked quantization, axis 0; the layout
    ONNX Runtime fuses into MatMulNBits). The scale has shape [ceil(K / block), N]; `axis`
    is 0 and the block size is `block` (see `block_expand`). `mirror=False` keeps every zero
    point at 0 on a [-(2^(b-1) - 1), 2^(b-1) - 1] grid (TensorRT takes no other)."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"block quantization needs a 2-D weight, got shape {w.shape}")
    k, n = w.shape
    blocks = -(-k // block)
    padded = np.zeros((blocks * block, n), np.float32)
    padded[:k] = w
    rows = padded.reshape(blocks, block, n).transpose(0, 2, 1).reshape(blocks * n, block)
    if symmetric and mirror:
        scale, zp = _signed_extreme_rows(rows, bits, method)
        qrange = int_range(bits, True)
    elif symmetric:
        flat = weight_qparams(rows, bits, 0, True, method)  # scale = |w|max / (2^(b-1) - 1)
        scale, zp, qrange = flat.scale, flat.zero_point, (-flat.qmax, flat.qmax)
    else:
        flat = weight_qparams(rows, bits, 0, False, method)
        scale, zp, qrange = flat.scale, flat.zero_point, (flat.qmin, flat.qmax)
    return QParams(scale.reshape(blocks, n), zp.reshape(blocks, n), bits, True, 0, qrange)


def _signed_extreme_rows(rows: np.ndarray, bits: int, method: str, grid: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Zero-centred grids that use all 2^b levels: the value of largest magnitude maps to the
    wider end (-2^(b-1)); when it is positive, a zero point of -1 mirrors the grid, so
    q - zp spans [-(2^(b-1) - 1), 2^(b-1)]. One level more than a symmetric [-7, 7] grid,
    as ONNX Runtime's own MatMulNBits quantizer does (with a negative scale there)."""
    qmin, qmax = int_range(bits, True)
    lo, hi = rows.min(axis=1), rows.max(axis=1)
    negative = -lo >= hi
    zp = np.where(negative, 0, -1).astype(np.int32)
    absmax = np.maximum(-lo, hi).astype(np.float32)
    best = (np.maximum(absmax / np.float32(-qmin), _EPS).astype(np.float32), zp)
    if method == "mse":
        best_err = _row_error(rows, best, (qmin, qmax))
        for ratio in np.linspace(1.0, 0.2, grid, dtype=np.float32)[1:]:
            cand = (np.maximum(absmax * ratio / np.float32(-qmin), _EPS).astype(np.float32), zp)
            err = _row_error(rows, cand, (qmin, qmax))
            better = err < best_err
            if better.any():
                best_err = np.where(better, err, best_err)
                best = (np.where(better, cand[0], best[0]), zp)
    elif method != "minmax":
        raise ValueError(f"unknown weight method {method!r}")
    return best


def block_expand(values: np.ndarray, block: int, size: int) -> np.ndarray:
    """Per-block values [ceil(K / block), N] repeated to one per weight row [K, N]."""
    return np.repeat(np.asarray(values), block, axis=0)[:size]


def _qparams_rows(
    lo: np.ndarray, hi: np.ndarray, qrange: tuple[int, int], symmetric: bool
) -> tuple[np.ndarray, np.ndarray]:
    qmin, qmax = qrange
    lo, hi = np.minimum(lo, 0).astype(np.float32), np.maximum(hi, 0).astype(np.float32)
    if symmetric:
        scale = np.maximum(np.maximum(-lo, hi) / np.float32(qmax), _EPS).astype(np.float32)
        return scale, np.zeros(scale.shape, np.int32)
    scale = np.maximum((hi - lo) / np.float32(qmax - qmin), _EPS).astype(np.float32)
    zp = np.clip(np.round(qmin - lo / scale), qmin, qmax).astype(np.int32)
    return scale, zp


def _row_error(rows: np.ndarray, params: tuple[np.ndarray, np.ndarray], qrange: tuple[int, int]) -> np.ndarray:
    qmin, qmax = qrange
    scale, zp = params[0][:, None], params[1][:, None]
    q = np.clip(np.rint(rows / scale) + zp, qmin, qmax)
    return np.square(rows - (q - zp) * scale).sum(axis=1)


def _broadcast(params: QParams, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    if params.axis is None or params.scale.ndim == 0:
        return params.scale, params.zero_point
    shape = [1] * ndim
    shape[params.axis] = -1
    return params.scale.reshape(shape), params.zero_point.reshape(shape)


def quantize(x: np.ndarray, params: QParams) -> np.ndarray:
    """Round half to even, saturate: exactly what ONNX QuantizeLinear does."""
    scale, zp = _broadcast(params, np.ndim(x))
    q = np.rint(np.asarray(x, dtype=np.float32) / scale) + zp
    return np.clip(q, params.qmin, params.qmax).astype(np.int32)


def dequantize(q: np.ndarray, params: QParams) -> np.ndarray:
    """Integers back to floats: (q - zero point) * scale, as ONNX DequantizeLinear."""
    scale, zp = _broadcast(params, np.ndim(q))
    return ((np.asarray(q, dtype=np.int32) - zp).astype(np.float32) * scale).astype(np.float32)


def fake_quantize(x: np.ndarray, params: QParams) -> np.ndarray:
    """Quantize then dequantize: the values a QDQ pair lets through."""
    return dequantize(quantize(x, params), params)
