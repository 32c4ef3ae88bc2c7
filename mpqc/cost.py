"""The cost of a whole scheme on a target: latency, weight bytes, peak activation memory
and BOPs, so that a budget can be stated in any of them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import onnx_ir as ir

from mpqc.analysis import Analysis, Layer
from mpqc.metrics import METRICS
from mpqc.precision import Precision
from mpqc.scheme import Scheme

__all__ = ["SchemeCost", "weight_bytes", "layer_weight_bytes", "layer_bops", "bops", "peak_activation_bytes"]

FLOAT_BITS = 32
_PASS_THROUGH = frozenset(
    [
        "Relu",
        "Clip",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Flatten",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Identity",
    ]
)


@dataclass(frozen=True)
class SchemeCost:
    """What a scheme costs: latency (seconds, from the target), weight bytes, peak activation bytes, BOPs."""

    latency_s: float
    weight_bytes: int
    peak_activation_bytes: int
    bops: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_ms"] = self.latency_s * 1e3
        return data

    def metric(self, name: str) -> float:
        """The value of one of `mpqc.metrics.METRICS`, in its base unit."""
        values = {
            "latency": self.latency_s,
            "size": float(self.weight_bytes),
            "memory": float(self.peak_activation_bytes),
            "bops": float(self.bops),
        }
        assert set(values) == set(METRICS)
        return values[name]


def _bits(value: int | None) -> int:
    return FLOAT_BITS if value is None else value


def layer_weight_bytes(layer: Layer, precision: Precision) -> int:
    """One layer's weights at their stored width (packed; block scales of nbits counted),
    its bias at 32 bits."""
    count = math.prod(layer.weight_shape)
    stored = (count * _bits(precision.w_bits) + 7) // 8
    if precision.form == "nbits" and precision.block:
        stored += 4 * math.ceil(count / precision.block)  # one float scale per block
    return stored + (layer.params - count) * 4


def layer_bops(layer: Layer, precision: Precision) -> int:
    """Bit operations: MACs x weight bits x activation bits, float counted as 32 bits."""
    return (layer.macs or 0) * _bits(precision.w_bits) * _bits(precision.a_bits)


def weight_bytes(analysis: Analysis, scheme: Scheme) -> int:
    """Bytes of every layer's weights at their stored widths, biases at 32 bits."""
    return sum(layer_weight_bytes(layer, scheme[layer.name]) for layer in analysis.layers)


def bops(analysis: Analysis, scheme: Scheme) -> int:
    """Bit operations of the whole scheme (see `layer_bops`)."""
    return sum(layer_bops(layer, scheme[layer.name]) for layer in analysis.layers)


def peak_activation_bytes(model: ir.Model, analysis: Analysis, scheme: Scheme) -> int:
    """Peak bytes of live activations when nodes run in order, one sample. A tensor is held
    at b bits when everything reading it (looking through ReLU, pooling and shape ops) is a
    layer taking b-bit activations; otherwise at 32 bits."""
    layers = {layer.name: layer for layer in analysis.layers}
    nodes = list(model.graph)
    last_use: dict[str, int] = {}
    size: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for value in node.inputs:
            if value is not None and value.name and not value.is_initializer():
                last_use[value.name] = index
    for value in model.graph.outputs:
        last_use[value.name or ""] = len(nodes)

    def reader_bits(value: ir.Value, depth: int = 0) -> set[int | None]:
        found: set[int | None] = set()
        for use in value.uses():
            node = use.node
            if node.name in layers and use.idx == 0:
                prec = scheme[node.name]
                found.add(prec.a_bits if prec.quantizes_activations else None)
            elif node.op_type in _PASS_THROUGH and depth < 16:
                found |= reader_bits(node.outputs[0], depth + 1)
            else:
                found.add(None)
        return found or {None}

    def nbytes(value: ir.Value) -> int:
        elements = math.prod(d if isinstance(d, int) else 1 for d in (value.shape or [])[1:]) if value.shape else 0
        bits = reader_bits(value)
        width = _bits(bits.pop()) if len(bits) == 1 else FLOAT_BITS
        return (elements * width + 7) // 8

    live: dict[str, int] = {v.name or "": nbytes(v) for v in model.graph.inputs if not v.is_initializer()}
    peak = sum(live.values())
    for index, node in enumerate(nodes):
        for value in node.outputs:
            if value.name:
                size[value.name] = nbytes(value)
                live[value.name] = size[value.name]
        peak = max(peak, sum(live.values()))
        for name in [n for n in live if last_use.get(n, -1) <= index]:
            del live[name]
    return peak
