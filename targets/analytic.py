"""Analytic targets described in TOML: hardware with native sub-8-bit arithmetic that this
machine cannot measure. Two kinds: `bitserial` (cost grows with w_bits x a_bits per MAC,
plus traffic over a bandwidth) and `mcu` (cycles per MAC per supported precision, with
flash and SRAM limits). Each shipped file documents its formula; users write their own."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpqc.targets.base import CostModel, Precision, Target, precision_label

from mpqc.analysis import QUANTIZABLE_OPS, Analysis, Layer
from mpqc.errors import MpqcError
from mpqc.scheme import Scheme

__all__ = ["AnalyticTarget", "AnalyticCostModel", "load_target_file"]

_KINDS = ("bitserial", "mcu")


@dataclass(frozen=True)
class AnalyticTarget(Target):
    kind: str = "bitserial"
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def supports(self, op_type: str, precision: Precision) -> bool:
        if op_type not in QUANTIZABLE_OPS:
            return False
        if self.kind == "mcu":
            return precision_label(precision) in self.params["cycles_per_mac"]
        w, a = precision
        return (w is None) == (a is None)  # the array needs both quantized; float goes to the host

    @property
    def flash_bytes(self) -> int | None:
        return self.params.get("memory", {}).get("flash_bytes") if self.kind == "mcu" else None

    @property
    def sram_bytes(self) -> int | None:
        return self.params.get("memory", {}).get("sram_bytes") if self.kind == "mcu" else None

    def cost_model(self, analysis: Analysis) -> AnalyticCostModel:
        return AnalyticCostModel(self, analysis)


def _elements(shape: tuple[int | str | None, ...] | None) -> int:
    if not shape:
        return 0
    return math.prod(d if isinstance(d, int) else 1 for d in shape[1:])


class AnalyticCostModel(CostModel):
    def __init__(self, target: AnalyticTarget, analysis: Analysis) -> None:
        self.target = target
        self.analysis = analysis
        self._layers = {layer.name: layer for layer in analysis.layers}

    def layer_cost(self, layer: str, precision: Precision) -> float:
        return self._cost(self._layers[layer], precision)

    def _cost(self, layer: Layer, precision: Precision) -> float:
        p = self.target.params
        macs = layer.macs or 0
        if not self.target.supports(layer.op_type, precision):
            return math.inf
        if self.target.kind == "mcu":
            cycles = macs * p["cycles_per_mac"][precision_label(precision)] + p["compute"]["layer_overhead_cycles"]
            return cycles / p["compute"]["frequency_hz"]
        w, a = precision
        elems = _elements(layer.input_shape) + _elements(layer.output_shape)
        if w is None or a is None:
            compute = macs / p["float"]["macs_per_second"]
            traffic = (layer.params * 32 + elems * 32) / 8 / p["memory"]["bandwidth_bytes_per_s"]
        else:
            compute = macs * w * a / (p["compute"]["lanes"] * p["compute"]["frequency_hz"])
            traffic = (layer.params * w + elems * a) / 8 / p["memory"]["bandwidth_bytes_per_s"]
        overhead = p["compute"]["layer_overhead_cycles"] / p["compute"]["frequency_hz"]
        return compute + traffic + overhead

    def latency(self, scheme: Scheme) -> float:
        """Sum of the layers' costs; ops other than layers are taken as free (fused)."""
        return sum(self._cost(layer, _pair(scheme, layer.name)) for layer in self.analysis.layers)


def _pair(scheme: Scheme, layer: str) -> Precision:
    return (scheme[layer].w_bits, scheme[layer].a_bits)


_SCHEMA: dict[str, dict[str, dict[str, type]]] = {
    "bitserial": {
        "compute": {"frequency_hz": float, "lanes": float, "layer_overhead_cycles": float},
        "memory": {"bandwidth_bytes_per_s": float},
        "float": {"macs_per_second": float},
    },
    "mcu": {
        "compute": {"frequency_hz": float, "layer_overhead_cycles": float},
        "memory": {"flash_bytes": float, "sram_bytes": float},
    },
}


def load_target_file(path: str | Path) -> AnalyticTarget:
    """Parse and validate; a malformed file is an `MpqcError` naming the key."""
    path = Path(path)
    if not path.is_file():
        raise MpqcError(f"target file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MpqcError(f"target file {path} is not valid TOML: {exc}") from None
    where = path.name
    for key in ("name", "kind"):
        if not isinstance(data.get(key), str):
            raise MpqcError(f"{where}: key '{key}' must be a string")
    kind = data["kind"]
    if kind not in _KINDS:
        raise MpqcError(f"{where}: key 'kind' must be one of {', '.join(_KINDS)}, got {kind!r}")
    for table, keys in _SCHEMA[kind].items():
        section = data.get(table)
        if not isinstance(section, dict):
            raise MpqcError(f"{where}: missing table [{table}]")
        for key in keys:
            value = section.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise MpqcError(f"{where}: key '{table}.{key}' must be a non-negative number, got {value!r}")
            if key != "layer_overhead_cycles" and value == 0:
                raise MpqcError(f"{where}: key '{table}.{key}' must be positive")
    if kind == "mcu":
        table = data.get("cycles_per_mac")
        if not isinstance(table, dict) or not table:
            raise MpqcError(f"{where}: missing table [cycles_per_mac]")
        for label, value in table.items():
            if label != "float" and not _valid_label(label):
                raise MpqcError(f"{where}: key 'cycles_per_mac.{label}' is not a precision like w4a8 or float")
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise MpqcError(f"{where}: key 'cycles_per_mac.{label}' must be a positive number, got {value!r}")
    return AnalyticTarget(data["name"], str(data.get("description", "")), kind, data, str(path))


def _valid_label(label: str) -> bool:
    return re.fullmatch(r"w(2|4|8|f)a(2|4|8|f)", label) is not None
