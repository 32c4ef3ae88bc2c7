"""Analytic targets described in TOML: hardware with native sub-8-bit arithmetic that this
machine cannot measure. Two kinds: `bitserial` (cost grows with w_bits x a_bits per MAC,
plus traffic over a bandwidth) and `mcu` (cycles per MAC per supported precision, with
flash and SRAM limits). Each shipped file documents its formula; users write their own."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

from mpqc.targets.base import CostInputs, CostModel, Target

from mpqc.analysis import Analysis, Layer
from mpqc.errors import TargetError
from mpqc.precision import Precision
from mpqc.scheme import Scheme

__all__ = ["AnalyticTarget", "AnalyticCostModel", "load_target_file"]

_KINDS = ("bitserial", "mcu")
#: bit-serial arrays take any weight x activation widths; float layers go to the host CPU
_BITSERIAL = tuple(
    Precision.parse(label)
    for label in ("w8a8", "w4a8", "w2a8", "w8a4", "w4a4", "w2a4", "w8a2", "w4a2", "w2a2", "float")
)
#: what compile searches by default: activations below 4 bits rarely survive PTQ
_BITSERIAL_SEARCHED = ("w8a8", "w4a8", "w2a8", "w4a4", "w2a4", "float")


class AnalyticTarget(Target):
    """Hardware this machine cannot measure, described by a TOML file."""

    def __init__(self, name: str, description: str, kind: str, params: dict[str, Any], source: str = "") -> None:
        self.name, self.description, self.kind, self.params, self.source = name, description, kind, params, source

    def precisions(self) -> tuple[Precision, ...]:
        if self.kind == "mcu":
            return tuple(Precision.parse(label) for label in self.params["cycles_per_mac"])
        return _BITSERIAL

    def default_space(self) -> tuple[Precision, ...]:
        if self.kind == "mcu":
            return self.precisions()
        return tuple(p for p in _BITSERIAL if p.label in _BITSERIAL_SEARCHED)

    def runs(self, layer: Layer, precision: Precision) -> bool:
        return precision.form == "qdq" and super().runs(layer, precision)

    def cost_model(self, inputs: CostInputs) -> AnalyticCostModel:
        return AnalyticCostModel(self, inputs.prepared.analysis)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "kind": self.kind, "file": self.source}


def _elements(shape: tuple[int | str | None, ...] | None) -> int:
    if not shape:
        return 0
    return math.prod(d if isinstance(d, int) else 1 for d in shape[1:])


class AnalyticCostModel(CostModel):
    """Costs from the target file's formulas (see the shipped .toml files)."""

    def __init__(self, target: AnalyticTarget, analysis: Analysis) -> None:
        self.target = target
        self.analysis = analysis
        self._layers = {layer.name: layer for layer in analysis.layers}

    def layer_cost(self, layer: str, precision: Precision) -> float:
        return self._cost(self._layers[layer], precision)

    def _cost(self, layer: Layer, precision: Precision) -> float:
        p = self.target.params
        macs = layer.macs or 0
        if not self.target.runs(layer, precision):
            return math.inf
        if self.target.kind == "mcu":
            cycles = macs * p["cycles_per_mac"][precision.label] + p["compute"]["layer_overhead_cycles"]
            return cycles / p["compute"]["frequency_hz"]
        w, a = precision.w_bits, precision.a_bits
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
        return sum(self._cost(layer, scheme[layer.name]) for layer in self.analysis.layers)


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
    """Parse and validate; a malformed file is an `TargetError` naming the key."""
    path = Path(path)
    if not path.is_file():
        raise TargetError(f"target file not found: {path}")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise TargetError(f"target file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"target file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise TargetError(f"cannot read target file {path}: {exc.strerror}") from None
    where = path.name
    for key in ("name", "kind"):
        if not isinstance(data.get(key), str):
            raise TargetError(f"{where}: key '{key}' must be a string")
    kind = data["kind"]
    if kind not in _KINDS:
        raise TargetError(f"{where}: key 'kind' must be one of {', '.join(_KINDS)}, got {kind!r}")
    for table, keys in _SCHEMA[kind].items():
        section = data.get(table)
        if not isinstance(section, dict):
            raise TargetError(f"{where}: missing table [{table}]")
        for key in keys:
            value = section.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise TargetError(f"{where}: key '{table}.{key}' must be a non-negative number, got {value!r}")
            if key != "layer_overhead_cycles" and value == 0:
                raise TargetError(f"{where}: key '{table}.{key}' must be positive")
    if kind == "mcu":
        cycles = data.get("cycles_per_mac")
        if not isinstance(cycles, dict) or not cycles:
            raise TargetError(f"{where}: missing table [cycles_per_mac]")
        for label, value in cycles.items():
            if label != "float" and not _valid_label(label):
                raise TargetError(f"{where}: key 'cycles_per_mac.{label}' is not a precision like w4a8 or float")
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise TargetError(f"{where}: key 'cycles_per_mac.{label}' must be a positive number, got {value!r}")
    return AnalyticTarget(data["name"], str(data.get("description", "")), kind, data, str(path))


def _valid_label(label: str) -> bool:
    return re.fullmatch(r"w(2|4|8|f)a(2|4|8|f)", label) is not None
