"""Candidate schemes: the exact search on additive per-layer proxies at a ladder of budget
levels (the Pareto candidates), then each candidate's exact cost and its PTQ quality in
ONNX Runtime on the validation split."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mpqc.budget import ResolvedBudget
from mpqc.compiler.run_folder import RunFolder
from mpqc.cost import SchemeCost, layer_bops, layer_weight_bytes
from mpqc.errors import BudgetError, SchemeError
from mpqc.metrics import METRICS
from mpqc.precision import Precision
from mpqc.recovery import Prediction, activations_only
from mpqc.scheme import Scheme
from mpqc.search import LayerOptions, cheapest, pareto_candidates
from mpqc.targets import precisions_text
from mpqc.workload import Workload

__all__ = ["Candidate", "layer_options", "additive_offsets", "check_feasible", "propose", "cost_and_ptq"]


@dataclass
class Candidate:
    """One scheme the search proposed, and what compile learned about it."""

    scheme: Scheme
    origin: str
    cost: SchemeCost
    fits: bool
    predicted_ptq: float
    ptq: float | None = None
    prediction: Prediction | None = None
    decision: str = ""
    qat: float | None = None
    measured_latency_s: float | None = None
    #: PTQ quality with float weights (`mpqc.recovery.activations_only`), where a policy
    #: splits the PTQ loss
    activations_ptq: float | None = None
    #: validation quality after a short QAT run (the short-qat policy's first rung)
    short_qat: float | None = None

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.scheme.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def quality(self) -> float:
        """The better of PTQ and QAT (validation)."""
        values = [v for v in (self.ptq, self.qat) if v is not None]
        return max(values) if values else float("-inf")

    @property
    def recovery(self) -> str:
        return "qat" if self.qat is not None and self.qat > (self.ptq if self.ptq is not None else -1.0) else "ptq"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "origin": self.origin,
            "summary": self.scheme.summary(),
            "scheme": self.scheme.labels(),
            "cost": self.cost.to_json(),
            "fits": self.fits,
            "predicted_ptq": self.predicted_ptq,
            "ptq": self.ptq,
            "activations_ptq": self.activations_ptq,
            "predicted": None if self.prediction is None else self.prediction.to_json(),
            "decision": self.decision,
            "qat": self.qat,
            "short_qat": self.short_qat,
            "measured_latency_ms": None if self.measured_latency_s is None else self.measured_latency_s * 1e3,
        }


def layer_options(workload: Workload, space: Sequence[Precision], metrics: Sequence[str]) -> list[LayerOptions]:
    """Per layer: the precisions the target runs from `space`, and each one's cost per metric."""
    assert workload.target is not None
    costs = workload.costs
    options = []
    for layer in workload.prepared.analysis.layers:
        allowed = workload.target.search_space(layer, space)
        if not allowed:
            raise SchemeError(
                f"target {workload.target.name} runs none of {precisions_text(space)} for {layer.op_type} "
                f"{layer.name}; for it, it runs {precisions_text(workload.target.search_space(layer))}"
            )
        per_metric: dict[str, tuple[float, ...]] = {}
        for metric in metrics:
            if metric == "latency":
                values = [costs.layer_cost(layer.name, p) for p in allowed]
            elif metric == "size":
                values = [float(layer_weight_bytes(layer, p)) for p in allowed]
            elif metric == "bops":
                values = [float(layer_bops(layer, p)) for p in allowed]
            else:  # not additive: checked on candidates
                values = [0.0 for _ in allowed]
            per_metric[metric] = tuple(values)
        options.append(LayerOptions(layer.name, tuple(allowed), tuple(0.0 for _ in allowed), per_metric))
    return options


def additive_offsets(workload: Workload, options: Sequence[LayerOptions]) -> dict[str, float]:
    """What the per-layer costs leave out of a scheme's total (ops that are not layers, and
    on ort-cpu the Quantize/Dequantize nodes at region borders): the least such remainder
    over the scheme of each layer's first option and every uniform scheme all layers can
    take. The least, so that neither the feasibility check nor the integer program rules
    out a scheme that fits (uniform float on a model where int8 only adds border nodes)."""
    schemes = [Scheme({o.layer: o.precisions[0] for o in options})]
    shared = set(options[0].precisions).intersection(*(o.precisions for o in options[1:])) if options else set()
    for precision in sorted(shared, key=lambda p: p.label):
        schemes.append(Scheme({o.layer: precision for o in options}))
    metrics = workload.resolved_budget.additive
    offsets: dict[str, float] = {}
    for scheme in schemes:
        cost = workload.scheme_cost(scheme)
        for m in metrics:
            layers = sum(o.costs[m][o.precisions.index(scheme[o.layer])] for o in options)
            offsets[m] = min(offsets.get(m, float("inf")), max(0.0, cost.metric(m) - layers))
    return offsets


def search_limits(budget: ResolvedBudget, offsets: dict[str, float]) -> dict[str, float]:
    """The additive bounds the integer program holds the layers' costs to."""
    return {m: bound - offsets.get(m, 0.0) for m, bound in budget.additive.items()}


def check_feasible(
    options: Sequence[LayerOptions], budget: ResolvedBudget, offsets: dict[str, float], target: str
) -> None:
    """Decided exactly, up front: the cheapest reachable cost of each additive metric."""
    for metric, bound in budget.additive.items():
        floor = cheapest(options, metric) + offsets.get(metric, 0.0)
        if floor > bound * (1 + 1e-9):
            m = METRICS[metric]
            limit = next(limit for limit in budget.budget.limits if limit.metric == metric)
            relative = ""
            if limit.reference is not None:
                ref = budget.references[limit.reference].metric(metric)
                relative = f" ({floor / ref:.3g}x {limit.reference})" if ref > 0 else ""
            raise BudgetError(
                f"budget {limit.describe()} ({m.format(bound)}) cannot be met on {target}: the cheapest reachable "
                f"scheme costs {m.format(floor)}{relative}"
            )


def propose(
    options: Sequence[LayerOptions],
    limits: dict[str, float],
    objectives: Mapping[str, Sequence[Sequence[float]]],
    levels: int,
    space: Sequence[Precision],
    names: Sequence[str],
    span: float = 0.5,
) -> list[tuple[Scheme, str]]:
    """Pareto candidates of each objective at each budget level, plus every uniform scheme of
    the space (the baselines a user would try first)."""
    found = [
        (s, f"{name} @ {fraction:.2f} budget")
        for s, name, fraction in pareto_candidates(options, limits, objectives, levels, span)
    ]
    allowed = [set(o.precisions) for o in options]
    for precision in space:
        uniform = Scheme.uniform(names, precision)
        if all(precision in a for a in allowed) and all(uniform != s for s, _ in found):
            found.append((uniform, f"uniform {precision.label}"))
    return found


def cost_and_ptq(
    workload: Workload,
    found: Sequence[tuple[Scheme, str]],
    predicted_ptq: Callable[[Scheme], float],
    run: RunFolder,
    progress: Callable[[int], None] | None = None,
    split: bool = False,
) -> list[Candidate]:
    """Exact cost of every candidate; PTQ quality (validation) of those that fit, and with
    `split` also with float weights (one more PTQ run each), stored per candidate in the run
    folder."""
    budget = workload.resolved_budget
    candidates = []
    for scheme, origin in found:
        cost = workload.scheme_cost(scheme)
        candidates.append(Candidate(scheme, origin, cost, budget.fits(cost), predicted_ptq(scheme)))
    for candidate in candidates:
        if not candidate.fits:
            continue
        name = f"candidates/{candidate.key}.json"
        saved = run.read(name, _parse_ptq)
        if saved is None or (split and saved[1] is None):
            ptq = saved[0] if saved is not None else workload.ptq_quality(candidate.scheme, "validation")
            half = workload.ptq_quality(activations_only(candidate.scheme), "validation") if split else None
            saved = (ptq, half)
            run.write_json(name, {"ptq": ptq, "activations_ptq": half, "scheme": candidate.scheme.to_json()})
        candidate.ptq, candidate.activations_ptq = saved[0], saved[1] if split else None
        if progress is not None:
            progress(1)
    return candidates


def _parse_ptq(data: Any) -> tuple[float, float | None]:
    ptq = float(data["ptq"])
    half = None if data.get("activations_ptq") is None else float(data["activations_ptq"])
    for value in (ptq, half):
        if value is not None and not -1.0 <= value <= 1.0:
            raise ValueError(f"quality {value} out of range")
    return ptq, half
