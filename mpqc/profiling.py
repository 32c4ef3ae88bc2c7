"""`mpqc profile`: each layer's cost at each precision on a target, and the whole model's
under each uniform precision, predicted and (where the target measures) measured."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mpqc.cost import SchemeCost
from mpqc.precision import Precision
from mpqc.targets import Measurement
from mpqc.workload import Workload

__all__ = ["ProfileReport", "LayerRow", "profile_workload"]


@dataclass(frozen=True)
class LayerRow:
    """One layer's cost at each precision of the profile."""

    name: str
    op_type: str
    macs: int | None
    #: precision label -> seconds (inf where the target does not run it for this layer)
    seconds: dict[str, float]


@dataclass
class ProfileReport:
    """Per-layer costs, whole-model costs per uniform precision, and measurements where taken."""

    target: dict[str, Any]
    precisions: list[str]
    layers: list[LayerRow]
    #: uniform precision label -> whole-model cost (latency predicted)
    totals: dict[str, SchemeCost]
    measured: dict[str, Measurement] = field(default_factory=dict)
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "cached": self.cached,
            "precisions": self.precisions,
            "layers": [
                {
                    "name": r.name,
                    "op": r.op_type,
                    "macs": r.macs,
                    "ms": {k: (v * 1e3 if math.isfinite(v) else None) for k, v in r.seconds.items()},
                }
                for r in self.layers
            ],
            "model": {
                label: {
                    **cost.to_json(),
                    "measured": self.measured[label].to_json() if label in self.measured else None,
                }
                for label, cost in self.totals.items()
            },
        }


def profile_workload(workload: Workload, space: str | Sequence[str | Precision] | None = None) -> ProfileReport:
    """Costs of every layer at every precision of `space` (default: the target's)."""
    assert workload.target is not None
    target = workload.target
    precisions = target.parse_space(space)
    costs = workload.costs
    analysis = workload.prepared.analysis
    labels = [p.label for p in precisions]
    rows = [
        LayerRow(
            layer.name,
            layer.op_type,
            layer.macs,
            {p.label: costs.layer_cost(layer.name, p) if target.runs(layer, p) else math.inf for p in precisions},
        )
        for layer in analysis.layers
    ]
    totals = {}
    for precision in precisions:
        if all(target.runs(layer, precision) for layer in analysis.layers):
            totals[precision.label] = workload.scheme_cost(workload.uniform(precision))
    measured = {k: v for k, v in costs.measured_uniform().items() if k in labels}
    return ProfileReport(target.info(), labels, rows, totals, measured, costs.cached)
