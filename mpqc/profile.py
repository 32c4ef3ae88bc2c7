"""`mpqc profile`: each layer's cost at each precision on a target, and the whole model's,
predicted and (where the target can run it) measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mpqc.api import DataLike, ModelLike, Prepared, prepare
from mpqc.cost import SchemeCost, scheme_cost
from mpqc.data import load_data
from mpqc.runtime import input_specs
from mpqc.scheme import LayerPrecision, Scheme
from mpqc.targets import AnalyticTarget, OrtCpuTarget, Precision, Target, get_target, precision_label
from mpqc.targets.base import CostModel

__all__ = ["ProfileReport", "LayerRow", "profile", "cost_model_for"]

_ORT_PRECISIONS: tuple[Precision, ...] = ((None, None), (8, 8), (4, 4), (2, 2), (None, 8), (8, None), (4, None))


@dataclass(frozen=True)
class LayerRow:
    name: str
    op_type: str
    macs: int | None
    seconds: dict[str, float]


@dataclass
class ProfileReport:
    target: str
    description: str
    precisions: list[str]
    layers: list[LayerRow]
    #: uniform scheme label -> whole-model cost (latency predicted)
    totals: dict[str, SchemeCost]
    measured_s: dict[str, float] = field(default_factory=dict)
    #: interquartile range of the measured run times
    spread_s: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "description": self.description,
            "threads": self.threads,
            "cached": self.cached,
            "precisions": self.precisions,
            "layers": [
                {"name": r.name, "op": r.op_type, "macs": r.macs, "ms": {k: v * 1e3 for k, v in r.seconds.items()}}
                for r in self.layers
            ],
            "model": {
                label: {
                    **cost.to_json(),
                    "measured_ms": self.measured_s[label] * 1e3 if label in self.measured_s else None,
                    "measured_iqr_ms": self.spread_s[label] * 1e3 if label in self.spread_s else None,
                }
                for label, cost in self.totals.items()
            },
        }


def cost_model_for(prepared: Prepared, target: Target, data: DataLike = None, use_cache: bool = True) -> CostModel:
    if isinstance(target, OrtCpuTarget):
        sample = load_data(data, input_specs(prepared.model), "calibration").take(1)
        return target.cost_model(prepared, dict(sample.inputs), use_cache=use_cache)
    assert isinstance(target, AnalyticTarget)
    return target.cost_model(prepared.analysis)


def profile(
    model: ModelLike | Prepared,
    target: str | Target = "ort-cpu",
    data: DataLike = None,
    threads: int = 1,
    use_cache: bool = True,
) -> ProfileReport:
    prepared = prepare(model)
    resolved = get_target(target, threads=threads)
    costs = cost_model_for(prepared, resolved, data, use_cache)
    analysis = prepared.analysis
    if isinstance(resolved, OrtCpuTarget):
        precisions = list(_ORT_PRECISIONS)
    else:
        precisions = sorted(
            {p for layer in analysis.layers for p in resolved.precisions(layer.op_type)},
            key=lambda p: (p[0] is None, -(p[0] or 0), -(p[1] or 0)),
        )
    labels = [precision_label(p) for p in precisions]
    rows = [
        LayerRow(
            layer.name,
            layer.op_type,
            layer.macs,
            {label: costs.layer_cost(layer.name, p) for label, p in zip(labels, precisions)},
        )
        for layer in analysis.layers
    ]
    totals = {}
    for label, precision in zip(labels, precisions):
        scheme = Scheme.uniform(analysis.layer_names, LayerPrecision(*precision))
        totals[label] = scheme_cost(prepared.model, analysis, scheme, costs)
    measured: dict[str, float] = {}
    spread: dict[str, float] = {}
    if isinstance(resolved, OrtCpuTarget):
        measured = {label: costs.walls[label] for label in labels if label in costs.walls}  # type: ignore[attr-defined]
        spread = {label: costs.spreads[label] for label in labels if label in costs.spreads}  # type: ignore[attr-defined]
    return ProfileReport(
        resolved.name,
        resolved.description,
        labels,
        rows,
        totals,
        measured,
        spread,
        cached=bool(getattr(costs, "cached", False)),
        threads=threads if isinstance(resolved, OrtCpuTarget) else None,
    )
