"""Targets: what each layer costs at each precision on a runtime or a chip.

The registry is the one place that knows the kinds: `get_target("ort-cpu")` measures ONNX
Runtime here, `get_target("openvino-cpu")` OpenVINO (the `openvino` extra);
`get_target("bitserial")`, `"mcu"` or a path to a `.toml` file gives an analytic target."""

from __future__ import annotations

from pathlib import Path

from mpqc.targets.analytic import AnalyticCostModel, AnalyticTarget, load_target_file
from mpqc.targets.base import CostInputs, CostModel, Measurement, Target, precisions_text
from mpqc.targets.for_backend import BackendTarget
from mpqc.targets.openvino_cpu import OpenVinoCostModel, OpenVinoCpuTarget, openvino_version
from mpqc.targets.ort_cpu import OrtCpuCostModel, OrtCpuTarget

from mpqc.errors import TargetError

__all__ = [
    "AnalyticCostModel",
    "AnalyticTarget",
    "BackendTarget",
    "CostInputs",
    "CostModel",
    "Measurement",
    "OpenVinoCostModel",
    "OpenVinoCpuTarget",
    "OrtCpuCostModel",
    "OrtCpuTarget",
    "Target",
    "builtin_targets",
    "get_target",
    "precisions_text",
]

_HERE = Path(__file__).resolve().parent


def builtin_targets() -> list[Target]:
    """ort-cpu, openvino-cpu where OpenVINO is installed, and every target description
    shipped with mpqc."""
    measured: list[Target] = [OrtCpuTarget()]
    if openvino_version() is not None:
        measured.append(OpenVinoCpuTarget())
    return [*measured, *[load_target_file(p) for p in sorted(_HERE.glob("*.toml"))]]


def get_target(spec: str | Target, threads: int = 1) -> Target:
    """A target by name (`ort-cpu`, `bitserial`, `mcu`), a `.toml` path, or a Target."""
    if isinstance(spec, Target):
        return spec
    if spec == "ort-cpu":
        return OrtCpuTarget(threads=threads)
    if spec == "openvino-cpu":
        return OpenVinoCpuTarget(threads=threads)  # refuses by name where OpenVINO is absent
    if spec.endswith(".toml") or Path(spec).is_file():
        return load_target_file(spec)
    shipped = _HERE / f"{spec}.toml"
    if shipped.is_file():
        return load_target_file(shipped)
    names = ", ".join(t.name for t in builtin_targets())
    if openvino_version() is None:
        names += ", openvino-cpu (with the openvino extra)"
    raise TargetError(f"unknown target {spec!r}; built-in targets: {names}, or a .toml file")
